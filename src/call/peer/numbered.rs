//! Retransmissions and FEC repair packets numbered and counted like media. webrtc-rs
//! binds only a stream's media SSRC to its interceptors, so its TWCC sender stamps no
//! transport-wide number on RTX or FlexFEC packets and the congestion controller keeps no
//! record of them: the estimate never sees those bytes. Under loss they can be a fifth of
//! what crosses the link; on a link that just narrowed, the flood of retransmissions
//! filled it while the estimate read only the media that got through (and backed off to a
//! third of the link). Wrapped with [`RepairFlows`], the two bind the repair SSRCs too,
//! as Chromium numbers everything it sends.

use rtc::interceptor::StreamInfo;

use super::wrapped::Around;

/// Binds a local stream's RTX and FEC SSRCs too (as streams of their own, with the media
/// stream's header extensions), after the stream itself; with `false`, the stream alone.
/// Only towards confab peers: to Janus, numbered retransmissions left a publisher behind
/// a narrow link with no picture at all (`tests/sfu_link.rs`), so there they stay as
/// webrtc-rs sends them.
pub(super) struct RepairFlows(pub(super) bool);

impl Around for RepairFlows {
    fn local_streams(&self, info: &StreamInfo) -> Vec<StreamInfo> {
        if !self.0 {
            return vec![info.clone()];
        }
        let flows = [
            info.ssrc_rtx.zip(info.payload_type_rtx),
            info.ssrc_fec.zip(info.payload_type_fec),
        ];
        std::iter::once(info.clone())
            .chain(
                flows
                    .into_iter()
                    .flatten()
                    .map(|(ssrc, payload_type)| StreamInfo {
                        ssrc,
                        payload_type,
                        ssrc_rtx: None,
                        payload_type_rtx: None,
                        ssrc_fec: None,
                        payload_type_fec: None,
                        ..info.clone()
                    }),
            )
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::super::wrapped::Wrapped;
    use super::*;
    use rtc::interceptor::{
        AttributedPacket, Interceptor, Packet, RTPHeaderExtension, TaggedPacket, TwccSenderBuilder,
    };
    use rtc::rtp::Packet as Rtp;
    use rtc::shared::TransportContext;
    use std::time::Instant;

    const TWCC_URI: &str =
        "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01";

    fn on(ssrc: u32) -> TaggedPacket {
        let mut p = Rtp::default();
        p.header.version = 2;
        p.header.ssrc = ssrc;
        TaggedPacket {
            now: Instant::now(),
            transport: TransportContext::default(),
            message: AttributedPacket::new(Packet::Rtp(p)),
        }
    }

    fn numbered(out: TaggedPacket) -> bool {
        match out.message.packet {
            Packet::Rtp(p) => p.header.get_extension(3).is_some(),
            _ => false,
        }
    }

    #[test]
    fn retransmissions_and_repair_packets_get_a_transport_wide_number_like_media() {
        let info = StreamInfo {
            ssrc: 1,
            ssrc_rtx: Some(2),
            payload_type_rtx: Some(103),
            ssrc_fec: Some(3),
            payload_type_fec: Some(118),
            rtp_header_extensions: vec![RTPHeaderExtension {
                uri: TWCC_URI.to_owned(),
                id: 3,
            }],
            ..Default::default()
        };
        let mut plain = TwccSenderBuilder::new().build();
        let mut wrapped = Wrapped {
            inner: TwccSenderBuilder::new().build(),
            around: RepairFlows(true),
        };
        plain.bind_local_stream(&info);
        wrapped.bind_local_stream(&info);
        let stamped = |i: &mut dyn Interceptor, ssrc| {
            i.handle_write(on(ssrc)).unwrap();
            numbered(i.poll_write().unwrap())
        };
        assert_eq!(
            [1, 2, 3, 4].map(|s| stamped(&mut plain, s)),
            [true, false, false, false],
            "webrtc-rs alone numbers only the media SSRC"
        );
        assert_eq!(
            [1, 2, 3, 4].map(|s| stamped(&mut wrapped, s)),
            [true, true, true, false],
            "media, RTX and FEC; not a stream nobody bound"
        );
        wrapped.unbind_local_stream(&info);
        assert!(!stamped(&mut wrapped, 2), "unbound with its media");
    }
}
