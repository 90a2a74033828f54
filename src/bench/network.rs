//! `confab bench network`: the 1:1 call of `bench call`, through a link impaired by a
//! named profile (loss, jitter, a narrow or changing link, an outage), judged as a
//! viewer would: frame rate, freezes, delay and resolution each way.

use serde_json::Value;

use crate::call::VideoQuality;
use crate::media::AUDIO_FRAME_US;

use super::BenchError;
use super::call::{CallBenchArgs, CallShape, run_peers};
use super::profile::Profile;
use super::shaper::{BIN, Shaper, ShaperStats};

#[derive(Debug, Clone, clap::Args)]
pub struct NetworkBenchArgs {
    /// The impairment; every profile in turn when not given.
    #[arg(long, value_enum)]
    pub profile: Option<Profile>,
    #[arg(long, default_value_t = 30.0)]
    pub seconds: f64,
    #[command(flatten)]
    pub shape: CallShape,
    /// Seeds the link's randomness, so runs lose the same packets.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Keeps the peers' JSON reports, one directory per profile, under this one.
    #[arg(long)]
    pub keep_reports: Option<std::path::PathBuf>,
}

/// What one direction of the call looked like to its viewer.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Direction {
    pub profile: &'static str,
    /// "alpha <- beta": what alpha saw of beta.
    pub direction: String,
    /// Frames shown per second, from 3 s on.
    pub fps: f64,
    /// Time in gaps over 200 ms between shown frames, from 3 s after the first frame.
    pub frozen_s: f64,
    /// W3C freeze count and total duration.
    pub freezes: u32,
    pub freeze_s: f64,
    pub latency_p95_ms: f64,
    /// Judder: the standard deviation of the intervals between shown frames (W3C
    /// inter-frame delay), from the whole call.
    pub judder_ms: f64,
    /// How long the viewer held pictures at the end for an even pace.
    pub video_hold_ms: f64,
    pub width: u32,
    pub height: u32,
    /// The lowest resolution shown after the first 3 s.
    pub min_height: u32,
    /// The sender's estimate and video rate at the end.
    pub estimate_kbps: f64,
    pub sent_kbps: f64,
    pub nacks: u64,
    /// Video packets FEC rebuilt at the viewer.
    pub fec: u64,
    pub plis: u64,
    pub keyframes: u64,
    /// After the profile's last change (the link's return, the end of a step): how long
    /// until the next frame was shown, when video had stopped.
    pub recovered_ms: Option<f64>,
    /// Packets the shaped link dropped, both ways (loss and full queues).
    pub link_dropped: u64,
    /// How the viewer's audio played: the jitter buffer's mean delay, the times it ran
    /// dry, and audio made up (the decoder's concealment of lost packets and the
    /// playout's after running dry, silence included).
    pub audio_delay_ms: f64,
    pub audio_underruns: u64,
    pub audio_concealed_ms: f64,
    /// A link that narrows and widens again: seconds from its narrowing until the end of
    /// a second in which all the sender offered the link fit the narrow rate (the second
    /// slides by 100 ms), and from its widening until the viewer's pictures were back at
    /// their size before (1 s resolution).
    pub step: Option<Step>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct Step {
    pub down_s: Option<f64>,
    pub back_s: Option<f64>,
}

/// What a sender put on the link: bytes per `bin_us` from `start_us` on (the shaper's
/// [`Offered`](super::shaper::Offered) of its direction).
#[derive(Debug, Clone, Copy)]
pub struct OnTheLink<'a> {
    pub start_us: u64,
    pub bin_us: u64,
    pub bytes: &'a [u64],
}

