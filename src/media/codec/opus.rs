//! Opus 48 kHz mono, 20 ms frames, VOIP application (the `opus` crate's bundled libopus).
//!
//! With DTX a call sends next to nothing while its microphone hears silence: libopus
//! codes such a frame as a TOC byte alone; the first of a run is sent so the far end's
//! decoder knows, the rest are left out (the RTP timestamp moves on, the sequence does
//! not), and libopus refreshes the comfort noise with a real frame every 400 ms.

use ::opus::{Application, Bitrate, Channels, Decoder, Encoder};

use crate::media::error::MediaError;
use crate::media::frame::{AUDIO_FRAME_SAMPLES, AUDIO_RATE, AudioFrame};

/// Upper bound for one 20 ms packet (libopus' recommended buffer is 4000 bytes).
const MAX_PACKET: usize = 4000;
/// FEC is only coded when the encoder expects loss, and libopus keeps the SILK layer that
/// carries it only when the loss expected is high enough for the signal: at 5 % a tone
/// already goes to CELT (no FEC), at 10 % it stays hybrid.
const DEFAULT_LOSS_PERCENT: i32 = 10;
/// The expected loss is never set below the default, nor above this.
const MAX_LOSS_PERCENT: i32 = 50;
/// A packet this short carries no audio: a DTX frame (a TOC byte, perhaps a count).
pub const DTX_PACKET_MAX: usize = 2;
/// 120 ms, the longest frame an Opus packet can carry.
const MAX_FRAME_SAMPLES: usize = 5760;

pub struct OpusEncoder {
    encoder: Encoder,
    dtx: bool,
    /// The last frame was a DTX frame: the far end knows the sender went quiet.
    quiet: bool,
    loss_percent: i32,
}

impl OpusEncoder {
    pub fn new(bitrate_bps: u32) -> Result<Self, MediaError> {
        let mut encoder = Encoder::new(AUDIO_RATE, Channels::Mono, Application::Voip)?;
        encoder.set_bitrate(Bitrate::Bits(bitrate_bps as i32))?;
        // In-band FEC: each packet also carries a coarse copy of the one before, so one
        // lost packet is rebuilt from the next instead of guessed (`recover`).
        encoder.set_inband_fec(true)?;
        encoder.set_packet_loss_perc(DEFAULT_LOSS_PERCENT)?;
        Ok(Self {
            encoder,
            dtx: false,
            quiet: false,
            loss_percent: DEFAULT_LOSS_PERCENT,
        })
    }

    /// Discontinuous transmission: silence is left out (see the module's doc). A call
    /// turns it on; a recording keeps every frame.
    pub fn set_dtx(&mut self, on: bool) -> Result<(), MediaError> {
        self.encoder.set_dtx(on)?;
        self.dtx = on;
        Ok(())
    }

    /// The loss the encoder should expect, as measured (percent): more of the bitrate
    /// goes into the in-band copy of the previous frame. Never under the default, which
    /// keeps that copy at all.
    pub fn set_expected_loss(&mut self, percent: i32) -> Result<(), MediaError> {
        let p = percent.clamp(DEFAULT_LOSS_PERCENT, MAX_LOSS_PERCENT);
        if p != self.loss_percent {
            self.encoder.set_packet_loss_perc(p)?;
            self.loss_percent = p;
        }
        Ok(())
    }

    pub fn expected_loss(&self) -> i32 {
        self.loss_percent
    }

    pub fn set_bitrate(&mut self, bitrate_bps: u32) -> Result<(), MediaError> {
        self.encoder
            .set_bitrate(Bitrate::Bits(bitrate_bps as i32))?;
        Ok(())
    }

    /// Encodes exactly one 20 ms frame into one packet; with DTX an empty one is a frame
    /// left out (nothing to send, only time passes).
    pub fn encode(&mut self, frame: &AudioFrame) -> Result<Vec<u8>, MediaError> {
        if frame.samples.len() != AUDIO_FRAME_SAMPLES {
            return Err(MediaError::Invalid(format!(
                "Opus frame needs {AUDIO_FRAME_SAMPLES} samples, got {}",
                frame.samples.len()
            )));
        }
        let packet = self.encoder.encode_vec_float(&frame.samples, MAX_PACKET)?;
        let dtx_frame = self.dtx && packet.len() <= DTX_PACKET_MAX;
        let left_out = dtx_frame && self.quiet;
        self.quiet = dtx_frame;
        Ok(if left_out { Vec::new() } else { packet })
    }
}

pub struct OpusDecoder {
    decoder: Decoder,
    buf: Vec<f32>,
}

