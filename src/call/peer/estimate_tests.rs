use super::super::probe::Cluster;
use super::super::probe::tests::report;
use super::*;

const MIN: f64 = 100_000.0;
const MAX: f64 = 2_500_000.0;
const BATCH: Duration = Duration::from_millis(100);

/// Feeds `seconds` of feedback batches of 50 packets losing `loss` of them (spread
/// evenly, so the test is exact) and returns the target after each second.
fn run(rate: &mut LossRate, t0: &mut Instant, seconds: u32, loss: f64) -> Vec<f64> {
    run_queued(rate, t0, seconds, loss, false)
}

fn run_queued(
    rate: &mut LossRate,
    t0: &mut Instant,
    seconds: u32,
    loss: f64,
    congested: bool,
) -> Vec<f64> {
    let mut out = Vec::new();
    let mut owed = 0.0;
    for i in 0..seconds * 10 {
        owed += 50.0 * loss;
        let lost = owed.floor();
        owed -= lost;
        *t0 += BATCH;
        rate.update(*t0, lost as usize, 50, congested, None);
        if (i + 1) % 10 == 0 {
            out.push(rate.target());
        }
    }
    out
}

#[test]
fn steady_random_loss_of_ten_percent_does_not_collapse_the_rate() {
    let mut t = Instant::now();
    let mut rate = LossRate::new(MAX, MIN, MAX);
    let targets = run(&mut rate, &mut t, 30, 0.10);
    let end = *targets.last().unwrap();
    assert!(end >= 0.9 * MAX, "after 30 s of 10 % loss: {targets:?}");
    assert!(
        targets.iter().all(|t| *t > 0.4 * MAX),
        "never near the floor: {targets:?}"
    );
}

#[test]
fn noisy_random_loss_does_not_wear_the_rate_down() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    let mut t = Instant::now();
    let mut rate = LossRate::new(MAX, MIN, MAX);
    let mut lowest = MAX;
    // 60 s of feedback every 50 ms on 25 packets, each lost with 10 % chance.
    for i in 0..1200 {
        t += Duration::from_millis(50);
        let lost = (0..25).filter(|_| rng.random::<f64>() < 0.10).count();
        rate.update(t, lost, 25, false, None);
        // After the first 5 s, while the baseline is being learnt.
        if i >= 100 {
            lowest = lowest.min(rate.target());
        }
    }
    assert!(
        rate.target() >= 0.9 * MAX,
        "after a minute: {}",
        rate.target()
    );
    assert!(lowest > 0.4 * MAX, "never near the floor: {lowest}");
}

#[test]
fn ten_percent_random_loss_from_a_low_start_on_a_thin_stream_does_not_hold_the_climb() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let mut t = Instant::now();
    let mut rate = LossRate::new(500_000.0, MIN, MAX);
    let mut at_s = Vec::new();
    // A call that starts at 500 kbit/s: a feedback every 100 ms on what was sent in it
    // (1100-byte packets at the target: 6 a report at first), each lost with 10 % chance;
    // what arrives is what was sent less the loss.
    for i in 0..200 {
        t += BATCH;
        let sent = (rate.target() * BATCH.as_secs_f64() / 8.0 / 1100.0)
            .round()
            .max(1.0) as usize;
        let lost = (0..sent).filter(|_| rng.random::<f64>() < 0.10).count();
        let delivered = rate.target() * (sent - lost) as f64 / sent as f64;
        rate.update(t, lost, sent, false, Some(delivered));
        if (i + 1) % 10 == 0 {
            at_s.push((rate.target() / 1000.0).round());
        }
    }
    // Chromium's loss half holds between 2 % and 10 % and keeps 720p at 10 % loss; a
    // noisy loss average on a few packets a report must not read as congestion.
    assert!(
        at_s[9] >= 0.8 * MAX / 1000.0,
        "not near the ceiling after 10 s: {at_s:?}"
    );
    assert!(
        at_s.iter().all(|k| *k >= 300.0),
        "cut under the start: {at_s:?}"
    );
}

#[test]
fn loss_that_rises_as_the_path_fills_cuts_the_rate() {
    let mut t = Instant::now();
    let mut rate = LossRate::new(MAX, MIN, MAX);
    run(&mut rate, &mut t, 10, 0.01);
    let before = rate.target();
    let during = run(&mut rate, &mut t, 2, 0.25);
    assert!(
        *during.last().unwrap() < 0.6 * before,
        "25 % loss on a clean path must cut: {before} -> {during:?}"
    );
}

