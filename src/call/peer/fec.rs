//! Forward error correction for video: FlexFEC-03 repair packets on their own SSRC
//! (`a=ssrc-group:FEC-FR`, negotiated like RTX: a remote that does not take
//! `flexfec-03`, a browser by default or Janus, gets none). A repair packet rebuilds a
//! lost packet at the receiver without a round trip for a retransmission, at the cost of
//! its bytes. So protection follows the loss the path always has (the estimator's
//! baseline, not a narrow link's overflow, which more bytes would only deepen): none on a
//! clean link, a quarter of the media's packets at 10 % loss.
//!
//! The encoder's slot is application-ward of the pacer and the TWCC sender: repair packets
//! are paced, numbered (`numbered.rs`) and counted in the estimate like media, and the
//! encoders get the estimate less their share. Media packets are protected before their
//! number is written; the receiver gives its decoder the packets without that extension,
//! or the XOR would not match. A rebuilt packet has no number either, and the feedback
//! reports it lost, as the path lost it: the estimate and the protection see the true
//! loss.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use rtc::interceptor::{
    Attribute, AttributedPacket, FlexFec03Decoder, FlexFec03Encoder, Interceptor, Packet,
    StreamInfo, TaggedPacket,
};
use rtc::rtp::Packet as Rtp;
use rtc::sansio::Protocol;

use super::probe::{Cluster, Probing, Request};

/// Below this steady loss retransmission alone repairs in time.
const MIN_LOSS: f64 = 0.01;
/// Repair packets per media packet: this many times the loss,
const PER_LOSS: f64 = 2.5;
/// within these bounds.
const MIN_SHARE: f64 = 0.1;
const MAX_SHARE: f64 = 0.5;
/// The most media packets one block protects (a 46-bit mask).
const MAX_BLOCK: usize = 46;
/// A block of small frames closes at the latest with this many (at low rates a frame is
/// a packet or two: protecting each alone would cost a repair packet per frame).
const MAX_FRAMES: usize = 3;
/// The transport-wide sequence number's header extension.
const TWCC_URI: &str = "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01";

/// Repair packets per media packet for a path that always loses `loss` of its packets.
pub(crate) fn protection(loss: f64) -> f64 {
    if loss < MIN_LOSS {
        0.0
    } else {
        (loss * PER_LOSS).clamp(MIN_SHARE, MAX_SHARE)
    }
}

/// One stream's outgoing packets gathered into blocks: a block closes at the end of a
/// frame once it earns a repair packet (or after [`MAX_FRAMES`]), or at [`MAX_BLOCK`].
/// Pure.
#[derive(Debug, Default)]
pub(crate) struct Blocks {
    pending: Vec<Rtp>,
    frames: usize,
}

impl Blocks {
    /// `packet` leaves with `share` protection; a closed block and its repair count.
    pub(crate) fn push(&mut self, packet: &Rtp, share: f64) -> Option<(Vec<Rtp>, u32)> {
        let follows = self.pending.last().is_none_or(|last| {
            packet.header.sequence_number == last.header.sequence_number.wrapping_add(1)
        });
        if share <= 0.0 || !follows {
            // A mask describes a consecutive run: start again.
            self.pending.clear();
            self.frames = 0;
            if share <= 0.0 {
                return None;
            }
        }
        self.pending.push(packet.clone());
        if packet.header.marker {
            self.frames += 1;
        }
        let repairs = (self.pending.len() as f64 * share).round() as u32;
        let frame_done = packet.header.marker && (repairs >= 1 || self.frames >= MAX_FRAMES);
        if !frame_done && self.pending.len() < MAX_BLOCK {
            return None;
        }
        self.frames = 0;
        Some((std::mem::take(&mut self.pending), repairs.max(1)))
    }
}

