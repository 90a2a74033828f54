//! One WebRTC `PeerConnection` to one remote member (webrtc-rs 0.21).
//!
//! Everything the connection reports goes out through one unbounded event channel, so the
//! driver task of webrtc-rs (which runs our handler callbacks) never waits on the engine/UI.
//! Received media goes out per remote track through its own bounded channel; when a consumer
//! falls behind, units are dropped (counted) rather than stalling the connection.
//!
//! Findings about webrtc/rtc 0.21.1 that shaped this module:
//! - RTX: negotiated only if a `video/rtx` codec with `apt=` is registered (the default codec
//!   set does; a custom set must) *and* the track's encoding declares an RTX SSRC. We do both:
//!   offers carry `a=ssrc-group:FID`, the NACK responder retransmits on RTX, the receiver
//!   de-encapsulates it. Video packets behind a gap wait (`reorder`) for the retransmission
//!   before depacketizing; only a gap still open after the wait flags the AU incomplete.
//! - A track-backed m-section lists only the track's own codec; we set codec preferences so
//!   both H.264 Constrained Baseline spellings (42e01f, 42001f) are offered.
//! - Rollback: supported (`RTCSessionDescription::rollback`) but never implicit — a remote
//!   offer in `have-local-offer` is an error — so `negotiation` rolls back explicitly.
//! - negotiationneeded: fired by the core per W3C (only when stable, re-checked on return to
//!   stable). Creating the data channel fires it too, so both sides offer at start.
//! - No signaling-state getter: derived from the pending descriptions.
//! - Sender RTCP: inbound RTCP ends at the interceptor chain unless an interceptor marks it for
//!   the application, and a local track's `poll` holds its lock across the wait (it would stall
//!   a rebind). So PLI/FIR/NACK/RR are tapped in our own interceptor, inside the core, on arrival.
//! - Remote track end: the core emits no track-close event, neither on renegotiation nor on
//!   close. We end tracks ourselves: on each applied remote description whose m-sections no
//!   longer send them, on Failed/Closed, and on `close()`. The driver never forgets a remote
//!   track id, so a removed track id re-added later does not fire `on_track`: use fresh ids.
//! - Stats: `get_stats` has per-SSRC outbound packets/bytes/retransmissions and inbound
//!   packets/bytes/lost/jitter/NACK-PLI-FIR *sent*, plus candidate-pair RTT and bytes. It never
//!   processes *received* RTCP (`process_read_rtcp_for_stats` is dead code), so outbound
//!   NACK/PLI/FIR counts and remote-inbound loss/jitter/RTT are zero there; we count them in
//!   the tap and compute RTT from RR LSR/DLSR. No bandwidth estimate by default: we add GCC
//!   (see `interceptors`); its estimate shows as the outbound streams' `target_bitrate`.
//! - Codecs per kind are settled by the first remote m-section of that kind, for good: if it
//!   has none of ours (a browser offering only VP8), every later offer or answer with one of
//!   our senders of that kind fails (`ErrSenderWithNoCodecs`). Such a section is rejected
//!   (port 0) only for a transceiver without a sender, and a rejected section carries no
//!   direction, so a recvonly transceiver behind it asks to renegotiate after every
//!   exchange, forever. We take such tracks off and set those transceivers inactive
//!   (`drop_unusable_media`).
//! - Answers always say `a=setup:active`, renegotiations included, even where we are the DTLS
//!   server; browsers refuse that as a role change. The copy we hand out keeps the role
//!   (the DTLS session itself never changes), see `create_answer`.
//! - `close()` sends nothing the remote notices: it sees Disconnected after ~5 s of silence
//!   (ICE consent); the engine should also learn of a departure via signaling.

mod aimd;
mod assemble;
mod coverage;
mod early;
mod estimate;
mod events;
mod fec;
mod feedback;
mod nack;
mod negotiate;
mod numbered;
mod pacing;
mod probe;
mod receive;
mod sdp;
mod send;
mod setup;
mod stats;
mod types;
mod wrapped;

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use rtc::interceptor::Slot;
use rtc::peer_connection::configuration::setting_engine::SettingEngineBuilder;
use rtc::rtp_transceiver::rtp_sender::RTCRtpCodecParameters;
use tokio::sync::mpsc;
use webrtc::data_channel::{DataChannel, RTCDataChannelInit};
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionBuilder, RTCConfigurationBuilder, RTCIceServer,
    RTCIceTransportPolicy,
};
use webrtc::rtp_transceiver::RtpSender;

use super::error::{CallError, Result};
use crate::sync::LockExt;
use events::{Handler, Shared, read_chat};
use feedback::KeyframeRequestTap;
use send::LocalTrackInner;
use setup::{H264_CODECS, h264_codec, interceptors, mdns_mode, media_engine};

