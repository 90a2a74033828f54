use super::*;

const MAX: f64 = 5_000_000.0;

/// A transport-wide feedback's report on packet `id` of `size` bytes (lost without an
/// arrival), for the estimator's and the probe's specs.
pub(in crate::call::peer) fn report(
    id: u64,
    (ssrc, seq): (u32, u16),
    size: usize,
    departure: Instant,
    arrival: Option<Duration>,
) -> PacketReport {
    PacketReport {
        ssrc,
        id,
        rtp_sequence_number: seq,
        is_twcc: true,
        twcc_sequence_number: id as u16,
        size,
        arrived: arrival.is_some(),
        departure,
        arrival,
        ecn: Default::default(),
    }
}

fn moment(now: Instant, target: f64) -> Moment {
    Moment {
        now,
        target,
        max: MAX,
        held: false,
        trouble_at: None,
        pair_bps: None,
        steady_pair_bps: None,
    }
}

/// A planner that has seen the path since `t0 - QUIET_FOR`.
fn seen_since(t0: Instant) -> Planner {
    let mut p = Planner::default();
    assert_eq!(p.due(moment(t0 - QUIET_FOR, 500_000.0)), None, "too soon");
    p
}

#[test]
fn a_calls_first_probe_goes_a_fifth_of_a_second_after_the_first_feedback() {
    let t0 = Instant::now();
    let mut p = Planner::default();
    assert_eq!(p.due(moment(t0, 500_000.0)), None, "the first feedback");
    let soon = t0 + FIRST_LOOK - Duration::from_millis(1);
    assert_eq!(p.due(moment(soon, 500_000.0)), None);
    let r = p.due(moment(t0 + FIRST_LOOK, 500_000.0)).unwrap();
    assert_eq!(r.rate_bps, 1_000_000.0);
    // Not where the path has just queued or lost.
    let mut p = Planner::default();
    let troubled = Moment {
        trouble_at: Some(t0),
        ..moment(t0, 500_000.0)
    };
    assert_eq!(p.due(troubled), None);
    assert_eq!(
        p.due(Moment {
            now: t0 + FIRST_LOOK,
            ..troubled
        }),
        None
    );
}

#[test]
fn an_estimate_under_the_most_on_a_quiet_path_probes_at_twice_its_rate() {
    let now = Instant::now();
    let mut p = seen_since(now);
    let r = p.due(moment(now, 500_000.0)).unwrap();
    assert_eq!(r.rate_bps, 1_000_000.0);
    // 30 ms at 1 Mbit/s is under 4 kB: five packets, the least.
    assert_eq!(r.packets, 5);
    let r = {
        let mut p = seen_since(now);
        p.due(moment(now, 2_000_000.0)).unwrap()
    };
    assert_eq!((r.rate_bps, r.packets), (4_000_000.0, 14));
}

#[test]
fn near_a_known_capacity_only_pairs_that_cross_far_faster_bring_a_probe() {
    let now = Instant::now();
    let mut p = seen_since(now);
    let held = Moment {
        held: true,
        ..moment(now, 1_000_000.0)
    };
    assert_eq!(p.due(held), None);
    let at_the_link = Moment {
        pair_bps: Some(1_100_000.0),
        ..held
    };
    assert_eq!(p.due(at_the_link), None);
    let widened = Moment {
        pair_bps: Some(3_000_000.0),
        ..held
    };
    assert_eq!(p.due(widened).unwrap().rate_bps, 2_000_000.0);
}

#[test]
fn pairs_crossing_at_about_the_estimate_keep_any_probe_back() {
    let now = Instant::now();
    let mut p = seen_since(now);
    // No overflow learnt yet, but pairs show a 1.1 Mbit/s bottleneck.
    let at_the_link = Moment {
        pair_bps: Some(1_100_000.0),
        steady_pair_bps: Some(1_100_000.0),
        ..moment(now, 1_000_000.0)
    };
    assert_eq!(p.due(at_the_link), None);
    let jittery = Moment {
        steady_pair_bps: None,
        ..at_the_link
    };
    assert!(
        seen_since(now).due(jittery).is_some(),
        "pairs that disagree say nothing"
    );
    let room = Moment {
        pair_bps: Some(1_500_000.0),
        steady_pair_bps: Some(1_500_000.0),
        ..at_the_link
    };
    assert_eq!(p.due(room).unwrap().rate_bps, 2_000_000.0);
}

