//! RTCP feedback about what we send: PLI/FIR/NACK counts, loss and jitter from receiver
//! reports, and the round trip from their LSR/DLSR; keyframe requests leave from here.

use crate::sync::LockExt;
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rtc::interceptor::{Attribute, Interceptor, Packet, StreamInfo, TaggedPacket};
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtcp::receiver_report::ReceiverReport;
use rtc::rtcp::reception_report::ReceptionReport;
use rtc::rtcp::sender_report::SenderReport;
use rtc::rtcp::transport_feedbacks::transport_layer_nack::TransportLayerNack;
use rtc::sansio::Protocol;

use super::events::Shared;
use super::types::PeerEvent;

#[derive(Debug, Clone, Copy, Default)]
pub(super) struct SenderFeedback {
    pub(super) nack: u64,
    pub(super) pli: u64,
    pub(super) fir: u64,
    pub(super) packets_lost: i64,
    /// Of the packets the last report covers, lost (0..1).
    pub(super) fraction_lost: f64,
    /// RTP timestamp units.
    pub(super) jitter: u32,
    pub(super) rtt: Option<Duration>,
}

/// Round-trip time from a reception report (RFC 3550 §6.4.1), using the wall clock the SR
/// interceptor also uses for its NTP timestamps.
fn rtt_from_report(report: &ReceptionReport) -> Option<Duration> {
    if report.last_sender_report == 0 {
        return None;
    }
    let unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?;
    let secs = (unix.as_secs() + 2_208_988_800) as u32;
    let frac = ((u64::from(unix.subsec_nanos()) << 32) / 1_000_000_000) as u32;
    let now_mid = (secs << 16) | (frac >> 16);
    let rtt = now_mid
        .wrapping_sub(report.last_sender_report)
        .wrapping_sub(report.delay);
    // 1/65536 s units; anything beyond 10 s is clock trouble, not a path.
    (rtt < 10 << 16).then(|| Duration::from_secs_f64(f64::from(rtt) / 65_536.0))
}

impl Shared {
    /// The longest round trip the remote's reports show for our streams (None before any).
    pub(super) fn rtt(&self) -> Option<Duration> {
        let feedback = self.feedback.locked();
        feedback.values().filter_map(|f| f.rtt).max()
    }

    pub(super) fn on_feedback(&self, ssrc: u32, f: impl FnOnce(&mut SenderFeedback)) {
        let mut map = self.feedback.locked();
        f(map.entry(ssrc).or_default());
    }

    pub(super) fn on_reception_reports(&self, reports: &[ReceptionReport]) {
        // A block of nothing received is the one a PLI carries for Janus's sake
        // (`receive::send_pli`): it says nothing about the stream.
        for r in reports.iter().filter(|r| r.last_sequence_number != 0) {
            // total_lost is a signed 24-bit field.
            let lost = ((r.total_lost << 8) as i32 >> 8) as i64;
            let rtt = rtt_from_report(r);
            self.on_feedback(r.ssrc, |fb| {
                fb.packets_lost = lost;
                fb.fraction_lost = f64::from(r.fraction_lost) / 256.0;
                fb.jitter = r.jitter;
                if rtt.is_some() {
                    fb.rtt = rtt;
                }
            });
        }
    }

    pub(super) fn keyframe_requested_for_ssrc(&self, ssrc: u32) {
        let local = self.local_video_ssrcs.locked().get(&ssrc).cloned();
        if let Some((track_id, wanted)) = local {
            tracing::debug!(track = %track_id, "keyframe requested");
            wanted.set();
            self.emit(PeerEvent::KeyframeRequested { track_id });
        }
    }
}

/// Taps inbound PLI/FIR on its way through the core, so `KeyframeRequested` is emitted the
/// moment the packet is processed, and keeps the send estimate the feedback carries.
/// Passes everything through unchanged.
pub(super) struct KeyframeRequestTap {
    pub(super) shared: Arc<Shared>,
    pub(super) read_queue: VecDeque<TaggedPacket>,
    pub(super) write_queue: VecDeque<TaggedPacket>,
}

impl Protocol<TaggedPacket, TaggedPacket, ()> for KeyframeRequestTap {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = webrtc::error::Error;
    type Time = Instant;

    fn handle_read(&mut self, msg: TaggedPacket) -> std::result::Result<(), Self::Error> {
        // The congestion controller's estimate rides on the feedback that produced it.
        if let Some(Attribute::TargetBitrateChanged { bits_per_second }) =
            msg.message.get(&Attribute::TargetBitrateChanged {
                bits_per_second: 0.0,
            })
        {
            self.shared
                .send_estimate
                .store(bits_per_second.to_bits(), Ordering::Relaxed);
            self.shared.estimated.store(true, Ordering::Relaxed);
        }
        if let Packet::Rtcp(packets) = &msg.message.packet {
            for p in packets {
                let any = p.as_any();
                if let Some(pli) = any.downcast_ref::<PictureLossIndication>() {
                    self.shared.on_feedback(pli.media_ssrc, |fb| fb.pli += 1);
                    self.shared.keyframe_requested_for_ssrc(pli.media_ssrc);
                } else if let Some(fir) = any.downcast_ref::<FullIntraRequest>() {
                    for entry in &fir.fir {
                        self.shared.on_feedback(entry.ssrc, |fb| fb.fir += 1);
                        self.shared.keyframe_requested_for_ssrc(entry.ssrc);
                    }
                } else if let Some(nack) = any.downcast_ref::<TransportLayerNack>() {
                    self.shared.on_feedback(nack.media_ssrc, |fb| fb.nack += 1);
                } else if let Some(rr) = any.downcast_ref::<ReceiverReport>() {
                    self.shared.on_reception_reports(&rr.reports);
                } else if let Some(sr) = any.downcast_ref::<SenderReport>() {
                    self.shared.on_reception_reports(&sr.reports);
                    self.shared
                        .sender_reports
                        .locked()
                        .insert(sr.ssrc, u64::from(sr.packet_count));
                }
            }
        }
        self.read_queue.push_back(msg);
        Ok(())
    }

    fn poll_read(&mut self) -> Option<Self::Rout> {
        self.read_queue.pop_front()
    }

    fn handle_write(&mut self, msg: TaggedPacket) -> std::result::Result<(), Self::Error> {
        self.write_queue.push_back(msg);
        Ok(())
    }

    fn poll_write(&mut self) -> Option<Self::Wout> {
        self.write_queue.pop_front()
    }
}

impl Interceptor for KeyframeRequestTap {
    fn bind_local_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_local_stream(&mut self, _info: &StreamInfo) {}
    fn bind_remote_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_remote_stream(&mut self, _info: &StreamInfo) {}
}