impl OpusDecoder {
    pub fn new() -> Result<Self, MediaError> {
        Ok(Self {
            decoder: Decoder::new(AUDIO_RATE, Channels::Mono)?,
            buf: vec![0.0; MAX_FRAME_SAMPLES],
        })
    }

    pub fn decode(&mut self, packet: &[u8]) -> Result<Vec<f32>, MediaError> {
        if packet.is_empty() {
            // libopus treats an empty packet as loss; make that explicit instead.
            return Err(MediaError::Invalid("empty Opus packet".into()));
        }
        let n = self.decoder.decode_float(packet, &mut self.buf, false)?;
        Ok(self.buf[..n].to_vec())
    }

    /// The 20 ms frame lost just before `next`, rebuilt from the FEC data `next` carries
    /// (concealment when it carries none).
    pub fn recover(&mut self, next: &[u8]) -> Result<Vec<f32>, MediaError> {
        let n = self
            .decoder
            .decode_float(next, &mut self.buf[..AUDIO_FRAME_SAMPLES], true)?;
        Ok(self.buf[..n].to_vec())
    }

    /// Packet-loss concealment for one missing 20 ms frame.
    pub fn conceal(&mut self) -> Result<Vec<f32>, MediaError> {
        let n = self
            .decoder
            .decode_float(&[], &mut self.buf[..AUDIO_FRAME_SAMPLES], false)?;
        Ok(self.buf[..n].to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::analysis::{dominant_frequency, level_dbfs};
    use crate::media::source::SyntheticAudio;

    fn tone_frames(hz: f32, count: u64) -> Vec<AudioFrame> {
        // Start 100 ms after a whole second so no marker click falls inside 0.8 s.
        let src = SyntheticAudio::new(hz);
        (0..count)
            .map(|n| src.frame_at(n, 1_795_000_000_100_000 + n * 20_000))
            .collect()
    }

    #[test]
    fn tone_survives_encode_decode() {
        let mut enc = OpusEncoder::new(32_000).unwrap();
        let mut dec = OpusDecoder::new().unwrap();
        let frames = tone_frames(440.0, 40);
        let mut out = Vec::new();
        for f in &frames {
            let pkt = enc.encode(f).unwrap();
            assert!(!pkt.is_empty() && pkt.len() < 400, "{} bytes", pkt.len());
            let pcm = dec.decode(&pkt).unwrap();
            assert_eq!(pcm.len(), AUDIO_FRAME_SAMPLES);
            out.extend(pcm);
        }
        let input: Vec<f32> = frames.iter().flat_map(|f| f.samples.clone()).collect();
        let steady = &out[9600..]; // skip the codec's start-up
        let f = dominant_frequency(steady, AUDIO_RATE);
        assert!((f - 440.0).abs() < 5.0, "dominant {f} Hz");
        let (lin, lout) = (level_dbfs(&input), level_dbfs(steady));
        assert!(
            (lin - lout).abs() < 2.0,
            "level in {lin:.1} dBFS, out {lout:.1} dBFS"
        );
    }

    #[test]
    fn conceal_fills_one_frame_and_decoding_resumes() {
        let mut enc = OpusEncoder::new(24_000).unwrap();
        let mut dec = OpusDecoder::new().unwrap();
        let frames = tone_frames(440.0, 10);
        for f in &frames[..5] {
            dec.decode(&enc.encode(f).unwrap()).unwrap();
        }
        let plc = dec.conceal().unwrap();
        assert_eq!(plc.len(), AUDIO_FRAME_SAMPLES);
        // Concealment continues the tone rather than emitting silence.
        assert!(level_dbfs(&plc) > -30.0, "{}", level_dbfs(&plc));
        let next = dec.decode(&enc.encode(&frames[6]).unwrap()).unwrap();
        assert_eq!(next.len(), AUDIO_FRAME_SAMPLES);
    }

    #[test]
    fn in_band_fec_rebuilds_a_lost_packet_closer_than_concealment() {
        // A tone that changes pitch in the lost frame: concealment can only continue the old
        // pitch; FEC carries the new one.
        let mut enc = OpusEncoder::new(32_000).unwrap();
        let low = tone_frames(300.0, 30);
        let high = tone_frames(1200.0, 30);
        let frames: Vec<&AudioFrame> = low[..20].iter().chain(high[..10].iter()).collect();
        let packets: Vec<Vec<u8>> = frames.iter().map(|f| enc.encode(f).unwrap()).collect();
        let lost = 20;
        let run = |fec: bool| {
            let mut dec = OpusDecoder::new().unwrap();
            for p in &packets[..lost] {
                dec.decode(p).unwrap();
            }
            if fec {
                dec.recover(&packets[lost + 1]).unwrap()
            } else {
                dec.conceal().unwrap()
            }
        };
        let (fec, plc) = (run(true), run(false));
        assert_eq!(fec.len(), AUDIO_FRAME_SAMPLES);
        let f = dominant_frequency(&fec, AUDIO_RATE);
        assert!((f - 1200.0).abs() < 60.0, "FEC frame at {f} Hz");
        let f = dominant_frequency(&plc, AUDIO_RATE);
        assert!((f - 1200.0).abs() > 200.0, "concealment guessed {f} Hz");
    }

    #[test]
    fn bitrate_is_settable_and_changes_packet_size() {
        let frames = tone_frames(440.0, 30);
        let mut enc = OpusEncoder::new(64_000).unwrap();
        let big: usize = frames[..15]
            .iter()
            .map(|f| enc.encode(f).unwrap().len())
            .sum();
        enc.set_bitrate(12_000).unwrap();
        let small: usize = frames[15..]
            .iter()
            .map(|f| enc.encode(f).unwrap().len())
            .sum();
        assert!(small * 2 < big, "{big} vs {small} bytes");
    }

    #[test]
    fn with_dtx_silence_costs_a_refresh_now_and_then_and_speech_after_it_decodes() {
        let mut enc = OpusEncoder::new(32_000).unwrap();
        enc.set_dtx(true).unwrap();
        let tone = tone_frames(440.0, 100);
        let silence = AudioFrame {
            samples: vec![0.0; AUDIO_FRAME_SAMPLES],
            capture_us: 0,
        };
        // 1 s of tone, 2 s of silence, 1 s of tone.
        let frames: Vec<&AudioFrame> = tone[..50]
            .iter()
            .chain(std::iter::repeat_n(&silence, 100))
            .chain(&tone[50..])
            .collect();
        let packets: Vec<Vec<u8>> = frames.iter().map(|f| enc.encode(f).unwrap()).collect();
        let audible = |p: &Vec<u8>| p.len() > DTX_PACKET_MAX;
        assert!(packets[..50].iter().all(audible), "speech left out");
        assert!(packets[150..].iter().all(audible), "speech left out");
        let quiet = &packets[50..150];
        let sent = quiet.iter().filter(|p| !p.is_empty()).count();
        assert!(sent <= 25, "{sent} of 100 silent frames sent");
        // Each run of DTX frames starts with one that is sent: the far end must know.
        let markers = quiet
            .iter()
            .filter(|p| (1..=DTX_PACKET_MAX).contains(&p.len()));
        assert!(markers.count() >= 2, "{quiet:?}");
        for w in quiet.windows(2) {
            let marker = |p: &Vec<u8>| (1..=DTX_PACKET_MAX).contains(&p.len());
            assert!(
                !(marker(&w[0]) && marker(&w[1])),
                "the far end was told twice"
            );
            assert!(!(audible(&w[0]) && w[1].is_empty()), "left out unannounced");
        }
        // What was sent decodes to the tone again once speech is back.
        let mut dec = OpusDecoder::new().unwrap();
        let mut out = Vec::new();
        for p in packets.iter().filter(|p| !p.is_empty()) {
            out.extend(dec.decode(p).unwrap());
        }
        let last = &out[out.len() - 24_000..];
        let f = dominant_frequency(last, AUDIO_RATE);
        assert!((f - 440.0).abs() < 5.0, "{f} Hz after the silence");
        assert!(level_dbfs(last) > -20.0, "{} dBFS", level_dbfs(last));
    }

    #[test]
    fn the_expected_loss_follows_the_measure_within_bounds() {
        let mut enc = OpusEncoder::new(32_000).unwrap();
        assert_eq!(enc.expected_loss(), DEFAULT_LOSS_PERCENT);
        enc.set_expected_loss(23).unwrap();
        assert_eq!(enc.expected_loss(), 23);
        enc.set_expected_loss(2).unwrap();
        assert_eq!(enc.expected_loss(), DEFAULT_LOSS_PERCENT, "FEC kept");
        enc.set_expected_loss(90).unwrap();
        assert_eq!(enc.expected_loss(), MAX_LOSS_PERCENT);
    }

    #[test]
    fn wrong_frame_size_and_empty_packets_are_errors() {
        let mut enc = OpusEncoder::new(32_000).unwrap();
        let short = AudioFrame {
            samples: vec![0.0; 480],
            capture_us: 0,
        };
        assert!(enc.encode(&short).is_err());
        assert!(OpusDecoder::new().unwrap().decode(&[]).is_err());
    }
}