#[test]
fn no_probe_while_the_path_queues_or_loses_nor_at_the_most_the_estimate_may_be() {
    let now = Instant::now();
    let mut p = seen_since(now);
    let troubled = Moment {
        trouble_at: Some(now - Duration::from_millis(500)),
        ..moment(now, 500_000.0)
    };
    assert_eq!(p.due(troubled), None);
    assert_eq!(p.due(moment(now, MAX * 0.96)), None);
    let settled = Moment {
        trouble_at: Some(now - QUIET_FOR),
        ..moment(now, 500_000.0)
    };
    assert!(p.due(settled).is_some());
}

#[test]
fn one_probe_at_a_time_and_a_probe_without_a_result_fails_in_time() {
    let t0 = Instant::now();
    let mut p = seen_since(t0);
    let first = p.due(moment(t0, 500_000.0)).unwrap();
    assert_eq!(
        p.due(moment(t0 + Duration::from_millis(900), 500_000.0)),
        None
    );
    // Timed out: a failure, so the next waits FIRST_WAIT after it.
    let timed_out = t0 + RESULT_TIMEOUT;
    assert_eq!(p.due(moment(timed_out, 500_000.0)), None);
    let next = p.due(moment(timed_out + FIRST_WAIT, 500_000.0)).unwrap();
    assert_ne!(next.id, first.id);
}

#[test]
fn probes_that_find_no_room_back_off_doubling_to_a_limit() {
    let mut t = Instant::now();
    let mut p = seen_since(t);
    let mut gaps = Vec::new();
    let mut last = None;
    while gaps.len() < 6 {
        if let Some(r) = p.due(moment(t, 500_000.0)) {
            if let Some(l) = last {
                gaps.push(t.saturating_duration_since(l).as_secs());
            }
            last = Some(t);
            // The path delivers a little more than the estimate: an estimate settled
            // under a narrow link's rate, no room.
            assert_eq!(p.result(t, r.id, Some(600_000.0), 500_000.0), None);
        }
        t += Duration::from_millis(100);
    }
    assert_eq!(gaps, [1, 2, 4, 8, 10, 10]);
}

#[test]
fn a_probe_that_finds_room_raises_the_estimate_and_probes_on_from_there() {
    let t0 = Instant::now();
    let mut p = seen_since(t0);
    let r = p.due(moment(t0, 500_000.0)).unwrap();
    // All it asked for arrived: the estimate goes to 90 % of it, and the path's capacity
    // is still unknown.
    let found = p.result(t0, r.id, Some(1_000_000.0), 500_000.0).unwrap();
    assert_eq!((found.estimate, found.full), (900_000.0, false));
    let raised = found.estimate;
    // It delivered all it asked for: probing goes on, soon.
    let soon = t0 + CHAIN_WAIT;
    let next = p.due(moment(soon, raised)).unwrap();
    assert_eq!(next.rate_bps, 1_800_000.0);
    // Part of it arrived: raised to that, which is what the path carries, and the next
    // probe waits longer.
    let found = p
        .result(soon, next.id, Some(1_400_000.0), 900_000.0)
        .unwrap();
    assert_eq!((found.estimate, found.full), (1_260_000.0, true));
    let raised = found.estimate;
    assert_eq!(p.due(moment(soon + CHAIN_WAIT, raised)), None);
    assert!(p.due(moment(soon + FIRST_WAIT, raised)).is_some());
}

#[test]
fn a_result_for_another_probe_changes_nothing() {
    let t0 = Instant::now();
    let mut p = seen_since(t0);
    let r = p.due(moment(t0, 500_000.0)).unwrap();
    assert_eq!(p.result(t0, r.id + 1, Some(1_000_000.0), 500_000.0), None);
    assert_eq!(p.out(), Some(r.id));
}