#[test]
fn loss_above_what_any_path_always_has_keeps_cutting() {
    let mut t = Instant::now();
    let mut rate = LossRate::new(MAX, MIN, MAX);
    let targets = run(&mut rate, &mut t, 20, 0.40);
    assert_eq!(*targets.last().unwrap(), MIN, "{targets:?}");
}

#[test]
fn a_clean_path_raises_the_loss_half_to_the_ceiling() {
    let mut t = Instant::now();
    let mut rate = LossRate::new(500_000.0, MIN, MAX);
    let targets = run(&mut rate, &mut t, 10, 0.0);
    assert_eq!(*targets.last().unwrap(), MAX, "{targets:?}");
}

#[test]
fn the_climb_stops_under_the_bottleneck_packet_pairs_show() {
    // Pairs cross a 1 Mbit/s link steadily: climbing past it only fills its buffer
    // until it overflows.
    let mut t = Instant::now();
    let mut rate = LossRate::new(500_000.0, MIN, MAX);
    rate.set_bottleneck(Some(1_000_000.0));
    let targets = run(&mut rate, &mut t, 10, 0.0);
    let last = *targets.last().unwrap();
    assert!((850_000.0..=920_000.0).contains(&last), "{targets:?}");
    // Pairs that no longer agree (jitter, a link that widened) lift it.
    rate.set_bottleneck(None);
    let targets = run(&mut rate, &mut t, 10, 0.0);
    assert_eq!(*targets.last().unwrap(), MAX, "{targets:?}");
    // Above the bottleneck already (a link that just narrowed): loss and queues cut
    // it, not the pairs.
    let mut rate = LossRate::new(MAX, MIN, MAX);
    rate.set_bottleneck(Some(1_000_000.0));
    let targets = run(&mut rate, &mut t, 2, 0.0);
    assert_eq!(*targets.last().unwrap(), MAX, "{targets:?}");
}

#[test]
fn an_overflow_far_under_the_bottleneck_pairs_show_does_not_slow_the_climb() {
    // The call's first second overflows a 1 Mbit/s link, and 450 kbit/s arrived: the
    // loss half learns 450 kbit/s as where the path overflows, and creeps near it.
    let overflowed = |t: &mut Instant| {
        let mut rate = LossRate::new(MAX, MIN, MAX);
        *t += STEP;
        rate.update(*t, 40, 50, true, Some(450_000.0));
        run(&mut rate, t, 2, 0.0);
        rate
    };
    let mut t = Instant::now();
    // Pairs then agree on 1 Mbit/s: the climb goes there in seconds.
    let mut rate = overflowed(&mut t);
    rate.set_bottleneck(Some(1_000_000.0));
    let targets = run(&mut rate, &mut t, 6, 0.0);
    assert!(*targets.last().unwrap() >= 850_000.0, "{targets:?}");
    // Where they agree on a rate near the overflow's, it still creeps.
    let mut rate = overflowed(&mut t);
    rate.set_bottleneck(Some(600_000.0));
    let targets = run(&mut rate, &mut t, 6, 0.0);
    assert!(*targets.last().unwrap() < 520_000.0, "{targets:?}");
}

#[test]
fn loss_from_a_full_queue_is_congestion_and_is_not_learnt() {
    let mut t = Instant::now();
    let mut rate = LossRate::new(MAX, MIN, MAX);
    // The same 10 % that random loss may keep (see above), here with a full queue:
    // a narrow link dropping what overflows it.
    let targets = run_queued(&mut rate, &mut t, 10, 0.10, true);
    assert!(
        *targets.last().unwrap() < 0.3 * MAX,
        "tail drops must cut: {targets:?}"
    );
    // Once the queue drains and the loss stops, the rate climbs again.
    let after = run(&mut rate, &mut t, 15, 0.0);
    assert_eq!(*after.last().unwrap(), MAX, "{after:?}");
}

#[test]
fn an_outage_is_not_learnt_as_the_paths_loss() {
    let mut t = Instant::now();
    let mut rate = LossRate::new(MAX, MIN, MAX);
    run(&mut rate, &mut t, 5, 0.0);
    // 3 s with nothing arriving and no queue to see (no packet arrived to show one).
    run(&mut rate, &mut t, 3, 1.0);
    run(&mut rate, &mut t, 1, 0.0);
    assert!(rate.baseline() < 0.01, "learnt {}", rate.baseline());
}