/// What repair costs a connection and how lossy its path is: the estimator learns the
/// loss, FEC protects in proportion, the pacer measures the retransmissions leaving, and
/// the encoders get the estimate less both (as Chromium gives its encoders the estimate
/// less its protection and NACK rates).
#[derive(Debug, Default)]
pub(crate) struct Repair {
    /// The path's steady loss (a share, as `f64` bits), from the estimator.
    loss: AtomicU64,
    /// FEC repair packets sent and media packets rebuilt.
    pub(crate) sent: AtomicU64,
    pub(crate) recovered: AtomicU64,
    /// Whether the remote took FEC for any stream of ours.
    protecting: AtomicU64,
    /// Retransmissions leaving now (bit/s, as `f64` bits), from the pacer.
    retransmit_bps: AtomicU64,
}

/// The encoders keep at least this share of what FEC leaves them, whatever the
/// retransmissions take (a burst of them passes).
const MIN_MEDIA: f64 = 0.5;

impl Repair {
    pub(crate) fn set_retransmit_bps(&self, bps: f64) {
        self.retransmit_bps.store(bps.to_bits(), Ordering::Relaxed);
    }

    /// What of `estimate` the encoders may fill: less FEC's share and the
    /// retransmissions going out.
    pub(crate) fn media_rate(&self, estimate: f64) -> f64 {
        let after_fec = estimate * self.media_share();
        let retransmit = f64::from_bits(self.retransmit_bps.load(Ordering::Relaxed));
        (after_fec - retransmit).max(after_fec * MIN_MEDIA)
    }

    pub(crate) fn set_loss(&self, loss: f64) {
        self.loss.store(loss.to_bits(), Ordering::Relaxed);
    }

    fn loss(&self) -> f64 {
        f64::from_bits(self.loss.load(Ordering::Relaxed))
    }

