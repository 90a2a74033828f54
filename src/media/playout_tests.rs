//! Specs of the audio playout, on a clock the test drives: packets of 20 ms arrive when
//! the simulated link delivers them, blocks of 10 ms are played every 10 ms.

use super::*;
use crate::media::dominant_frequency;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const PACKET: usize = 2 * BLOCK;

/// A tone's next `n` samples from sample `at`.
fn tone(hz: f32, at: usize, n: usize) -> Vec<f32> {
    (at..at + n)
        .map(|i| 0.5 * (std::f32::consts::TAU * hz * i as f32 / RATE as f32).sin())
        .collect()
}

/// Plays 20 ms packets of a 200 Hz tone arriving at `arrivals_us` (in order), a block
/// every 10 ms from the first arrival to the last; returns everything played.
fn run(p: &mut Playout, arrivals_us: &[u64]) -> Vec<f32> {
    let mut played = Vec::new();
    let mut clock = arrivals_us[0];
    let end = *arrivals_us.last().unwrap();
    let mut next = 0;
    while clock < end {
        while next < arrivals_us.len() && arrivals_us[next] <= clock {
            p.push(&tone(200.0, next * PACKET, PACKET), arrivals_us[next]);
            next += 1;
        }
        let mut block = vec![0.0; BLOCK];
        p.mix_into(&mut block);
        played.extend(block);
        clock += 10_000;
    }
    played
}

/// Arrival times of `n` packets sent every 20 ms through a link adding `delay_us(i)`,
/// delivered in order (a reordered packet waits for the one before it).
fn arrivals(n: usize, mut delay_us: impl FnMut(usize) -> u64) -> Vec<u64> {
    let mut last = 0;
    (0..n)
        .map(|i| {
            last = (i as u64 * 20_000 + delay_us(i)).max(last);
            last
        })
        .collect()
}

/// The largest step between neighbouring samples: a click shows as one far above the
/// tone's own (0.5 * 2π * 200 / 48000 ≈ 0.013).
fn largest_step(x: &[f32]) -> f32 {
    x.windows(2)
        .map(|w| (w[1] - w[0]).abs())
        .fold(0.0, f32::max)
}

#[test]
fn playback_waits_for_the_start_depth_then_plays_and_conceals_an_underrun() {
    let mut p = Playout::default();
    let mut mix = vec![0.0; BLOCK];
    p.push(&tone(200.0, 0, MIN_START - 1), 0);
    p.mix_into(&mut mix);
    assert!(
        mix.iter().all(|s| *s == 0.0),
        "must not start below the start depth"
    );
    p.push(&tone(200.0, MIN_START - 1, 1), 0);
    p.mix_into(&mut mix);
    assert!(mix.iter().any(|s| *s != 0.0));
    assert!(p.level() > 0.3);
    while p.queue.len() >= BLOCK {
        p.mix_into(&mut vec![0.0; BLOCK]);
    }
    let mut last = vec![0.0; BLOCK];
    p.mix_into(&mut last);
    assert_eq!(p.stats().underruns, 1);
    assert!(!p.playing);
    // The rest of the block continues the tone instead of going silent.
    assert!(last[BLOCK - 40..].iter().any(|s| s.abs() > 0.1));
    assert!(p.stats().concealed_samples > 0);
}

#[test]
fn on_a_steady_stream_nothing_is_stretched_cut_or_concealed() {
    let mut p = Playout::default();
    run(&mut p, &arrivals(500, |_| 30_000));
    let s = p.stats();
    assert_eq!(
        (s.underruns, s.cut_samples, s.removed_for_acceleration),
        (0, 0, 0),
        "{s:?}"
    );
    assert_eq!(s.start_depth as usize, MIN_START);
    assert!(s.mean_delay_ms() <= 40.0, "{} ms", s.mean_delay_ms());
}