#[test]
fn a_narrow_links_overflows_are_not_learnt_between_them() {
    let mut t = Instant::now();
    let mut rate = LossRate::new(500_000.0, MIN, MAX);
    // 30 % lost while the queue overflows, three batches of four; the fourth finds
    // the queue drained, its loss average still high.
    for i in 0..100 {
        t += BATCH;
        let congested = i % 4 != 3;
        rate.update(t, if congested { 15 } else { 0 }, 50, congested, None);
    }
    assert!(rate.baseline() < 0.01, "learnt {}", rate.baseline());
    // The same loss with no queue at all is the path's.
    let mut clean = LossRate::new(500_000.0, MIN, MAX);
    run(&mut clean, &mut t, 10, 0.05);
    assert!(clean.baseline() > 0.03, "{}", clean.baseline());
}

#[test]
fn a_link_that_narrows_at_once_is_cut_to_what_arrives_not_to_the_floor() {
    let mut t = Instant::now();
    let mut rate = LossRate::new(MAX, MIN, MAX);
    // 2.5 Mbit/s into 500 kbit/s: 80 % lost, 500 kbit/s arrives.
    for _ in 0..50 {
        t += BATCH;
        rate.update(t, 40, 50, true, Some(500_000.0));
    }
    let target = rate.target();
    assert!((400_000.0..=450_000.0).contains(&target), "{target}");
    // At once: the first cut goes to what arrives.
    let mut rate = LossRate::new(MAX, MIN, MAX);
    t += STEP;
    rate.update(t, 40, 50, true, Some(500_000.0));
    assert_eq!(rate.target(), 425_000.0);
}

#[test]
fn a_cut_on_a_report_that_read_the_link_low_is_taken_back_by_the_next_two() {
    let mut t = Instant::now();
    let mut rate = LossRate::new(MAX, MIN, MAX);
    // 2.5 Mbit/s into 500 kbit/s, both ways: the report the feedback survived to says
    // 180 kbit/s arrived, the ones after it what the link carries.
    t += STEP;
    rate.update(t, 26, 38, true, Some(180_000.0));
    assert_eq!(rate.target(), 153_000.0, "cut to what arrived");
    t += 3 * BATCH;
    rate.update(t, 26, 38, true, Some(540_000.0));
    assert_eq!(rate.target(), 153_000.0, "one report is not proof");
    t += 3 * BATCH;
    rate.update(t, 18, 27, false, Some(440_000.0));
    assert_eq!(rate.target(), 374_000.0, "the lower of the two, shared");
    // Loss still high, and what arrives falls with what is sent: no lift, no spiral.
    for delivered in [460_000.0, 400_000.0, 380_000.0] {
        t += 3 * BATCH;
        rate.update(t, 2, 10, false, Some(delivered));
        assert!(rate.target() >= 300_000.0, "{}", rate.target());
    }
}

#[test]
fn a_standing_queue_trims_the_rate_under_what_arrives() {
    let mut t = Instant::now() + BATCH;
    let mut rate = LossRate::new(1_200_000.0, MIN, MAX);
    rate.update(t, 0, 50, true, None);
    assert_eq!(
        rate.target(),
        1_200_000.0,
        "held: nothing says how much arrives"
    );
    t += STEP;
    rate.update(t, 0, 50, true, Some(1_000_000.0));
    assert_eq!(rate.target(), 900_000.0);
}

#[test]
fn a_lasting_queue_trims_once_a_second_not_into_the_floor() {
    let mut t = Instant::now();
    let mut rate = LossRate::new(1_000_000.0, MIN, MAX);
    // The queue reads "full" for 2 s while what arrives follows what we send.
    for _ in 0..20 {
        t += BATCH;
        let sent = rate.target();
        rate.update(t, 0, 50, true, Some(sent));
    }
    let target = rate.target();
    assert!(target >= 0.9 * 0.9 * 1_000_000.0 - 1.0, "{target}");
}

/// A sender at the target into a `link_bps` link with a 50 ms buffer, fed back every
/// 100 ms: the buffer's fill says "congested" past 25 ms and overflow is lost.
/// Returns the batches that lost packets.
fn narrow_link(rate: &mut LossRate, t: &mut Instant, seconds: u32, link_bps: f64) -> u32 {
    let (dt, buffer) = (BATCH.as_secs_f64(), link_bps * 0.05);
    let (mut queued, mut losing) = (0.0_f64, 0);
    for _ in 0..seconds * 10 {
        *t += BATCH;
        let sent = rate.target() * dt;
        queued += sent - link_bps * dt;
        let overflow = (queued - buffer).max(0.0);
        queued = queued.clamp(0.0, buffer);
        let lost = (50.0 * overflow / sent).round() as usize;
        losing += u32::from(lost > 0);
        let delivered = (sent - overflow) / dt;
        rate.update(*t, lost, 50, queued > buffer / 2.0, Some(delivered));
    }
    losing
}

