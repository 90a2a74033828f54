//! The receive path of one remote track: RTP in, reordered, reassembled into access units
//! (video) or as Opus packets (audio), out on the track's bounded channel.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtcp::receiver_report::ReceiverReport;
use rtc::rtcp::reception_report::ReceptionReport;
use tokio::sync::mpsc;
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};

use super::assemble::AuAssembler;
use super::events::Shared;
use super::setup::NACK_INTERVAL;
use super::types::{AudioPacket, MediaKind, RemoteAccessUnit, RemoteMedia};
use crate::call::error::{CallError, Result};
use crate::call::reorder::{self, Lateness, Reorder};

/// Per remote track; ~3 s of 30 fps video or 10 s of 20 ms audio before we drop.
pub(super) const MEDIA_QUEUE: usize = 512;
/// Do not flood the sender with PLIs while a burst of loss lasts.
const AUTO_PLI_INTERVAL: Duration = Duration::from_millis(200);

/// Reads one remote track: reassembles H.264 AUs or forwards Opus packets.
pub(super) struct RemoteReader {
    pub(super) track: Arc<dyn TrackRemote>,
    pub(super) track_id: String,
    pub(super) kind: MediaKind,
    pub(super) tx: mpsc::Sender<RemoteMedia>,
    pub(super) dropped: Arc<AtomicU64>,
    /// The decoder's keyframe requests ([`KeyframeRequester`](super::KeyframeRequester)).
    pub(super) keyframe_requests: mpsc::UnboundedReceiver<()>,
    pub(super) shared: Arc<Shared>,
}

impl RemoteReader {
    pub(super) async fn run(mut self) {
        let mut au = AuAssembler::default();
        let mut reorder = Reorder::new(match self.kind {
            MediaKind::Video => reorder::DEFAULT_WAIT,
            MediaKind::Audio => Duration::ZERO,
        });
        let mut lateness = Lateness::new();
        let mut last_pli: Option<Instant> = None;
        let mut wait_set = Instant::now();
        let mut last_packet = Instant::now();
        loop {
            // The round trip changes slowly: look again once a second.
            if self.kind == MediaKind::Video && wait_set.elapsed() >= Duration::from_secs(1) {
                wait_set = Instant::now();
                reorder.set_wait(reorder::wait_for(self.shared.rtt(), NACK_INTERVAL));
            }
            let deadline = reorder.deadline();
            let event = tokio::select! {
                e = self.track.poll() => e,
                // A gap that no retransmission filled in time: go on without it.
                _ = tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now).into()),
                    if deadline.is_some() =>
                {
                    let skipped = reorder.skipped();
                    let released = reorder.expire(Instant::now());
                    tracing::debug!(
                        track = %self.track_id,
                        skipped = reorder.skipped() - skipped,
                        released = released.len(),
                        "gave up on a gap"
                    );
                    self.release(&mut au, released, &mut last_pli).await;
                    continue;
                }
                Some(()) = self.keyframe_requests.recv() => {
                    self.request_keyframe(&mut last_pli).await;
                    continue;
                }
            };
            let Some(event) = event else { break };
            match event {
                TrackRemoteEvent::OnRtpPacket(pkt) => {
                    let arrival = Instant::now();
                    if arrival - last_packet > Duration::from_millis(300) {
                        tracing::debug!(
                            track = %self.track_id,
                            silent_ms = (arrival - last_packet).as_millis() as u64,
                            seq = pkt.header.sequence_number,
                            "packets again"
                        );
                    }
                    last_packet = arrival;
                    let seq = pkt.header.sequence_number;
                    if self.kind == MediaKind::Audio {
                        // A gap is waited for only as long as this path reorders.
                        lateness.arrived(seq, arrival);
                        reorder.set_wait(lateness.wait());
                    }
                    let released = reorder.push(seq, (pkt, arrival), arrival);
                    self.release(&mut au, released, &mut last_pli).await;
                }
                TrackRemoteEvent::OnEnded => break,
                _ => {}
            }
        }
        if reorder.skipped() + reorder.late() > 0 {
            tracing::debug!(
                track = %self.track_id,
                skipped = reorder.skipped(),
                late = reorder.late(),
                "reordering gave up on packets"
            );
        }
        self.shared.end_remote_track(&self.track_id);
    }

    /// Delivers in-order packets: audio as they are, video as the AUs they complete.
    async fn release(
        &self,
        au: &mut AuAssembler,
        packets: Vec<(u16, (rtc::rtp::Packet, Instant))>,
        last_pli: &mut Option<Instant>,
    ) {
        match self.kind {
            MediaKind::Video => self.assemble(au, packets, last_pli).await,
            MediaKind::Audio => {
                for (seq, (pkt, arrival)) in packets {
                    self.deliver(RemoteMedia::Audio(AudioPacket {
                        data: pkt.payload,
                        sequence_number: seq,
                        rtp_timestamp: pkt.header.timestamp,
                        arrival,
                    }));
                }
            }
        }
    }

    /// Depacketizes in-order video packets and delivers the AUs they complete; an AU with a
    /// hole asks the sender for a keyframe.
    async fn assemble(
        &self,
        au: &mut AuAssembler,
        packets: Vec<(u16, (rtc::rtp::Packet, Instant))>,
        last_pli: &mut Option<Instant>,
    ) {
        for (seq, (pkt, arrival)) in packets {
            let h = &pkt.header;
            let repaired = self.shared.repaired.take(h.ssrc, seq);
            let frames = au.push(
                seq,
                h.timestamp,
                h.marker,
                &pkt.payload,
                (arrival, repaired),
            );
            for a in frames {
                if !a.complete {
                    self.request_keyframe(last_pli).await;
                }
                self.deliver(RemoteMedia::Video(RemoteAccessUnit {
                    data: a.data,
                    rtp_timestamp: a.timestamp,
                    arrival,
                    first_arrival: a.first_arrival,
                    complete: a.complete,
                    after_gap: a.after_gap,
                    repaired: a.repaired,
                }));
            }
        }
    }

    /// Sends a PLI unless one went out within the last `AUTO_PLI_INTERVAL`.
    async fn request_keyframe(&self, last_pli: &mut Option<Instant>) {
        if last_pli.is_some_and(|t| t.elapsed() < AUTO_PLI_INTERVAL) {
            return;
        }
        *last_pli = Some(Instant::now());
        tracing::debug!(track = %self.track_id, "asking for a keyframe (PLI)");
        if let Err(err) = send_pli(&*self.track).await {
            tracing::debug!("PLI failed: {err}");
        }
    }

    fn deliver(&self, media: RemoteMedia) {
        if self.tx.try_send(media).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

pub(super) async fn send_pli(track: &dyn TrackRemote) -> Result<()> {
    let Some(media_ssrc) = track.ssrcs().await.first().copied() else {
        return Err(CallError::NotNegotiated(track.track_id().await));
    };
    // A compound RR + PLI, as Chromium sends: Janus finds the stream an RTCP packet is
    // about by a known sender SSRC or else by the first report block, never by a PLI's
    // media SSRC; a bare PLI from a receive-only connection lands on its audio stream.
    // The block reports nothing (sequence 0), which our own feedback tap skips.
    let sender_ssrc = rand::random::<u32>().max(1);
    track
        .write_rtcp(vec![
            Box::new(ReceiverReport {
                ssrc: sender_ssrc,
                reports: vec![ReceptionReport {
                    ssrc: media_ssrc,
                    ..Default::default()
                }],
                ..Default::default()
            }),
            Box::new(PictureLossIndication {
                sender_ssrc,
                media_ssrc,
            }),
        ])
        .await?;
    Ok(())
}