pub use send::{AudioTrackSender, LocalTrack, VideoTrackSender};
pub use types::{
    AudioPacket, ConnectionState, IceCandidate, IceServerConfig, IceTransport, KeyframeRequester,
    KeyframeWanted, MediaKind, PeerConfig, PeerEvent, PeerStats, RemoteAccessUnit, RemoteMedia,
    SdpType, SessionDescription, SignalingState, TrackStats,
};

/// A connection that hears nothing for this long says "disconnected" (Chromium's
/// figure); the engine restarts ICE if it lasts (`call::reconnect`).
pub const DISCONNECTED_AFTER: Duration = Duration::from_millis(2500);
/// ... and "failed" this much later.
const FAILED_AFTER: Duration = Duration::from_secs(15);
/// Consent checks often enough that a silent call (everyone muted) never looks
/// disconnected.
const KEEPALIVE_EVERY: Duration = Duration::from_secs(1);

/// ICE checks every 50 ms (the stack's 200 ms also paces its driver's wake-ups, so the
/// first DTLS flight waited up to 200 ms after ICE connected), as many per pair as make
/// the stack's 1.4 s before a pair counts as failed.
const CHECK_EVERY: Duration = Duration::from_millis(50);
const CHECKS_PER_PAIR: u16 = 30;
/// How long after checks start a pair may be chosen, by the remote candidate's type. A
/// peer's first check often arrives before its trickled candidate, which then counts as
/// peer-reflexive: the stack's 1 s wait for those was the slow mode of joins.
const PRFLX_WAIT: Duration = Duration::from_millis(100);
const SRFLX_WAIT: Duration = Duration::from_millis(250);
/// A relayed pair is chosen after 1 s (the stack: 2 s) unless a direct one works first.
const RELAY_WAIT: Duration = Duration::from_millis(1000);

/// Label of the single chat channel. Negotiated out of band with a fixed id so both sides
/// have it whoever offers first.
pub const CHAT_LABEL: &str = "chat";
const CHAT_STREAM_ID: u16 = 0;

/// One connection to one remote member. Cheap to clone.
#[derive(Clone)]
pub struct Peer {
    pc: Arc<dyn PeerConnection>,
    chat: Arc<dyn DataChannel>,
    shared: Arc<Shared>,
    local_tracks: Arc<Mutex<HashMap<String, LocalTrack>>>,
    /// Per kind, once known: whether the remote's first m-section of that kind listed a
    /// codec we take (see `drop_unusable_media`).
    codec_verdicts: Arc<Mutex<HashMap<MediaKind, bool>>>,
    /// Our DTLS role once the first exchange settled it: true for client (`setup:active`).
    dtls_client: Arc<Mutex<Option<bool>>>,
    /// The last description as handed out (an answer keeping the DTLS role, an offer with
    /// `a=msid-semantic`) and as webrtc-rs created it.
    as_created: Arc<Mutex<Option<(String, String)>>>,
    /// Holds the remote's connectivity checks until we can answer them (`early.rs`).
    checks: Arc<early::Gate>,
}

impl std::fmt::Debug for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peer").finish_non_exhaustive()
    }
}

impl Peer {
    /// Builds the connection and its "chat" channel. Events arrive on the returned receiver,
    /// which the caller must keep draining (it is unbounded).
    pub async fn new(config: PeerConfig) -> Result<(Self, mpsc::UnboundedReceiver<PeerEvent>)> {
        let (events, events_rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            events,
            local_video_ssrcs: Mutex::new(HashMap::new()),
            remote: Mutex::new(HashMap::new()),
            feedback: Mutex::new(HashMap::new()),
            sender_reports: Mutex::new(HashMap::new()),
            dc_open: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            may_send: Arc::new(AtomicBool::new(false)),
            // The encoders follow the start rate from the first frame, not the ceiling
            // until the first feedback.
            send_estimate: AtomicU64::new(config.estimate_bounds().1.to_bits()),
            estimated: AtomicBool::new(false),
            fec: Arc::default(),
            offer_skipped: AtomicBool::new(false),
            repaired: Default::default(),
        });

        let mut me = media_engine(config.fec)?;
        let registry = interceptors(&mut me, &config, &shared.fec)?.with(
            Slot::NackGenerator,
            nack::NackGenerator::new(Arc::clone(&shared)),
        );
        // Application-most slot, after every interceptor that reads RTCP.
        let registry = registry.with(
            Slot::from(14_000),
            KeyframeRequestTap {
                shared: Arc::clone(&shared),
                read_queue: VecDeque::new(),
                write_queue: VecDeque::new(),
            },
        );

