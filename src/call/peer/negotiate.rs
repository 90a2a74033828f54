//! The primitives `negotiation` drives: descriptions, candidates, and the webrtc-rs
//! workarounds around them (DTLS role, kinds without a common codec, ended tracks).

use crate::sync::LockExt;
use std::sync::atomic::Ordering;

use webrtc::rtp_transceiver::RTCRtpTransceiverDirection;

use super::sdp::{
    first_sections_usable, section_kinds, sending_track_ids, settles_nothing_new, with_dtls_setup,
    with_msid_semantic, with_opus_dtx,
};
use super::types::{IceCandidate, MediaKind, SdpType, SessionDescription, SignalingState};
use super::{LocalTrack, Peer};
use crate::call::error::Result;

impl Peer {
    /// The next offer restarts ICE: new credentials, candidates gathered anew, the old
    /// path dropped once the offer is applied.
    pub async fn restart_ice(&self) -> Result<()> {
        self.ensure_open()?;
        self.checks.close();
        self.pc.restart_ice().await?;
        Ok(())
    }

    pub async fn create_offer(&self) -> Result<SessionDescription> {
        self.drop_unusable_media().await?;
        let offer = SessionDescription::from_rtc(&self.pc.create_offer(None).await?)?;
        Ok(self.hand_out(offer, with_msid_semantic))
    }

    /// `desc` as `fix` rewrites it for the other side; `set_local_description` applies the
    /// description as webrtc-rs created it when it is given the rewritten one back.
    fn hand_out(
        &self,
        desc: SessionDescription,
        fix: impl FnOnce(&str) -> String,
    ) -> SessionDescription {
        let fixed = fix(&desc.sdp);
        if fixed == desc.sdp {
            return desc;
        }
        *self.as_created.locked() = Some((fixed.clone(), desc.sdp));
        SessionDescription {
            sdp_type: desc.sdp_type,
            sdp: fixed,
        }
    }

    /// webrtc-rs answers `a=setup:active` every time, also on a connection where it is
    /// already the DTLS server; browsers refuse that as a role change ("Failed to set SSL
    /// role"). A renegotiation answer therefore states the role already established. Only
    /// the copy handed out changes: webrtc-rs keeps its DTLS session whatever its own
    /// answer says, and `set_local_description` applies the answer as it was created.
    /// The copy also asks for Opus DTX, which webrtc-rs leaves out of answers.
    pub async fn create_answer(&self) -> Result<SessionDescription> {
        self.drop_unusable_media().await?;
        let answer = SessionDescription::from_rtc(&self.pc.create_answer(None).await?)?;
        let setup =
            (*self.dtls_client.locked()).map(|client| if client { "active" } else { "passive" });
        Ok(self.hand_out(answer, |sdp| {
            let sdp = with_opus_dtx(sdp);
            match setup {
                Some(setup) => with_dtls_setup(&sdp, setup),
                None => sdp,
            }
        }))
    }

    pub async fn set_local_description(&self, desc: &SessionDescription) -> Result<()> {
        let mut desc = desc.clone();
        let created = self.as_created.locked().take();
        if let Some((handed_out, created)) = created
            && handed_out == desc.sdp
        {
            desc.sdp = created;
        }
        self.pc.set_local_description(desc.to_rtc()?).await?;
        if desc.sdp_type == SdpType::Rollback {
            // Back to the credentials the remote has.
            self.checks.open();
        }
        if desc.sdp_type == SdpType::Answer {
            // Our first answer sets our role; webrtc-rs plays the one it states.
            self.note_dtls_role(&desc.sdp, true);
        }
        Ok(())
    }

    /// Records our DTLS role from the first answer applied, ours or the remote's.
    fn note_dtls_role(&self, answer_sdp: &str, ours: bool) {
        let mut role = self.dtls_client.locked();
        if role.is_some() {
            return;
        }
        let setup = answer_sdp
            .lines()
            .find_map(|l| l.trim_end().strip_prefix("a=setup:"));
        *role = match setup {
            Some("active") => Some(ours),
            Some("passive") => Some(!ours),
            _ => None,
        };
    }