#[test]
fn a_burst_is_given_back_by_removing_periods_without_a_gap_or_a_click() {
    let mut p = Playout::default();
    // The first 8 packets (160 ms) arrive at once after a stall, then the stream is steady.
    let played = run(
        &mut p,
        &arrivals(300, |i| {
            if i < 8 {
                160_000 - i as u64 * 20_000
            } else {
                0
            }
        }),
    );
    let s = p.stats();
    assert_eq!((s.underruns, s.cut_samples), (0, 0), "{s:?}");
    assert!(s.removed_for_acceleration > ms(60) as u64, "{s:?}");
    assert!(
        p.queue.len() <= MARGIN + SLACK + PACKET,
        "{} ms still buffered",
        p.queue.len() * 1000 / RATE
    );
    // Still the same tone, and joined where the periods were removed.
    let f = dominant_frequency(&played[RATE..3 * RATE], AUDIO_RATE);
    assert!((f - 200.0).abs() < 5.0, "{f} Hz");
    assert!(
        largest_step(&played[ms(200)..]) < 0.03,
        "{}",
        largest_step(&played)
    );
}

#[test]
fn jittered_arrivals_raise_the_start_depth_until_nothing_runs_dry() {
    let mut rng = StdRng::seed_from_u64(7);
    let mut p = Playout::default();
    // 50 ms +- 20 ms: 40 s of it.
    let at = arrivals(2000, |_| rng.random_range(30_000..=70_000));
    let cut_at = at[500];
    // The first 10 s: it learns. Then no gaps at all.
    run(&mut p, &at[..500]);
    let learnt = p.stats();
    assert!(
        learnt.start_depth as usize >= ms(45),
        "start depth {} ms",
        learnt.start_depth as usize * 1000 / RATE
    );
    let mut rest: Vec<u64> = at[500..].to_vec();
    rest.insert(0, cut_at);
    run(&mut p, &rest);
    let s = p.stats();
    assert_eq!(
        s.underruns, learnt.underruns,
        "ran dry after learning: {s:?}"
    );
    assert!(s.mean_delay_ms() < 90.0, "{} ms", s.mean_delay_ms());
}

#[test]
fn a_sender_whose_clock_runs_slow_is_stretched_before_the_buffer_runs_dry() {
    let mut p = Playout::default();
    // 2 % fewer samples than the playout plays: 20.4 ms between 20 ms packets.
    let at: Vec<u64> = (0..1500).map(|i| i as u64 * 20_400).collect();
    let played = run(&mut p, &at);
    let s = p.stats();
    assert_eq!(s.underruns, 0, "{s:?}");
    assert!(s.inserted_for_deceleration > ms(500) as u64, "{s:?}");
    let f = dominant_frequency(&played[RATE..5 * RATE], AUDIO_RATE);
    assert!((f - 200.0).abs() < 5.0, "{f} Hz");
    assert!(largest_step(&played[ms(100)..at.len() * PACKET]) < 0.03);
}

#[test]
fn a_gap_is_concealed_with_the_tone_fading_and_audio_resumes_without_a_click() {
    let mut p = Playout::default();
    // 1 s steady, then nothing for 60 ms, then steady again (later by those 60 ms).
    let at = arrivals(100, |i| if i < 50 { 0 } else { 60_000 });
    let played = run(&mut p, &at);
    let s = p.stats();
    assert_eq!(s.underruns, 1, "{s:?}");
    assert!(s.concealed_samples >= ms(20) as u64, "{s:?}");
    // Playing began 20 ms in (two blocks of silence until 30 ms were buffered), so the
    // tone ran dry there; the next 30 ms are made up.
    let dry = 50 * PACKET + 2 * BLOCK;
    let made_up = &played[dry..dry + ms(30)];
    let f = dominant_frequency(made_up, AUDIO_RATE);
    assert!((f - 200.0).abs() < 20.0, "concealed as {f} Hz");
    assert!(made_up.iter().any(|s| s.abs() > 0.2), "not silence");
    assert!(
        largest_step(&played[ms(100)..]) < 0.03,
        "{}",
        largest_step(&played)
    );
}