    /// A stream of ours is protected from now on (`true`), or no longer.
    pub(crate) fn protect(&self, on: bool) {
        if on {
            self.protecting.fetch_add(1, Ordering::Relaxed);
        } else {
            self.protecting.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Whether the remote took FEC for any stream of ours.
    pub(crate) fn protecting(&self) -> bool {
        self.protecting.load(Ordering::Relaxed) > 0
    }

    /// The share of the send rate that is media, not repair.
    pub(crate) fn media_share(&self) -> f64 {
        if self.protecting.load(Ordering::Relaxed) == 0 {
            return 1.0;
        }
        1.0 / (1.0 + protection(self.loss()))
    }
}

/// The send half: repair packets for each protected stream, as many as the loss asks.
pub(super) struct FecSender {
    state: Arc<Repair>,
    probing: Arc<Probing>,
    streams: HashMap<u32, Protected>,
    read_queue: VecDeque<TaggedPacket>,
    write_queue: VecDeque<TaggedPacket>,
}

/// One protected stream.
struct Protected {
    encoder: FlexFec03Encoder,
    blocks: Blocks,
    /// The repair stream's SSRC.
    ssrc: u32,
    /// The last media packets sent, in a consecutive run: what a probe's packets repair.
    recent: VecDeque<Rtp>,
    /// The frame being sent, and frames' usual size (bytes).
    frame_bytes: usize,
    usual_frame: f64,
}

/// A probe does not follow a frame this many times the usual size (a keyframe): the
/// pacer is still sending it, and the probe's excess would queue behind it in the link.
const BIG_FRAME: f64 = 2.0;

/// The most media packets a probe's repair packets cover.
const PROBE_BASE: usize = 20;

impl Protected {
    /// Takes in a media packet; at a frame's end, whether the frame was of the usual
    /// size (a probe may follow it).
    fn remember(&mut self, packet: &Rtp) -> bool {
        self.frame_bytes += packet.payload.len();
        let ordinary = packet.header.marker.then(|| {
            let bytes = std::mem::take(&mut self.frame_bytes) as f64;
            let ordinary = self.usual_frame > 0.0 && bytes <= BIG_FRAME * self.usual_frame;
            self.usual_frame = if self.usual_frame > 0.0 {
                0.9 * self.usual_frame + 0.1 * bytes
            } else {
                bytes
            };
            ordinary
        });
        let follows = self.recent.back().is_none_or(|last| {
            packet.header.sequence_number == last.header.sequence_number.wrapping_add(1)
        });
        if !follows {
            self.recent.clear();
        }
        self.recent.push_back(packet.clone());
        if self.recent.len() > PROBE_BASE {
            self.recent.pop_front();
        }
        ordinary.unwrap_or(false) && self.recent.len() > 1
    }

    /// The repair packets of a probe (`probe.rs`), and the cluster they make.
    fn probe(&mut self, request: Request) -> (Vec<Rtp>, Cluster) {
        let n = request.packets.min(self.recent.len() as u32);
        let packets = self.encoder.encode(self.recent.make_contiguous(), n);
        let cluster = Cluster {
            id: request.id,
            rate_bps: request.rate_bps,
            ssrc: self.ssrc,
            seqs: packets.iter().map(|p| p.header.sequence_number).collect(),
        };
        (packets, cluster)
    }
}

impl FecSender {
    pub(super) fn new(state: Arc<Repair>, probing: Arc<Probing>) -> Self {
        Self {
            state,
            probing,
            streams: HashMap::new(),
            read_queue: VecDeque::new(),
            write_queue: VecDeque::new(),
        }
    }
}

impl Protocol<TaggedPacket, TaggedPacket, ()> for FecSender {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = webrtc::error::Error;
    type Time = Instant;

    fn handle_read(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        self.read_queue.push_back(msg);
        Ok(())
    }

    fn poll_read(&mut self) -> Option<TaggedPacket> {
        self.read_queue.pop_front()
    }

    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        let mut probe = Vec::new();
        let repairs = match &msg.message.packet {
            Packet::Rtp(rtp) => match self.streams.get_mut(&rtp.header.ssrc) {
                Some(stream) => {
                    // A probe follows an ordinary frame's last packet.
                    if stream.remember(rtp)
                        && let Some(request) = self.probing.take()
                    {
                        let cluster;
                        (probe, cluster) = stream.probe(request);
                        self.probing.sent(cluster);
                    }
                    let share = protection(self.state.loss());
                    let encoder = &mut stream.encoder;
                    stream
                        .blocks
                        .push(rtp, share)
                        .map(|(block, n)| encoder.encode(&block, n))
                        .unwrap_or_default()
                }
                None => Vec::new(),
            },
            _ => Vec::new(),
        };
        let (now, transport) = (msg.now, msg.transport);
        // The media first: the repair protects what has left.
        self.write_queue.push_back(msg);
        self.state
            .sent
            .fetch_add(repairs.len() as u64, Ordering::Relaxed);
        for packet in repairs.into_iter().chain(probe) {
            self.write_queue.push_back(TaggedPacket {
                now,
                transport,
                message: AttributedPacket::new(Packet::Rtp(packet)),
            });
        }
        Ok(())
    }

    fn poll_write(&mut self) -> Option<TaggedPacket> {
        self.write_queue.pop_front()
    }

    fn handle_timeout(&mut self, _now: Instant) -> Result<(), Self::Error> {
        Ok(())
    }

    fn poll_timeout(&mut self) -> Option<Instant> {
        None
    }
}

impl Interceptor for FecSender {
    fn bind_local_stream(&mut self, info: &StreamInfo) {
        if let (Some(ssrc), Some(pt)) = (info.ssrc_fec, info.payload_type_fec) {
            let encoder = FlexFec03Encoder::new(pt, ssrc).with_base_sequence_number(rand::random());
            let stream = Protected {
                encoder,
                blocks: Blocks::default(),
                ssrc,
                recent: VecDeque::new(),
                frame_bytes: 0,
                usual_frame: 0.0,
            };
            self.streams.insert(info.ssrc, stream);
            self.state.protect(true);
        }
    }

    fn unbind_local_stream(&mut self, info: &StreamInfo) {
        if self.streams.remove(&info.ssrc).is_some() {
            self.state.protect(false);
        }
    }

    fn bind_remote_stream(&mut self, _info: &StreamInfo) {}