    /// Applies a remote offer or answer, and notes for each media kind it shows for the
    /// first time whether that kind can be negotiated at all (see `drop_unusable_media`).
    pub async fn set_remote_description(&self, desc: &SessionDescription) -> Result<()> {
        self.pc.set_remote_description(desc.to_rtc()?).await?;
        // The agent has the remote's credentials now.
        self.checks.open();
        if desc.sdp_type == SdpType::Answer {
            self.note_dtls_role(&desc.sdp, false);
        }
        if matches!(desc.sdp_type, SdpType::Offer | SdpType::Answer) {
            self.note_codec_verdicts(&desc.sdp);
            self.reconcile_remote_tracks(&desc.sdp);
        }
        Ok(())
    }

    /// A kind (audio, video) whose first remote m-section lists no codec we take can never
    /// be negotiated on this connection: webrtc-rs 0.21 settles a kind's codecs from that
    /// first section for good, and from then on any sender of that kind fails every offer
    /// and answer with `ErrSenderWithNoCodecs` — the answer to a browser guest that offers
    /// only VP8, say. So before each offer or answer, our tracks of such a kind leave the
    /// connection and its transceivers go inactive: their m-sections are rejected (port 0)
    /// and the rest negotiates. Done here rather than when the verdict comes, because
    /// changing transceivers asks for one more negotiation round, which is only free when
    /// we are about to negotiate anyway (an extra offer right after our first one is
    /// answered holds up webrtc-rs's ICE checks by a second).
    async fn drop_unusable_media(&self) -> Result<()> {
        if !self.codec_verdicts.locked().values().any(|usable| !usable) {
            return Ok(());
        }
        self.detach_unusable_tracks().await?;
        let remote = self.pc.remote_description().await.map(|d| d.sdp);
        self.park_unusable_transceivers(remote.as_deref().unwrap_or_default())
            .await
    }

    /// Records the verdict for each kind seen for the first time.
    fn note_codec_verdicts(&self, remote_sdp: &str) {
        let mut verdicts = self.codec_verdicts.locked();
        for (kind, usable) in first_sections_usable(remote_sdp) {
            verdicts.entry(kind).or_insert_with(|| {
                if !usable {
                    tracing::info!("the remote has no {kind:?} codec we take");
                }
                usable
            });
        }
    }

    pub(super) fn kind_unusable(&self, kind: MediaKind) -> bool {
        self.codec_verdicts
            .locked()
            .get(&kind)
            .is_some_and(|usable| !usable)
    }

    /// Takes our tracks of unusable kinds off the connection (their transceivers stay,
    /// without a sender, and are parked).
    async fn detach_unusable_tracks(&self) -> Result<()> {
        let tracks: Vec<LocalTrack> = self
            .local_tracks
            .locked()
            .values()
            .filter(|t| self.kind_unusable(t.kind()))
            .cloned()
            .collect();
        for t in tracks {
            if t.inner.detached.swap(true, Ordering::AcqRel) {
                continue;
            }
            let Some(rtp_sender) = &t.inner.rtp_sender else {
                continue;
            };
            tracing::info!(track_id = t.track_id(), "not sending: no codec in common");
            let mut transceiver = None;
            for tr in self.pc.get_transceivers().await {
                if tr
                    .sender()
                    .await?
                    .is_some_and(|s| s.id() == rtp_sender.id())
                {
                    transceiver = Some(tr);
                    break;
                }
            }
            self.pc.remove_track(rtp_sender).await?;
            if let Some(tr) = transceiver {
                tr.set_direction(RTCRtpTransceiverDirection::Inactive)
                    .await?;
            }
        }
        Ok(())
    }

    /// Sets every transceiver whose m-section is of an unusable kind to inactive. Its
    /// section is rejected and carries no direction, and webrtc-rs would otherwise compare
    /// that missing direction with the transceiver's (recvonly) after every exchange and
    /// ask to renegotiate forever; inactive matches the rejection (at most one more round).
    async fn park_unusable_transceivers(&self, remote_sdp: &str) -> Result<()> {
        let kinds = section_kinds(remote_sdp);
        for tr in self.pc.get_transceivers().await {
            let Some(mid) = tr.mid().await? else {
                continue;
            };
            let unusable = kinds
                .iter()
                .any(|(m, kind)| *m == mid && self.kind_unusable(*kind));
            if unusable && tr.direction().await? != RTCRtpTransceiverDirection::Inactive {
                tr.set_direction(RTCRtpTransceiverDirection::Inactive)
                    .await?;
            }
        }
        Ok(())
    }