        let ice_servers = config
            .ice_servers
            .iter()
            .map(|s| RTCIceServer {
                urls: s.urls.clone(),
                username: s.username.clone(),
                credential: s.credential.clone(),
            })
            .collect();
        let configuration = RTCConfigurationBuilder::new()
            .with_ice_servers(ice_servers)
            .with_ice_transport_policy(match config.ice_transport {
                IceTransport::All => RTCIceTransportPolicy::All,
                IceTransport::Relay => RTCIceTransportPolicy::Relay,
            })
            .build();

        let setting_engine = SettingEngineBuilder::new()
            .with_multicast_dns_mode(mdns_mode())
            .with_ice_timeouts(
                Some(DISCONNECTED_AFTER),
                Some(FAILED_AFTER),
                Some(KEEPALIVE_EVERY),
            )
            .with_ice_connection_attempts(Some(CHECK_EVERY), Some(CHECKS_PER_PAIR))
            .with_prflx_acceptance_min_wait(Some(PRFLX_WAIT))
            .with_srflx_acceptance_min_wait(Some(SRFLX_WAIT))
            .with_relay_acceptance_min_wait(Some(RELAY_WAIT))
            .build();
        let checks = Arc::new(early::Gate::default());
        let pc = PeerConnectionBuilder::new()
            .with_configuration(configuration)
            .with_setting_engine(setting_engine)
            .with_media_engine(me)
            .with_interceptor_registry(registry)
            .with_handler(Arc::new(Handler {
                shared: Arc::clone(&shared),
            }))
            .with_runtime(Arc::new(early::GatedRuntime::new(checks.clone())))
            .with_udp_addrs(config.bind_addrs.clone())
            .build()
            .await?;
        let pc: Arc<dyn PeerConnection> = Arc::new(pc);

        let chat = pc
            .create_data_channel(
                CHAT_LABEL,
                Some(RTCDataChannelInit {
                    ordered: true,
                    negotiated: Some(CHAT_STREAM_ID),
                    ..Default::default()
                }),
            )
            .await?;
        tokio::spawn(read_chat(Arc::clone(&chat), Arc::clone(&shared)));