/// [`Step`] of a call: `sent` is what the sender offered the link, `shown` the viewer's
/// seconds from `first_us` on, the link narrowed to `narrow_kbps` at `narrowed_us` and
/// widened at `widened_us`.
pub fn step_figures(
    sent: OnTheLink,
    narrow_kbps: f64,
    shown: &[crate::call::VideoSecond],
    first_us: u64,
    (narrowed_us, widened_us): (u64, u64),
) -> Step {
    const SECOND: u64 = 1_000_000;
    let secs = |us: u64| us as f64 / 1e6;
    let bin = sent.bin_us.max(1);
    let per_second = (SECOND / bin).max(1) as usize;
    let first = narrowed_us.saturating_sub(sent.start_us).div_ceil(bin) as usize;
    let down_s = sent
        .bytes
        .windows(per_second)
        .enumerate()
        .skip(first)
        .find(|(_, w)| w.iter().sum::<u64>() as f64 * 8.0 / 1000.0 <= narrow_kbps)
        .map(|(k, _)| {
            let end = sent.start_us + (k + per_second) as u64 * bin;
            secs(end - narrowed_us)
        });
    let start_of = |i: usize| first_us + i as u64 * SECOND;
    let before = shown
        .iter()
        .enumerate()
        .rfind(|(i, s)| start_of(*i) + SECOND <= narrowed_us && s.frames > 0)
        .map(|(_, s)| s.height);
    let back_s = before.and_then(|h| {
        shown
            .iter()
            .enumerate()
            .find(|(i, s)| start_of(*i) >= widened_us && s.frames > 0 && s.height >= h)
            .map(|(i, _)| secs(start_of(i) + SECOND - widened_us))
    });
    Step { down_s, back_s }
}

pub async fn network(args: NetworkBenchArgs) -> Result<Vec<Direction>, BenchError> {
    let profiles: Vec<Profile> = args.profile.map_or(Profile::ALL.to_vec(), |p| vec![p]);
    let mut all = Vec::new();
    println!(
        "1:1 call, {} at {} fps, {:.0} s per profile, UDP shaped both ways",
        args.shape.size, args.shape.fps, args.seconds
    );
    println!("{}", header());
    for profile in profiles {
        let rows = run_profile(&args, profile).await?;
        for r in &rows {
            println!("{}", row(r));
        }
        all.extend(rows);
    }
    Ok(all)
}

/// One profile's call, both directions.
pub async fn run_profile(
    args: &NetworkBenchArgs,
    profile: Profile,
) -> Result<Vec<Direction>, BenchError> {
    let call = CallBenchArgs {
        seconds: args.seconds,
        shape: args.shape.clone(),
        runs: 1,
        keep_reports: args.keep_reports.as_ref().map(|d| d.join(profile.name())),
        peers: vec![2],
        mode: vec![super::room::Mode::Mesh],
    };
    let shaper = Shaper::start(profile, args.seed)?;
    let reports = run_peers(&call).await;
    let shaped = shaper.stop()?;
    if let Some(dir) = &call.keep_reports {
        let link =
            serde_json::json!({ "bin_ms": BIN.as_millis() as u64, "offered": shaped.offered });
        std::fs::write(dir.join("link.json"), link.to_string()).map_err(BenchError::Io)?;
    }
    let reports = reports?;
    let [alpha, beta] = reports.as_slice() else {
        return Err(BenchError::Server("expected two reports".into()));
    };
    Ok(vec![
        direction(profile, "alpha <- beta", alpha, beta, &shaped),
        direction(profile, "beta <- alpha", beta, alpha, &shaped),
    ])
}