    pub async fn add_ice_candidate(&self, candidate: IceCandidate) -> Result<()> {
        // End-of-candidates (an empty candidate, which some stacks relay): nothing to add.
        if candidate.candidate.trim().is_empty() {
            return Ok(());
        }
        self.pc.add_ice_candidate(candidate.into()).await?;
        Ok(())
    }

    /// Whether `offer` changes anything the descriptions in force settled.
    /// Whether `offer` changes anything the descriptions in force settled.
    pub async fn offer_settles_something(&self, offer: &SessionDescription) -> bool {
        match self.pc.current_local_description().await {
            Some(current) => !settles_nothing_new(&offer.sdp, &current.sdp),
            None => true,
        }
    }

    /// An offer was not sent (it settled nothing new): the next local change of tracks
    /// asks for negotiation itself (`Shared::offer_skipped`).
    pub fn offer_skipped(&self) {
        self.shared.offer_skipped.store(true, Ordering::Release);
    }

    pub async fn has_remote_description(&self) -> bool {
        self.pc.remote_description().await.is_some()
    }

    pub async fn signaling_state(&self) -> SignalingState {
        if self.pc.pending_local_description().await.is_some() {
            SignalingState::HaveLocalOffer
        } else if self.pc.pending_remote_description().await.is_some() {
            SignalingState::HaveRemoteOffer
        } else {
            SignalingState::Stable
        }
    }

    /// The local SDP currently in effect (for diagnostics and tests).
    pub async fn local_sdp(&self) -> Option<String> {
        self.pc.local_description().await.map(|d| d.sdp)
    }

