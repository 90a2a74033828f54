//! Local tracks: what the encoders write samples into.

use crate::sync::LockExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rtc::media::Sample;
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::media_engine::{MIME_TYPE_H264, MIME_TYPE_OPUS};
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodingParameters, RTCRtpEncodingParameters, RTCRtpRtxParameters, RtpCodecKind,
};
use webrtc::media_stream::track_local::static_sample::TrackLocalStaticSample;
use webrtc::rtp_transceiver::RtpSender;

use super::setup::{H264_CODECS, h264_codec, opus_codec};
use super::types::MediaKind;
use crate::call::error::{CallError, Result};

/// A local track we send. Cheap to clone; usable from any task.
#[derive(Clone)]
pub struct LocalTrack {
    pub(super) inner: Arc<LocalTrackInner>,
}

pub(super) struct LocalTrackInner {
    pub(super) track_id: String,
    pub(super) kind: MediaKind,
    pub(super) ssrc: u32,
    /// Simulcast: one SSRC per layer, smallest first (the last is `ssrc`); else just `ssrc`.
    pub(super) layers: Vec<u32>,
    pub(super) track: Arc<TrackLocalStaticSample>,
    /// `None` if the track was never put on the connection (see `detached`).
    pub(super) rtp_sender: Option<Arc<dyn RtpSender>>,
    pub(super) payload_type: OnceLock<u8>,
    pub(super) may_send: Arc<AtomicBool>,
    /// Off the connection because the remote takes no codec of its kind: it never sends.
    pub(super) detached: AtomicBool,
    /// Per SSRC, the capture time of the last picture sent (`send_captured`).
    pub(super) last_capture_us: std::sync::Mutex<std::collections::HashMap<u32, u64>>,
}

impl std::fmt::Debug for LocalTrack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalTrack")
            .field("track_id", &self.inner.track_id)
            .field("kind", &self.inner.kind)
            .field("ssrc", &self.inner.ssrc)
            .finish()
    }
}

impl LocalTrack {
    pub fn track_id(&self) -> &str {
        &self.inner.track_id
    }

    pub fn kind(&self) -> MediaKind {
        self.inner.kind
    }

    pub fn ssrc(&self) -> u32 {
        self.inner.ssrc
    }

    /// The SSRC of each layer, smallest first (one for a track without simulcast).
    pub fn layer_ssrcs(&self) -> &[u32] {
        &self.inner.layers
    }

    /// Whether negotiation has associated this track, so `send` can work (once connected).
    pub async fn is_negotiated(&self) -> bool {
        self.payload_type().await.is_ok()
    }

    /// The negotiated payload type; unknown until the sender is associated by negotiation.
    async fn payload_type(&self) -> Result<u8> {
        let not_yet = || CallError::NotNegotiated(self.inner.track_id.clone());
        if self.inner.detached.load(Ordering::Relaxed) {
            return Err(not_yet());
        }
        if let Some(pt) = self.inner.payload_type.get() {
            return Ok(*pt);
        }
        let Some(rtp_sender) = &self.inner.rtp_sender else {
            return Err(not_yet());
        };
        if rtp_sender.transport().await?.is_none() {
            return Err(not_yet());
        }
        let mime = match self.inner.kind {
            MediaKind::Video => MIME_TYPE_H264,
            MediaKind::Audio => MIME_TYPE_OPUS,
        };
        let params = rtp_sender.get_parameters().await?;
        let pt = params
            .rtp_parameters
            .codecs
            .iter()
            .find(|c| c.rtp_codec.mime_type.eq_ignore_ascii_case(mime))
            .map(|c| c.payload_type)
            .ok_or_else(not_yet)?;
        Ok(*self.inner.payload_type.get_or_init(|| pt))
    }

    async fn send_sample(&self, data: &[u8], duration: Duration) -> Result<()> {
        self.send_sample_on(self.inner.ssrc, data, duration).await
    }

    /// Sends a picture stamped with its capture time: the RTP timestamp moves on by the
    /// time since the last picture sent on `ssrc` (frames the encoder skipped, or a peer
    /// was not sent, included), not by a nominal frame interval. Receivers time their
    /// playout by it: a clock that falls behind reads as a path that grows slower.
    async fn send_captured(&self, ssrc: u32, data: &[u8], capture_us: u64) -> Result<()> {
        if !self.inner.may_send.load(Ordering::Relaxed) {
            return Err(CallError::NotConnected);
        }
        let last = self.inner.last_capture_us.locked().get(&ssrc).copied();
        if let Some(last) = last {
            // An empty sample moves the timestamp and uses no sequence number; a tick at
            // least, so that two pictures never share a timestamp.
            let gap = capture_us.saturating_sub(last).max(12);
            self.send_sample_on(ssrc, &[], Duration::from_micros(gap))
                .await?;
        }
        self.send_sample_on(ssrc, data, Duration::ZERO).await?;
        let mut sent = self.inner.last_capture_us.locked();
        let at = sent.entry(ssrc).or_insert(capture_us);
        *at = (*at).max(capture_us);
        Ok(())
    }

    async fn send_sample_on(&self, ssrc: u32, data: &[u8], duration: Duration) -> Result<()> {
        if !self.inner.may_send.load(Ordering::Relaxed) {
            return Err(CallError::NotConnected);
        }
        let pt = self.payload_type().await?;
        let now = Instant::now();
        let sample = Sample {
            data: Bytes::copy_from_slice(data),
            duration,
            ..Sample::new(now)
        };
        self.inner
            .track
            .sample_writer(ssrc, pt)
            .write_sample(&sample)
            .await?;
        Ok(())
    }
}