fn direction(
    profile: Profile,
    name: &str,
    viewer: &Value,
    sender: &Value,
    shaped: &ShaperStats,
) -> Direction {
    let peer = &viewer["peers"][0];
    let video = &peer["video"];
    let playout = &peer["audio"]["playout"];
    let q: VideoQuality = serde_json::from_value(video["quality"].clone()).unwrap_or_default();
    let from_us = q.first_us.unwrap_or(0) + 3_000_000;
    let settled = q.timeline.iter().skip(3);
    let last = q.timeline.iter().rev().find(|s| s.frames > 0);
    let sender_last = &sender["peers"][0]["last_stats"];
    let viewer_last = &peer["last_stats"];
    let recovered_ms = (!profile.changes().is_empty())
        .then_some(shaped.last_change_us)
        .flatten()
        .map(|back| {
            q.gaps
                .iter()
                .find(|g| g.ended_us > back && g.ended_us - (g.ms * 1000.0) as u64 <= back)
                .map_or(0.0, |g| (g.ended_us - back) as f64 / 1000.0)
        });
    let step = match profile.changes() {
        [narrowed, widened] => {
            let narrow = profile.at(std::time::Duration::from_secs_f64(*narrowed));
            let at = |s: f64| shaped.started_us + (s * 1e6) as u64;
            // The sender's busiest flow from its media port is the call's.
            let port = sender["peers"][0]["last_stats"]["local_port"].as_u64();
            let flow = shaped
                .offered
                .iter()
                .filter(|o| Some(u64::from(o.from_port)) == port)
                .max_by_key(|o| o.bytes.iter().sum::<u64>());
            let sent = flow.map(|o| OnTheLink {
                start_us: shaped.started_us,
                bin_us: BIN.as_micros() as u64,
                bytes: &o.bytes,
            });
            sent.filter(|_| narrow.rate_bps > 0).map(|sent| {
                step_figures(
                    sent,
                    narrow.rate_bps as f64 / 1000.0,
                    &q.timeline,
                    q.first_us.unwrap_or(0),
                    (at(*narrowed), at(*widened)),
                )
            })
        }
        _ => None,
    };
    Direction {
        profile: profile.name(),
        direction: name.to_string(),
        fps: q.fps_from(3),
        frozen_s: q.gap_ms_after(from_us) / 1000.0,
        freezes: q.freezes,
        freeze_s: q.freeze_ms / 1000.0,
        latency_p95_ms: video["latency_ms"]["p95"].as_f64().unwrap_or(0.0),
        judder_ms: q.inter_frame_delay_sd_ms(),
        video_hold_ms: viewer_last["video_delay_ms"].as_f64().unwrap_or(0.0),
        width: last.map_or(0, |s| s.width),
        height: last.map_or(0, |s| s.height),
        min_height: settled
            .filter(|s| s.frames > 0)
            .map(|s| s.height)
            .min()
            .unwrap_or(0),
        estimate_kbps: sender_last["send_estimate_kbps"].as_f64().unwrap_or(0.0),
        sent_kbps: sender_last["video_out_kbps"].as_f64().unwrap_or(0.0),
        nacks: viewer_last["nack_sent"].as_u64().unwrap_or(0),
        fec: viewer_last["fec_recovered"].as_u64().unwrap_or(0),
        plis: viewer_last["pli_sent"].as_u64().unwrap_or(0),
        keyframes: video["keyframes"].as_u64().unwrap_or(0),
        recovered_ms,
        link_dropped: shaped.lost + shaped.overflowed,
        step,
        audio_delay_ms: playout["delay_ms"].as_f64().unwrap_or(0.0),
        audio_underruns: playout["underruns"].as_u64().unwrap_or(0),
        audio_concealed_ms: peer["audio"]["concealed"].as_f64().unwrap_or(0.0)
            * AUDIO_FRAME_US as f64
            / 1000.0
            + playout["concealed_ms"].as_f64().unwrap_or(0.0)
            + playout["silent_ms"].as_f64().unwrap_or(0.0),
    }
}

fn header() -> String {
    format!(
        "{:<9} {:<14} {:>5} {:>8} {:>7} {:>7} {:>6} {:>5} {:>9} {:>6} {:>9} {:>8} {:>6} {:>5} {:>5} {:>4} {:>9} {:>9} {:>6} {:>6} {:>8}",
        "profile",
        "direction",
        "fps",
        "frozen s",
        "freezes",
        "p95 ms",
        "judder",
        "hold",
        "size",
        "min h",
        "est kbps",
        "out kbps",
        "nacks",
        "fec",
        "plis",
        "kf",
        "recovery",
        "down/back",
        "aud ms",
        "a gaps",
        "a conc",
    )
}