    /// Ends every remote track the remote no longer sends (0.21 emits no such event).
    fn reconcile_remote_tracks(&self, remote_sdp: &str) {
        let sending = sending_track_ids(remote_sdp);
        let gone: Vec<String> = self
            .shared
            .remote
            .locked()
            .keys()
            .filter(|id| !sending.contains(*id))
            .cloned()
            .collect();
        for id in gone {
            self.shared.end_remote_track(&id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::call::peer::{AudioTrackSender, PeerConfig, VideoTrackSender};

    /// A Chromium-like description (trimmed) of the given (m-line, mid, attributes).
    fn chromium_sdp(sections: &[(&str, &str, &[&str])]) -> String {
        let mut sdp =
            String::from("v=0\r\no=- 5329716900689024032 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n");
        let bundled: Vec<&str> = sections
            .iter()
            .filter(|(m, ..)| !m.contains(" 0 "))
            .map(|(_, mid, _)| *mid)
            .collect();
        sdp += &format!(
            "a=group:BUNDLE {}\r\na=msid-semantic: WMS s\r\n",
            bundled.join(" ")
        );
        for (mline, mid, attrs) in sections {
            sdp += &format!(
                "m={mline}\r\nc=IN IP4 0.0.0.0\r\na=ice-ufrag:sG5q\r\na=ice-pwd:oDDK9wAg/vRqOZjHjYpNEHJ9\r\n\
                 a=fingerprint:sha-256 B1:6F:B4:3A:64:4A:AF:CE:EC:FC:50:C2:74:BC:FA:A7:BE:79:1C:96:56:89:64:9E:B6:A9:90:81:A4:8C:2C:68\r\n\
                 a=mid:{mid}\r\na=rtcp-mux\r\n"
            );
            for a in *attrs {
                sdp += &format!("{a}\r\n");
            }
        }
        sdp
    }

    const AUDIO: &[&str] = &[
        "a=setup:actpass",
        "a=sendrecv",
        "a=msid:s a",
        "a=rtpmap:111 opus/48000/2",
        "a=fmtp:111 minptime=10;useinbandfec=1",
        "a=rtpmap:0 PCMU/8000",
        "a=ssrc:11 cname:c",
    ];
    const VP8: &[&str] = &[
        "a=setup:actpass",
        "a=sendrecv",
        "a=msid:s v",
        "a=rtpmap:96 VP8/90000",
        "a=rtpmap:97 rtx/90000",
        "a=fmtp:97 apt=96",
        "a=ssrc-group:FID 21 22",
        "a=ssrc:21 cname:c",
        "a=ssrc:22 cname:c",
    ];
    const DATA: &[&str] = &["a=setup:actpass", "a=sctp-port:5000"];

    fn section<'a>(sdp: &'a str, mid: &str) -> &'a str {
        sdp.split("\nm=")
            .find(|s| s.contains(&format!("a=mid:{mid}\r")))
            .unwrap_or_else(|| panic!("no m-section {mid} in {sdp}"))
    }

    async fn peer_with_camera_and_mic() -> (Peer, VideoTrackSender, AudioTrackSender) {
        let (peer, _events) = Peer::new(PeerConfig::loopback()).await.unwrap();
        let mic = peer.add_audio_track("me-mic", "camera").await.unwrap();
        let camera = peer.add_video_track("me-camera", "camera").await.unwrap();
        (peer, camera, mic)
    }

    #[tokio::test]
    async fn a_first_offer_states_msid_semantic_and_applies_as_webrtc_rs_made_it() {
        let (peer, _camera, _mic) = peer_with_camera_and_mic().await;
        let offer = peer.create_offer().await.unwrap();
        assert!(
            offer.sdp.contains("\r\na=msid-semantic: WMS"),
            "{}",
            offer.sdp
        );
        assert!(
            offer.sdp.contains("a=msid:camera me-camera"),
            "{}",
            offer.sdp
        );
        // Given back the rewritten offer, webrtc-rs applies its own.
        peer.set_local_description(&offer).await.unwrap();
        assert_eq!(peer.signaling_state().await, SignalingState::HaveLocalOffer);
    }

    #[test]
    fn codec_verdicts_come_from_the_first_section_of_each_kind() {
        let vp8_first = chromium_sdp(&[
            ("audio 9 UDP/TLS/RTP/SAVPF 111 0", "0", AUDIO),
            ("video 9 UDP/TLS/RTP/SAVPF 96 97", "1", VP8),
            (
                "video 9 UDP/TLS/RTP/SAVPF 102",
                "3",
                &["a=rtpmap:102 H264/90000"],
            ),
            ("application 9 UDP/DTLS/SCTP webrtc-datachannel", "2", DATA),
        ]);
        assert_eq!(
            first_sections_usable(&vp8_first),
            [(MediaKind::Audio, true), (MediaKind::Video, false)]
        );
        assert_eq!(
            section_kinds(&vp8_first),
            [
                ("0".to_owned(), MediaKind::Audio),
                ("1".to_owned(), MediaKind::Video),
                ("3".to_owned(), MediaKind::Video),
            ]
        );
        // A rejected section lists no codec at all.
        let rejected = chromium_sdp(&[("video 0 UDP/TLS/RTP/SAVPF 0", "0", &[])]);
        assert_eq!(
            first_sections_usable(&rejected),
            [(MediaKind::Video, false)]
        );
    }

    /// A browser offering only VP8 first: the answer rejects its video section and keeps
    /// audio and data (0.21 alone fails with `ErrSenderWithNoCodecs`), and later offers
    /// and video tracks do not fail either.
    #[tokio::test]
    async fn a_vp8_only_offer_gets_an_answer_with_its_video_rejected() {
        let (peer, camera, mic) = peer_with_camera_and_mic().await;
        let offer = chromium_sdp(&[
            ("audio 9 UDP/TLS/RTP/SAVPF 111 0", "0", AUDIO),
            ("video 9 UDP/TLS/RTP/SAVPF 96 97", "1", VP8),
            ("application 9 UDP/DTLS/SCTP webrtc-datachannel", "2", DATA),
        ]);
        peer.set_remote_description(&SessionDescription {
            sdp_type: SdpType::Offer,
            sdp: offer,
        })
        .await
        .unwrap();
        let answer = peer.create_answer().await.expect("an answer");
        peer.set_local_description(&answer).await.unwrap();
        assert!(
            section(&answer.sdp, "1").starts_with("video 0 "),
            "{}",
            answer.sdp
        );
        assert!(
            section(&answer.sdp, "0").contains("opus/48000/2"),
            "{}",
            answer.sdp
        );
        assert!(section(&answer.sdp, "2").starts_with("application 9 "));
        assert!(
            answer.sdp.contains("a=group:BUNDLE 0 2\r"),
            "{}",
            answer.sdp
        );
        assert!(mic.is_negotiated().await);
        assert!(!camera.is_negotiated().await);

        let screen = peer.add_video_track("me-screen-1", "screen").await.unwrap();
        let offer = peer.create_offer().await.expect("a later offer");
        assert!(
            section(&offer.sdp, "1").starts_with("video 0 "),
            "{}",
            offer.sdp
        );
        assert!(!offer.sdp.contains("H264"), "{}", offer.sdp);
        assert!(!screen.is_negotiated().await);
        peer.close().await.unwrap();
    }

    /// Our offer first, answered by a browser that rejects our video: later offers and
    /// answers leave video out instead of failing.
    #[tokio::test]
    async fn an_answer_rejecting_our_video_leaves_later_negotiations_working() {
        let (peer, camera, _mic) = peer_with_camera_and_mic().await;
        let offer = peer.create_offer().await.unwrap();
        peer.set_local_description(&offer).await.unwrap();
        let answer = chromium_sdp(&[
            (
                "audio 9 UDP/TLS/RTP/SAVPF 111",
                "0",
                &[&AUDIO[..5], &AUDIO[6..]].concat(),
            ),
            (
                "video 0 UDP/TLS/RTP/SAVPF 0",
                "1",
                &["a=setup:active", "a=sendrecv"],
            ),
            ("application 9 UDP/DTLS/SCTP webrtc-datachannel", "2", DATA),
        ])
        .replace("a=setup:actpass", "a=setup:active");
        peer.set_remote_description(&SessionDescription {
            sdp_type: SdpType::Answer,
            sdp: answer,
        })
        .await
        .unwrap();
        assert!(!camera.is_negotiated().await);
        let offer = peer.create_offer().await.expect("a later offer");
        assert!(
            section(&offer.sdp, "1").starts_with("video 0 "),
            "{}",
            offer.sdp
        );
        peer.close().await.unwrap();
    }

    /// We offered and the browser answered `active` (we are the DTLS server): our answer to
    /// its next offer says `passive`, not webrtc-rs's `active`, and still applies.
    #[tokio::test]
    async fn a_renegotiation_answer_keeps_the_dtls_role() {
        let (peer, _events) = Peer::new(PeerConfig::loopback()).await.unwrap();
        let _mic = peer.add_audio_track("me-mic", "camera").await.unwrap();
        let offer = peer.create_offer().await.unwrap();
        peer.set_local_description(&offer).await.unwrap();
        let sections = |setup: &'static str| {
            let audio: Vec<&str> = [setup]
                .into_iter()
                .chain(AUDIO[1..].iter().copied())
                .collect();
            chromium_sdp(&[
                ("audio 9 UDP/TLS/RTP/SAVPF 111 0", "0", &audio),
                (
                    "application 9 UDP/DTLS/SCTP webrtc-datachannel",
                    "1",
                    &[setup, "a=sctp-port:5000"],
                ),
            ])
        };
        for (sdp_type, setup) in [
            (SdpType::Answer, "a=setup:active"),
            (SdpType::Offer, "a=setup:actpass"),
        ] {
            peer.set_remote_description(&SessionDescription {
                sdp_type,
                sdp: sections(setup),
            })
            .await
            .unwrap();
        }
        let answer = peer.create_answer().await.unwrap();
        assert!(answer.sdp.contains("a=setup:passive"), "{}", answer.sdp);
        assert!(!answer.sdp.contains("a=setup:active"), "{}", answer.sdp);
        peer.set_local_description(&answer).await.unwrap();
        assert_eq!(peer.signaling_state().await, SignalingState::Stable);
        peer.close().await.unwrap();
    }
}
