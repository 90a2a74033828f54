//! Retransmissions and FEC repair packets numbered and counted like media. webrtc-rs
//! binds only a stream's media SSRC to its interceptors, so its TWCC sender stamps no
//! transport-wide number on RTX or FlexFEC packets and the congestion controller keeps no
//! record of them: the estimate never sees those bytes. Under loss they can be a fifth of
//! what crosses the link; on a link that just narrowed, the flood of retransmissions
//! filled it while the estimate read only the media that got through (and backed off to a
//! third of the link). Wrapped in [`WithRepairFlows`], the two bind the repair SSRCs too,
//! as Chromium numbers everything it sends.

use std::time::Instant;

use rtc::interceptor::{Interceptor, StreamInfo, TaggedPacket};
use rtc::sansio::Protocol;

/// `I`, bound also to each local stream's RTX and FEC SSRCs (as streams of their own,
/// with the media stream's header extensions).
pub(super) struct WithRepairFlows<I>(pub(super) I);

/// The repair flows of `info`, each as a stream of its own.
fn repair_flows(info: &StreamInfo) -> impl Iterator<Item = StreamInfo> + '_ {
    [
        info.ssrc_rtx.zip(info.payload_type_rtx),
        info.ssrc_fec.zip(info.payload_type_fec),
    ]
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
    })
}

impl<I: Interceptor> Protocol<TaggedPacket, TaggedPacket, ()> for WithRepairFlows<I> {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = I::Error;
    type Time = Instant;

    fn handle_read(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        self.0.handle_read(msg)
    }

    fn poll_read(&mut self) -> Option<TaggedPacket> {
        self.0.poll_read()
    }

    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        self.0.handle_write(msg)
    }

    fn poll_write(&mut self) -> Option<TaggedPacket> {
        self.0.poll_write()
    }

    fn handle_event(&mut self, evt: ()) -> Result<(), Self::Error> {
        self.0.handle_event(evt)
    }

    fn poll_event(&mut self) -> Option<()> {
        self.0.poll_event()
    }

    fn handle_timeout(&mut self, now: Instant) -> Result<(), Self::Error> {
        self.0.handle_timeout(now)
    }

    fn poll_timeout(&mut self) -> Option<Instant> {
        self.0.poll_timeout()
    }

    fn close(&mut self) -> Result<(), Self::Error> {
        self.0.close()
    }
}

impl<I: Interceptor> Interceptor for WithRepairFlows<I> {
    fn bind_local_stream(&mut self, info: &StreamInfo) {
        self.0.bind_local_stream(info);
        for flow in repair_flows(info) {
            self.0.bind_local_stream(&flow);
        }
    }

    fn unbind_local_stream(&mut self, info: &StreamInfo) {
        for flow in repair_flows(info) {
            self.0.unbind_local_stream(&flow);
        }
        self.0.unbind_local_stream(info);
    }

    fn bind_remote_stream(&mut self, info: &StreamInfo) {
        self.0.bind_remote_stream(info);
    }

    fn unbind_remote_stream(&mut self, info: &StreamInfo) {
        self.0.unbind_remote_stream(info);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtc::interceptor::{AttributedPacket, Packet, RTPHeaderExtension, TwccSenderBuilder};
    use rtc::rtp::Packet as Rtp;
    use rtc::shared::TransportContext;

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
        let mut wrapped = WithRepairFlows(TwccSenderBuilder::new().build());
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