const PROBE_SSRC: u32 = 7;

/// Packets of 1000 bytes leaving at `send_bps` (every third a probe packet) through a
/// link of `link_bps` with a queue, `lost` of them dropped; reported in one feedback.
fn through(send_bps: f64, link_bps: f64, n: usize, lost: &[usize]) -> (Cluster, Vec<PacketReport>) {
    let t0 = Instant::now();
    let gap = 8000.0 / send_bps;
    let serialize = 8000.0 / link_bps;
    let mut free_at = 0.0_f64;
    let mut seqs = Vec::new();
    let reports = (0..n)
        .map(|i| {
            let sent = i as f64 * gap;
            free_at = free_at.max(sent) + serialize;
            let probe = i % 3 == 1;
            let (ssrc, seq) = if probe {
                (PROBE_SSRC, i as u16)
            } else {
                (1, i as u16)
            };
            if probe {
                seqs.push(seq);
            }
            let arrival =
                (!lost.contains(&i)).then(|| Duration::from_secs_f64(10.0 + free_at + 0.02));
            let departure = t0 + Duration::from_secs_f64(sent);
            report(i as u64, (ssrc, seq), 1000, departure, arrival)
        })
        .collect();
    let cluster = Cluster {
        id: 1,
        rate_bps: send_bps,
        ssrc: PROBE_SSRC,
        seqs,
    };
    (cluster, reports)
}

fn near(v: f64, want: f64) -> bool {
    (v - want).abs() < want * 0.03
}

#[test]
fn a_probe_over_a_narrower_link_measures_the_link() {
    let (cluster, reports) = through(2_000_000.0, 1_000_000.0, 16, &[]);
    let mut m = Meter::new(cluster);
    let d = m.add(&reports).unwrap().unwrap();
    assert!(near(d, 1_000_000.0), "{d}");
}

#[test]
fn a_probe_over_a_wide_link_measures_its_own_rate() {
    let (cluster, reports) = through(2_000_000.0, 100_000_000.0, 16, &[]);
    let mut m = Meter::new(cluster);
    let d = m.add(&reports).unwrap().unwrap();
    assert!(near(d, 2_000_000.0), "{d}");
}

#[test]
fn lost_packets_count_as_not_delivered() {
    // A third of the window lost on a wide link: two thirds of the rate arrived.
    let lost: Vec<usize> = (0..16).filter(|i| i % 3 == 0).collect();
    let (cluster, reports) = through(2_000_000.0, 100_000_000.0, 16, &lost);
    let mut m = Meter::new(cluster);
    let d = m.add(&reports).unwrap().unwrap();
    assert!(d < 1_500_000.0, "{d}");
}

#[test]
fn the_result_waits_for_every_probe_packet_to_be_reported() {
    let (cluster, reports) = through(2_000_000.0, 1_000_000.0, 16, &[]);
    let mut m = Meter::new(cluster);
    assert_eq!(m.add(&reports[..10]), None);
    assert!(m.add(&reports[10..]).is_some());
}

#[test]
fn a_probe_of_which_almost_nothing_arrived_measures_nothing() {
    let lost: Vec<usize> = (1..16).collect();
    let (cluster, reports) = through(2_000_000.0, 1_000_000.0, 16, &lost);
    let mut m = Meter::new(cluster);
    assert_eq!(m.add(&reports), Some(None));
}

#[test]
fn pairs_crossing_far_faster_than_the_estimate_end_a_failed_probes_wait() {
    let t0 = Instant::now();
    let mut p = seen_since(t0);
    let r = p.due(moment(t0, 500_000.0)).unwrap();
    assert_eq!(p.result(t0, r.id, Some(520_000.0), 500_000.0), None);
    let r = p.due(moment(t0 + FIRST_WAIT, 500_000.0)).unwrap();
    let failed_at = t0 + FIRST_WAIT;
    assert_eq!(p.result(failed_at, r.id, Some(520_000.0), 500_000.0), None);
    // Waiting 2 s now. Pairs at the narrow link's rate change nothing,
    let soon = failed_at + Duration::from_millis(300);
    let narrow = Moment {
        pair_bps: Some(550_000.0),
        ..moment(soon, 500_000.0)
    };
    assert_eq!(p.due(narrow), None);
    // pairs at line rate probe at once.
    let wide = Moment {
        pair_bps: Some(100_000_000.0),
        ..narrow
    };
    assert!(p.due(wide).is_some());
}