fn row(d: &Direction) -> String {
    format!(
        "{:<9} {:<14} {:>5.1} {:>8.1} {:>7} {:>7.0} {:>6.1} {:>5.0} {:>9} {:>6} {:>9.0} {:>8.0} {:>6} {:>5} {:>5} {:>4} {:>9} {:>9} {:>6.0} {:>6} {:>8}",
        d.profile,
        d.direction,
        d.fps,
        d.frozen_s,
        d.freezes,
        d.latency_p95_ms,
        d.judder_ms,
        d.video_hold_ms,
        format!("{}x{}", d.width, d.height),
        d.min_height,
        d.estimate_kbps,
        d.sent_kbps,
        d.nacks,
        d.fec,
        d.plis,
        d.keyframes,
        d.recovered_ms
            .map_or("-".into(), |ms| format!("{ms:.0} ms")),
        d.step.map_or("-".into(), |s| {
            let secs = |v: Option<f64>| v.map_or("never".into(), |v| format!("{v:.1}"));
            format!("{}/{} s", secs(s.down_s), secs(s.back_s))
        }),
        d.audio_delay_ms,
        d.audio_underruns,
        format!("{:.0} ms", d.audio_concealed_ms),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::call::VideoSecond;

    const S: u64 = 1_000_000;

    fn shown(heights: &[u32]) -> Vec<VideoSecond> {
        (0..)
            .zip(heights)
            .map(|(t, &height)| VideoSecond {
                t,
                frames: 30,
                width: height * 16 / 9,
                height,
            })
            .collect()
    }

    /// 100 ms bins from 0: `kbps_at(bin)` each.
    fn offered(kbps_at: impl Fn(usize) -> u64) -> Vec<u64> {
        (0..300).map(|b| kbps_at(b) * 1000 / 8 / 10).collect()
    }

    fn on_the_link(bytes: &[u64]) -> OnTheLink<'_> {
        OnTheLink {
            start_us: 0,
            bin_us: S / 10,
            bytes,
        }
    }

    #[test]
    fn a_step_is_judged_by_the_first_second_that_fits_and_the_first_back_at_full_size() {
        // The link narrows at 10 s and widens at 20 s (the viewer's first frame at 0);
        // the sender puts 2.5 Mbit/s on it until 10.6 s, then 300 kbit/s.
        let bytes = offered(|b| if (106..210).contains(&b) { 300 } else { 2500 });
        let mut heights = vec![720; 10];
        heights.extend([360; 13]);
        heights.extend([540, 720, 720, 720, 720, 720, 720]);
        let step = step_figures(
            on_the_link(&bytes),
            500.0,
            &shown(&heights),
            0,
            (10 * S, 20 * S),
        );
        // The second from 10.5 s holds 100 ms at the old rate, over 500 kbit; the one
        // from 10.6 s is the first to fit: by 11.6 s.
        assert_eq!(step.down_s, Some(1.6));
        // 720p again in the second from 24 s: by 25 s, 5 s after.
        assert_eq!(step.back_s, Some(5.0));
    }

    #[test]
    fn only_a_second_after_the_narrowing_counts() {
        let bytes = offered(|_| 300);
        let heights = vec![720; 30];
        let step = step_figures(
            on_the_link(&bytes),
            500.0,
            &shown(&heights),
            0,
            (10 * S + S / 20, 20 * S),
        );
        // From 10.05 s the first whole bin starts at 10.1 s: a second to 11.1 s.
        assert_eq!(step.down_s, Some(1.05));
    }

    #[test]
    fn a_sender_that_never_fits_and_a_picture_that_never_returns_say_so() {
        let bytes = offered(|_| 900);
        let mut heights = vec![720; 10];
        heights.extend([360; 20]);
        let step = step_figures(
            on_the_link(&bytes),
            500.0,
            &shown(&heights),
            0,
            (10 * S, 20 * S),
        );
        assert_eq!(
            step,
            Step {
                down_s: None,
                back_s: None
            }
        );
    }
}