/// Sends H.264 on one local video track.
#[derive(Clone, Debug)]
pub struct VideoTrackSender(pub(super) LocalTrack);

impl VideoTrackSender {
    /// Sends one whole Annex-B access unit (SPS/PPS before each IDR). Fails with
    /// `NotNegotiated` before the track is negotiated; callers may just drop the frame then.
    pub async fn send(&self, annexb_access_unit: &[u8], duration: Duration) -> Result<()> {
        self.0.send_sample(annexb_access_unit, duration).await
    }

    /// Sends one access unit of simulcast layer `layer` (0 = smallest), captured at
    /// `capture_us` (wall clock; 0: unknown, the timestamp moves on by `duration`). A
    /// track without simulcast takes only the top layer (`top`), on its one SSRC.
    pub async fn send_layer(
        &self,
        layer: usize,
        top: bool,
        annexb_access_unit: &[u8],
        capture_us: u64,
        duration: Duration,
    ) -> Result<()> {
        let ssrc = match self.0.inner.layers.as_slice() {
            [_] if top => self.0.inner.ssrc,
            [_] => return Ok(()),
            many => match many.get(layer) {
                Some(s) => *s,
                None => return Ok(()),
            },
        };
        if capture_us == 0 {
            return self
                .0
                .send_sample_on(ssrc, annexb_access_unit, duration)
                .await;
        }
        self.0
            .send_captured(ssrc, annexb_access_unit, capture_us)
            .await
    }
}

impl std::ops::Deref for VideoTrackSender {
    type Target = LocalTrack;
    fn deref(&self) -> &LocalTrack {
        &self.0
    }
}

impl AsRef<LocalTrack> for VideoTrackSender {
    fn as_ref(&self) -> &LocalTrack {
        &self.0
    }
}

/// Sends Opus on one local audio track.
#[derive(Clone, Debug)]
pub struct AudioTrackSender(pub(super) LocalTrack);

impl AudioTrackSender {
    /// Sends one Opus packet; `duration` must be its real length (20 ms typically).
    pub async fn send(&self, opus_packet: &[u8], duration: Duration) -> Result<()> {
        self.0.send_sample(opus_packet, duration).await
    }
}

impl std::ops::Deref for AudioTrackSender {
    type Target = LocalTrack;
    fn deref(&self) -> &LocalTrack {
        &self.0
    }
}

impl AsRef<LocalTrack> for AudioTrackSender {
    fn as_ref(&self) -> &LocalTrack {
        &self.0
    }
}

/// Simulcast layers' RTP stream ids, smallest first. webrtc-rs keeps several encodings
/// of one track only when each has a rid; Janus is told the layers by SSRC instead
/// (`sfu::videoroom::with_ssrc_simulcast`).
const LAYER_RIDS: [&str; 3] = ["q", "h", "f"];

/// A video track of `layers` simulcast encodings (smallest first, no RTX: Janus would
/// need the FID pairs per layer, and loss on a small layer is healed by its next
/// keyframe request).
pub(super) fn new_layered_track(
    track_id: &str,
    stream_id: &str,
    layers: usize,
) -> Result<(Arc<TrackLocalStaticSample>, Vec<u32>)> {
    let ssrcs: Vec<u32> = (0..layers.clamp(2, LAYER_RIDS.len()))
        .map(|_| rand::random())
        .collect();
    let codec = h264_codec(H264_CODECS[0].0);
    let encodings = ssrcs
        .iter()
        .zip(LAYER_RIDS)
        .map(|(ssrc, rid)| RTCRtpEncodingParameters {
            rtp_coding_parameters: RTCRtpCodingParameters {
                rid: rid.to_owned(),
                ssrc: Some(*ssrc),
                ..Default::default()
            },
            active: true,
            codec: codec.clone(),
            ..Default::default()
        })
        .collect();
    let track = MediaStreamTrack::new(
        stream_id.to_owned(),
        track_id.to_owned(),
        track_id.to_owned(),
        RtpCodecKind::Video,
        encodings,
    );
    Ok((
        Arc::new(TrackLocalStaticSample::new(Instant::now(), track)?),
        ssrcs,
    ))
}

pub(super) fn new_sample_track(
    kind: MediaKind,
    track_id: &str,
    stream_id: &str,
) -> Result<(Arc<TrackLocalStaticSample>, u32)> {
    let ssrc: u32 = rand::random();
    let (codec, rtc_kind, rtx) = match kind {
        MediaKind::Video => (
            h264_codec(H264_CODECS[0].0),
            RtpCodecKind::Video,
            Some(RTCRtpRtxParameters {
                ssrc: rand::random(),
            }),
        ),
        MediaKind::Audio => (opus_codec(), RtpCodecKind::Audio, None),
    };
    let track = MediaStreamTrack::new(
        stream_id.to_owned(),
        track_id.to_owned(),
        track_id.to_owned(),
        rtc_kind,
        vec![RTCRtpEncodingParameters {
            rtp_coding_parameters: RTCRtpCodingParameters {
                ssrc: Some(ssrc),
                rtx,
                ..Default::default()
            },
            active: true,
            codec,
            ..Default::default()
        }],
    );
    Ok((
        Arc::new(TrackLocalStaticSample::new(Instant::now(), track)?),
        ssrc,
    ))
}