/// Frames of two packets sent back to back every 33 ms through a link of `link_bps`
/// (1200-byte packets); the feedback reports `n` frames.
fn pairs(link_bps: f64, n: usize) -> (Instant, Vec<PacketReport>) {
    pairs_of(1200, link_bps, n)
}

/// The same with packets of `size` bytes, which the link serializes with their headers.
fn pairs_of(size: usize, link_bps: f64, n: usize) -> (Instant, Vec<PacketReport>) {
    let t0 = Instant::now();
    let on_wire = (size + WIRE_OVERHEAD_BYTES) as f64 * 8.0;
    let serialize = Duration::from_secs_f64(on_wire / link_bps);
    let reports = (0..2 * n)
        .map(|i| {
            let frame = Duration::from_millis(33 * (i / 2) as u64);
            let second = i % 2 == 1;
            let departure = t0 + frame + Duration::from_micros(if second { 50 } else { 0 });
            let arrival = frame + serialize * if second { 2 } else { 1 };
            let arrival = Some(Duration::from_secs(5) + arrival);
            report(i as u64, (1, i as u16), size, departure, arrival)
        })
        .collect();
    (t0 + Duration::from_millis(33 * n as u64), reports)
}

#[test]
fn packets_sent_back_to_back_arrive_at_the_narrowest_links_rate() {
    let mut pr = PairRate::default();
    let (now, reports) = pairs(500_000.0, 10);
    pr.add(now, &reports[..6]);
    assert_eq!(pr.rate(), None, "three pairs say too little");
    pr.add(now, &reports[6..]);
    assert!(near(pr.rate().unwrap(), 500_000.0), "{:?}", pr.rate());
    // A second later, through a wide link.
    let mut pr = PairRate::default();
    let (now, reports) = pairs(1_000_000_000.0, 10);
    pr.add(now, &reports);
    assert!(pr.rate().unwrap() >= 50_000_000.0, "{:?}", pr.rate());
}

#[test]
fn small_packets_read_the_link_at_its_rate_headers_and_all() {
    // 180p's frames at 500 kbit/s: a few hundred bytes a packet, a sixth of it headers.
    let mut pr = PairRate::default();
    let (now, reports) = pairs_of(250, 500_000.0, 10);
    pr.add(now, &reports);
    assert!(near(pr.steady().unwrap(), 500_000.0), "{:?}", pr.steady());
    // Alike to a few percent: a bottleneck the estimate stays under.
    assert!(
        near(pr.bottleneck().unwrap(), 500_000.0),
        "{:?}",
        pr.bottleneck()
    );
}

#[test]
fn pairs_spaced_at_random_by_jitter_are_not_a_steady_rate() {
    let mut pr = PairRate::default();
    let (now, reports) = pairs(500_000.0, 20);
    pr.add(now, &reports);
    assert!(
        near(pr.steady().unwrap(), 500_000.0),
        "a link spaces them alike"
    );
    // A wide path whose packets each wait 0-40 ms more, at random (the jitter profile).
    let (now, reports) = pairs(1_000_000_000.0, 20);
    let mut rng = 7u64;
    let jittered: Vec<PacketReport> = reports
        .iter()
        .map(|r| {
            rng = rng
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let mut r = r.clone();
            r.arrival = r
                .arrival
                .map(|a| a + Duration::from_micros((rng >> 33) % 40_000));
            r
        })
        .collect();
    let mut pr = PairRate::default();
    pr.add(now, &jittered);
    assert!(pr.rate().is_some());
    assert_eq!(pr.steady(), None, "{:?}", pr.rate());
    assert_eq!(pr.bottleneck(), None, "{:?}", pr.rate());
}