    fn unbind_remote_stream(&mut self, _info: &StreamInfo) {}
}

struct Decoding {
    decoder: FlexFec03Decoder,
    /// The transport-wide number's extension id on this stream, if negotiated.
    twcc: Option<u8>,
}

/// The receive half: rebuilds lost media packets from the repair stream, before the
/// NACK generator would ask for them.
pub(super) struct FecReceiver {
    state: Arc<Repair>,
    decoders: HashMap<u32, Decoding>,
    repair_to_media: HashMap<u32, u32>,
    read_queue: VecDeque<TaggedPacket>,
    write_queue: VecDeque<TaggedPacket>,
}

impl FecReceiver {
    pub(super) fn new(state: Arc<Repair>) -> Self {
        Self {
            state,
            decoders: HashMap::new(),
            repair_to_media: HashMap::new(),
            read_queue: VecDeque::new(),
            write_queue: VecDeque::new(),
        }
    }
}

/// `packet` as the sender's encoder saw it: without the transport-wide number.
pub(crate) fn as_protected(packet: &Rtp, twcc: Option<u8>) -> Rtp {
    let mut p = packet.clone();
    if let Some(id) = twcc
        && p.header.extensions.iter().any(|e| e.id == id)
    {
        p.header.extensions.retain(|e| e.id != id);
        p.header.extensions_padding = 0;
        if p.header.extensions.is_empty() {
            p.header.extension = false;
        }
    }
    p
}

impl Protocol<TaggedPacket, TaggedPacket, ()> for FecReceiver {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = webrtc::error::Error;
    type Time = Instant;

    fn handle_read(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        let Packet::Rtp(rtp) = &msg.message.packet else {
            self.read_queue.push_back(msg);
            return Ok(());
        };
        let ssrc = rtp.header.ssrc;
        let (now, transport) = (msg.now, msg.transport);
        let recovered = if let Some(media) = self.repair_to_media.get(&ssrc) {
            // A repair packet goes on: the transport-wide feedback (after us) must report
            // it arrived, or the sender reads every one as lost. The NACK generator leaves
            // its stream alone and the endpoint drops it.
            let recovered = self
                .decoders
                .get_mut(media)
                .map(|d| d.decoder.decode(rtp.clone()))
                .unwrap_or_default();
            self.read_queue.push_back(msg);
            recovered
        } else if let Some(d) = self.decoders.get_mut(&ssrc) {
            let recovered = d.decoder.decode(as_protected(rtp, d.twcc));
            self.read_queue.push_back(msg);
            recovered
        } else {
            self.read_queue.push_back(msg);
            return Ok(());
        };
        self.state
            .recovered
            .fetch_add(recovered.len() as u64, Ordering::Relaxed);
        for packet in recovered {
            let mut message = AttributedPacket::new(Packet::Rtp(packet));
            message.add(Attribute::RecoveredByFec);
            self.read_queue.push_back(TaggedPacket {
                now,
                transport,
                message,
            });
        }
        Ok(())
    }

    fn poll_read(&mut self) -> Option<TaggedPacket> {
        self.read_queue.pop_front()
    }

    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        self.write_queue.push_back(msg);
        Ok(())
    }

    fn poll_write(&mut self) -> Option<TaggedPacket> {
        self.write_queue.pop_front()
    }

    fn handle_timeout(&mut self, _now: Instant) -> Result<(), Self::Error> {
        Ok(())
    }

    fn poll_timeout(&mut self) -> Option<Instant> {
        None
    }
}

impl Interceptor for FecReceiver {
    fn bind_remote_stream(&mut self, info: &StreamInfo) {
        if let (Some(repair), Some(_)) = (info.ssrc_fec, info.payload_type_fec) {
            let twcc = info
                .rtp_header_extensions
                .iter()
                .find(|e| e.uri == TWCC_URI)
                .and_then(|e| u8::try_from(e.id).ok());
            self.decoders.insert(
                info.ssrc,
                Decoding {
                    decoder: FlexFec03Decoder::new(repair, info.ssrc),
                    twcc,
                },
            );
            self.repair_to_media.insert(repair, info.ssrc);
        }
    }

    fn unbind_remote_stream(&mut self, info: &StreamInfo) {
        self.decoders.remove(&info.ssrc);
        self.repair_to_media.retain(|_, media| *media != info.ssrc);
    }

    fn bind_local_stream(&mut self, _info: &StreamInfo) {}

    fn unbind_local_stream(&mut self, _info: &StreamInfo) {}
}

#[cfg(test)]
#[path = "fec_tests.rs"]
mod tests;