#[test]
fn on_a_narrow_link_a_standing_queue_backs_off_before_the_buffer_overflows() {
    let mut t = Instant::now();
    let mut rate = LossRate::new(MAX, MIN, MAX);
    // Settling: from 2.5 Mbit/s into the link, and one climb back to its edge (the
    // first overflow's loss is not learnt as the path's, so it is felt once more).
    narrow_link(&mut rate, &mut t, 10, 1_000_000.0);
    let losing = narrow_link(&mut rate, &mut t, 30, 1_000_000.0);
    assert_eq!(losing, 0, "batches with loss in 30 s once settled");
    assert!(rate.target() > 700_000.0, "{}", rate.target());
}

#[test]
fn packets_no_feedback_can_name_are_not_lost_packets() {
    let mut t = Instant::now();
    let mut est = Estimator::new(1_000_000.0, MIN, MAX);
    for i in 0..50u64 {
        t += BATCH;
        let sent = Duration::from_millis(100 * i);
        let mut batch = reports(t, 10, sent, Duration::from_millis(20), |_| Duration::ZERO);
        // As many audio packets without a transport-wide number, never "arrived".
        batch.extend(batch.clone().into_iter().map(|mut r| {
            (r.is_twcc, r.arrived, r.arrival, r.size) = (false, false, None, 100);
            r
        }));
        est.on_reports(t, &batch);
    }
    assert!(
        est.target_bitrate() >= 1_000_000.0,
        "half the packets read as lost: {}",
        est.target_bitrate()
    );
}

/// A report of packets sent every 5 ms from `t0`, each taking `base + extra(i)` to
/// arrive on a receiver clock that reads `offset` ahead of ours.
fn reports(
    t0: Instant,
    n: usize,
    offset: Duration,
    base: Duration,
    extra: impl Fn(usize) -> Duration,
) -> Vec<PacketReport> {
    (0..n)
        .map(|i| {
            let sent = Duration::from_millis(5 * i as u64);
            let arrival = Some(offset + sent + base + extra(i));
            report(i as u64, (1, i as u16), 1200, t0 + sent, arrival)
        })
        .collect()
}

#[test]
fn queueing_delay_is_the_delay_above_the_least_whatever_the_clocks_say() {
    let t0 = Instant::now();
    let offset = Duration::from_secs(1234);
    let base = Duration::from_millis(20);
    let mut q = QueueDelay::default();
    let idle = reports(t0, 20, offset, base, |_| Duration::ZERO);
    assert_eq!(q.update(t0, &idle), Some(Duration::ZERO));
    // Jitter: half the packets 40 ms late, the others not. No queue.
    let t1 = t0 + Duration::from_millis(100);
    let off1 = offset + Duration::from_millis(100);
    let jittery = reports(t1, 20, off1, base, |i| {
        Duration::from_millis(40 * (i % 2) as u64)
    });
    assert_eq!(q.update(t1, &jittery), Some(Duration::ZERO));
    // A standing queue: every packet 40 ms late, some later still.
    let full = reports(t1, 20, off1, base, |i| {
        Duration::from_millis(if i < 15 { 40 } else { 60 })
    });
    let queued = q.update(t1, &full).unwrap();
    assert!(
        queued.abs_diff(Duration::from_millis(40)) < Duration::from_micros(10),
        "{queued:?}"
    );
    // Nothing arrived: no measure.
    let mut lost = full.clone();
    lost.iter_mut()
        .for_each(|r| (r.arrived, r.arrival) = (false, None));
    assert_eq!(q.update(t1, &lost), None);
}