        Ok((
            Self {
                pc,
                chat,
                shared,
                local_tracks: Arc::new(Mutex::new(HashMap::new())),
                codec_verdicts: Arc::new(Mutex::new(HashMap::new())),
                dtls_client: Arc::new(Mutex::new(None)),
                as_created: Arc::new(Mutex::new(None)),
                checks,
            },
            events_rx,
        ))
    }

    /// A local change of tracks: see `Shared::offer_skipped`.
    fn changed_locally(&self) {
        if self.shared.offer_skipped.swap(false, Ordering::AcqRel) {
            let _ = self.shared.events.send(PeerEvent::NegotiationNeeded);
        }
    }

    fn ensure_open(&self) -> Result<()> {
        if self.shared.closed.load(Ordering::Acquire) {
            return Err(CallError::Closed);
        }
        Ok(())
    }

    async fn add_track(
        &self,
        kind: MediaKind,
        track_id: &str,
        stream_id: &str,
        keyframes: &KeyframeWanted,
        layers: usize,
    ) -> Result<LocalTrack> {
        self.ensure_open()?;
        let (track, ssrcs) = if kind == MediaKind::Video && layers > 1 {
            send::new_layered_track(track_id, stream_id, layers)?
        } else {
            let (track, ssrc) = send::new_sample_track(kind, track_id, stream_id)?;
            (track, vec![ssrc])
        };
        let ssrc = *ssrcs.last().expect("a track has an SSRC");
        if kind == MediaKind::Video {
            // Before add_track, so a PLI can never race ahead of the mapping. A PLI for
            // any layer asks the one encoder stage for keyframes.
            let mut map = self.shared.local_video_ssrcs.locked();
            for s in &ssrcs {
                map.insert(*s, (track_id.to_owned(), keyframes.clone()));
            }
        }
        // A kind the remote takes no codec of would only make every later offer fail.
        let unusable = self.kind_unusable(kind);
        let rtp_sender = if unusable {
            tracing::info!(
                track_id,
                "the remote takes no {kind:?} codec of ours: not sending"
            );
            None
        } else {
            let rtp_sender = self
                .pc
                .add_track(Arc::clone(&track) as Arc<dyn TrackLocal>)
                .await?;
            if kind == MediaKind::Video {
                self.offer_all_h264_profiles(&rtp_sender).await?;
            }
            self.changed_locally();
            Some(rtp_sender)
        };
        let local = LocalTrack {
            inner: Arc::new(LocalTrackInner {
                track_id: track_id.to_owned(),
                kind,
                ssrc,
                layers: ssrcs,
                track,
                rtp_sender,
                payload_type: OnceLock::new(),
                may_send: Arc::clone(&self.shared.may_send),
                detached: AtomicBool::new(unusable),
                last_capture_us: Default::default(),
            }),
        };
        self.local_tracks
            .locked()
            .insert(track_id.to_owned(), local.clone());
        Ok(local)
    }

    /// 0.21 narrows a track's m-section to the track's own codec; we packetize both
    /// Constrained Baseline spellings identically, so offer both (browsers match either).
    async fn offer_all_h264_profiles(&self, rtp_sender: &Arc<dyn RtpSender>) -> Result<()> {
        let prefs: Vec<RTCRtpCodecParameters> = H264_CODECS
            .iter()
            .map(|(profile, pt, _)| RTCRtpCodecParameters {
                rtp_codec: h264_codec(profile),
                payload_type: *pt,
            })
            .collect();
        for t in self.pc.get_transceivers().await {
            if t.sender().await?.is_some_and(|s| s.id() == rtp_sender.id()) {
                t.set_codec_preferences(prefs).await?;
                break;
            }
        }
        Ok(())
    }

    /// Adds a local H.264 track (triggers renegotiation).
    pub async fn add_video_track(
        &self,
        track_id: &str,
        stream_id: &str,
    ) -> Result<VideoTrackSender> {
        self.add_video_track_for(track_id, stream_id, &KeyframeWanted::default())
            .await
    }

    /// Adds a local H.264 track whose remote keyframe requests set `keyframes`, the flag
    /// of the encoder that feeds it.
    pub async fn add_video_track_for(
        &self,
        track_id: &str,
        stream_id: &str,
        keyframes: &KeyframeWanted,
    ) -> Result<VideoTrackSender> {
        Ok(VideoTrackSender(
            self.add_track(MediaKind::Video, track_id, stream_id, keyframes, 1)
                .await?,
        ))
    }

    /// Like [`Peer::add_video_track_for`], with `layers` simulcast encodings (2 or 3,
    /// smallest first) written with [`VideoTrackSender::send_layer`].
    pub async fn add_simulcast_video_track(
        &self,
        track_id: &str,
        stream_id: &str,
        keyframes: &KeyframeWanted,
        layers: usize,
    ) -> Result<VideoTrackSender> {
        Ok(VideoTrackSender(
            self.add_track(MediaKind::Video, track_id, stream_id, keyframes, layers)
                .await?,
        ))
    }

    /// Adds a local Opus track (triggers renegotiation).
    pub async fn add_audio_track(
        &self,
        track_id: &str,
        stream_id: &str,
    ) -> Result<AudioTrackSender> {
        Ok(AudioTrackSender(
            self.add_track(
                MediaKind::Audio,
                track_id,
                stream_id,
                &KeyframeWanted::default(),
                1,
            )
            .await?,
        ))
    }

    /// Stops sending a local track (triggers renegotiation; the remote then sees
    /// `RemoteTrackEnded`).
    pub async fn remove_track<S: AsRef<LocalTrack>>(&self, sender: &S) -> Result<()> {
        let local = sender.as_ref();
        if !local.inner.detached.swap(true, Ordering::AcqRel)
            && let Some(rtp_sender) = &local.inner.rtp_sender
        {
            self.pc.remove_track(rtp_sender).await?;
            self.changed_locally();
        }
        self.local_tracks.locked().remove(local.track_id());
        let mut map = self.shared.local_video_ssrcs.locked();
        for s in local.layer_ssrcs() {
            map.remove(s);
        }
        Ok(())
    }

    /// Sends a PLI for a remote video track.
    pub async fn request_keyframe(&self, track_id: &str) -> Result<()> {
        self.ensure_open()?;
        let track = self
            .shared
            .remote
            .locked()
            .get(track_id)
            .map(|e| Arc::clone(&e.track))
            .ok_or_else(|| CallError::UnknownTrack(track_id.to_owned()))?;
        receive::send_pli(&*track).await
    }

    /// Sends a chat message (ordered, reliable).
    pub async fn send_data(&self, text: &str) -> Result<()> {
        self.ensure_open()?;
        if !self.shared.dc_open.load(Ordering::Acquire) {
            return Err(CallError::DataChannelNotOpen);
        }
        self.chat.send_text(text).await?;
        Ok(())
    }

    /// Closes the connection; remote tracks end, `Closed` is reported.
    pub async fn close(&self) -> Result<()> {
        if self.shared.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        let result = self.pc.close().await;
        // The driver is stopped by close(), so its own Closed callback never runs.
        self.shared
            .emit(PeerEvent::ConnectionState(ConnectionState::Closed));
        self.shared.end_all_remote_tracks();
        result?;
        Ok(())
    }
}