#[test]
fn far_too_much_buffered_is_cut_back_to_the_start_depth() {
    let mut p = Playout::default();
    p.push(&vec![0.1; MAX + 10], 0);
    assert_eq!(p.queue.len(), MIN_START);
    assert_eq!(p.stats().cut_samples as usize, MAX + 10 - MIN_START);
}

#[test]
fn a_pause_forgets_the_jitter_learnt_before_it() {
    let mut p = Playout::default();
    let mut rng = StdRng::seed_from_u64(3);
    for i in 0..100u64 {
        p.push(&[0.0; PACKET], i * 20_000 + rng.random_range(0..60_000));
    }
    assert!(p.start_depth() > ms(50));
    // Muted for a second: steady arrivals afterwards start from the minimum again.
    for i in 0..10u64 {
        p.push(&[0.0; PACKET], 3_000_000 + i * 20_000);
    }
    assert_eq!(p.start_depth(), MIN_START);
}

/// Which of a DTX sender's 20 ms frames went out: 1 s of a 200 Hz tone, a pause with a
/// comfort noise refresh every 400 ms (each followed by a DTX frame), 1 s of tone again.
/// (frame index, samples, quiet), in order.
fn talk_pause_talk() -> Vec<(usize, Vec<f32>, bool)> {
    let noise = |f: usize| {
        tone(200.0, f * PACKET, PACKET)
            .iter()
            .map(|s| s * 0.01)
            .collect()
    };
    let mut sent: Vec<_> = (0..50)
        .map(|f| (f, tone(200.0, f * PACKET, PACKET), false))
        .collect();
    sent.push((50, noise(50), true));
    for refresh in [70, 90] {
        sent.push((refresh, noise(refresh), false));
        sent.push((refresh + 1, noise(refresh + 1), true));
    }
    sent.extend((100..150).map(|f| (f, tone(200.0, f * PACKET, PACKET), false)));
    sent
}

/// Plays `sent` arriving `delay_us(frame)` after it was due, with what the decoder
/// tells of each; a block every 10 ms from the first arrival to the last. Returns what
/// was played and the first arrival.
fn play_sent(
    p: &mut Playout,
    sent: &[(usize, Vec<f32>, bool)],
    mut delay_us: impl FnMut(usize) -> u64,
) -> (Vec<f32>, u64) {
    let mut arrivals = Vec::new();
    let mut before: Option<usize> = None;
    let mut last = 0;
    for (f, pcm, quiet) in sent {
        let at_us = (*f as u64 * 20_000 + delay_us(*f)).max(last);
        last = at_us;
        let left_out = before.map_or(0, |b| (f - b - 1) * PACKET);
        before = Some(*f);
        let arrival = Arrival {
            at_us,
            left_out,
            quiet: *quiet,
        };
        arrivals.push((arrival, pcm));
    }
    let start = arrivals[0].0.at_us;
    let mut clock = start;
    let mut played = Vec::new();
    let mut next = 0;
    while clock < last {
        while next < arrivals.len() && arrivals[next].0.at_us <= clock {
            p.receive(arrivals[next].1, arrivals[next].0);
            next += 1;
        }
        let mut block = vec![0.0; BLOCK];
        p.mix_into(&mut block);
        played.extend(block);
        clock += 10_000;
    }
    (played, start)
}