/// An exact simulation of a sender at 85 % of the estimate (an encoder's undershoot and
/// the repair share): 1000-byte packets spread over each
/// 100 ms batch, a probe's packets (made as the FEC sender would, on request) at the
/// probe's rate at the batch's start, through a link of `link_bps(second)` behind a 50 ms
/// buffer, fed back 20 ms after each batch. Returns the estimate after each second and
/// the batches that lost packets.
fn through_link(
    est: &mut Estimator,
    probing: &Probing,
    t: &mut Instant,
    seconds: u32,
    link_bps: impl Fn(u32) -> f64,
) -> (Vec<f64>, u32) {
    const SIZE: usize = 1000;
    const BUFFER: Duration = Duration::from_millis(50);
    let bits = (SIZE * 8) as f64;
    let origin = *t;
    let (mut free_at, mut out, mut losing, mut id) = (*t, Vec::new(), 0, 0_u64);
    for i in 0..seconds * 10 {
        let link = Duration::from_secs_f64(bits / link_bps(i / 10));
        let start = *t;
        let mut sends: Vec<(Instant, u32, u16)> = Vec::new();
        if let Some(request) = probing.take() {
            let gap = Duration::from_secs_f64(bits / request.rate_bps);
            let seqs: Vec<u16> = (0..request.packets as u16).collect();
            sends.extend(seqs.iter().map(|&s| (start + gap * u32::from(s), 99, s)));
            probing.sent(Cluster {
                id: request.id,
                rate_bps: request.rate_bps,
                ssrc: 99,
                seqs,
            });
        }
        let media = (0.85 * est.target_bitrate() * BATCH.as_secs_f64() / bits).round() as u32;
        let gap = BATCH / media.max(1);
        sends.extend((0..media).map(|k| (start + gap * k, 1, k as u16)));
        sends.sort_by_key(|s| s.0);
        let mut lost_any = false;
        let reports: Vec<PacketReport> = sends
            .into_iter()
            .map(|(departure, ssrc, seq)| {
                let arrived = free_at.saturating_duration_since(departure) <= BUFFER;
                let arrival = arrived.then(|| {
                    free_at = free_at.max(departure) + link;
                    free_at.saturating_duration_since(origin)
                });
                lost_any |= !arrived;
                id += 1;
                report(id, (ssrc, seq), SIZE, departure, arrival)
            })
            .collect();
        losing += u32::from(lost_any);
        *t += BATCH;
        est.on_reports(*t + Duration::from_millis(20), &reports);
        if (i + 1) % 10 == 0 {
            out.push(est.target_bitrate());
        }
    }
    (out, losing)
}

/// An estimator that probes, as towards a peer that took FEC.
fn probing_estimator() -> (Estimator, Arc<Probing>) {
    let repair = Arc::new(Repair::default());
    repair.protect(true);
    let probing = Arc::new(Probing::default());
    let est = Estimator::new(MAX, MIN, MAX)
        .reporting_loss_to(repair)
        .probing_with(Arc::clone(&probing));
    (est, probing)
}

#[test]
fn after_a_narrow_spell_a_probe_finds_the_widened_link_within_seconds() {
    let narrow_then_wide = |s: u32| if s < 10 { 500_000.0 } else { 20_000_000.0 };
    let mut t = Instant::now();
    let (mut est, probing) = probing_estimator();
    let (probed, _) = through_link(&mut est, &probing, &mut t, 14, narrow_then_wide);
    // The sender fills 85 % of the estimate (as encoders undershoot): it sits near the link.
    assert!(probed[9] < 700_000.0, "narrow: {probed:?}");
    // 720p's rung (1.24 Mbit/s of media) within 4 s of the link widening.
    assert!(probed[13] > 1_500_000.0, "{probed:?}");
    // Without probes the climb is still on its way.
    let mut t = Instant::now();
    let mut creeping = Estimator::new(MAX, MIN, MAX);
    let (crept, _) = through_link(
        &mut creeping,
        &Probing::default(),
        &mut t,
        14,
        narrow_then_wide,
    );
    assert!(crept[13] < 1_500_000.0, "without probes: {crept:?}");
}

#[test]
fn on_a_steady_narrow_link_probes_cost_few_overflows() {
    let mut t = Instant::now();
    let (mut est, probing) = probing_estimator();
    through_link(&mut est, &probing, &mut t, 10, |_| 1_000_000.0);
    let (_, probed) = through_link(&mut est, &probing, &mut t, 30, |_| 1_000_000.0);
    let mut t = Instant::now();
    let mut plain = Estimator::new(MAX, MIN, MAX);
    let quiet = Probing::default();
    through_link(&mut plain, &quiet, &mut t, 10, |_| 1_000_000.0);
    let (_, unprobed) = through_link(&mut plain, &quiet, &mut t, 30, |_| 1_000_000.0);
    assert!(
        probed <= unprobed + 3,
        "{probed} batches lost packets, {unprobed} without probes"
    );
}