#[test]
fn a_sender_gone_quiet_is_a_pause_not_an_underrun_and_its_speech_plays_at_once() {
    let mut p = Playout::default();
    let (played, start) = play_sent(&mut p, &talk_pause_talk(), |_| 30_000);
    let s = p.stats();
    assert_eq!(
        (s.underruns, s.concealed_samples, s.silent_samples),
        (0, 0, 0),
        "{s:?}"
    );
    assert!(s.paused_samples >= ms(800) as u64, "{s:?}");
    // Speech is back when frame 100 arrives: played within the start depth and a block.
    let back_us = 100 * 20_000 + 30_000 - start;
    let from = back_us as usize * RATE / 1_000_000;
    let heard = from + played[from..].iter().position(|s| s.abs() > 0.2).unwrap();
    assert!(
        heard - from <= MIN_START + BLOCK,
        "speech {} ms after it arrived",
        (heard - from) * 1000 / RATE
    );
    let f = dominant_frequency(&played[heard..heard + RATE / 2], AUDIO_RATE);
    assert!((f - 200.0).abs() < 5.0, "{f} Hz");
    // The pause lowers no delay figure: it is not buffered time.
    // (Counting the pause would make it about 14 ms.)
    assert!(s.mean_delay_ms() >= 20.0, "{} ms", s.mean_delay_ms());
}

#[test]
fn the_jitter_learnt_before_a_sender_went_quiet_is_kept_after_it() {
    let mut rng = StdRng::seed_from_u64(11);
    let mut p = Playout::default();
    let mut sent: Vec<_> = (0..500)
        .map(|f| (f, tone(200.0, f * PACKET, PACKET), f == 499))
        .collect();
    // A second of silence (the DTX frame above, nothing else), then speech.
    sent.extend((550..600).map(|f| (f, tone(200.0, f * PACKET, PACKET), false)));
    play_sent(&mut p, &sent[..500], |_| rng.random_range(30_000..=70_000));
    let learnt = p.start_depth();
    assert!(learnt >= ms(45), "{} ms", learnt * 1000 / RATE);
    let mut p2 = Playout::default();
    let mut rng = StdRng::seed_from_u64(11);
    play_sent(&mut p2, &sent, |_| rng.random_range(30_000..=70_000));
    assert!(
        p2.start_depth() + ms(5) >= learnt,
        "{} ms after the pause, {} before",
        p2.start_depth() * 1000 / RATE,
        learnt * 1000 / RATE
    );
    assert_eq!(
        p2.stats().underruns,
        p.stats().underruns,
        "{:?}",
        p2.stats()
    );
}

#[test]
fn through_a_pause_the_listener_hears_the_senders_background_go_on() {
    // A rumble under everything; the voice stops 200 ms before the sender goes quiet,
    // as an encoder's voice detection waits before DTX.
    let mut rng = StdRng::seed_from_u64(5);
    let mut y = 0.0f32;
    let background: Vec<f32> = (0..150 * PACKET)
        .map(|_| {
            y = 0.9 * y + 0.1 * rng.random_range(-1.0f32..1.0);
            y * 0.01
        })
        .collect();
    let frame = |f: usize, voice: bool| -> Vec<f32> {
        let bg = &background[f * PACKET..(f + 1) * PACKET];
        match voice {
            true => tone(200.0, f * PACKET, PACKET)
                .iter()
                .zip(bg)
                .map(|(t, b)| t + b)
                .collect(),
            false => bg.to_vec(),
        }
    };
    let mut sent: Vec<_> = (0..50).map(|f| (f, frame(f, f < 40), f == 49)).collect();
    sent.extend((100..150).map(|f| (f, frame(f, true), false)));
    let mut p = Playout::default();
    let (played, start) = play_sent(&mut p, &sent, |_| 30_000);
    let rms = |x: &[f32]| (x.iter().map(|s| s * s).sum::<f32>() / x.len() as f32).sqrt();
    // The middle of the pause: well after the last frame played, before speech is back.
    let at = |us: u64| (us - start) as usize * RATE / 1_000_000;
    let pause = &played[at(1_300_000)..at(1_900_000)];
    let level_db = 20.0 * (rms(pause) / rms(&background)).log10();
    assert!(
        level_db.abs() < 3.0,
        "the pause {level_db:.1} dB from the background"
    );
    assert_eq!(p.stats().underruns, 0, "{:?}", p.stats());
    assert!(
        p.stats().paused_samples >= ms(900) as u64,
        "{:?}",
        p.stats()
    );
}
