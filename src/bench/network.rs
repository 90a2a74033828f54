//! `confab bench network`: the 1:1 call of `bench call`, through a link impaired by a
//! named profile (loss, jitter, a narrow or changing link, an outage), judged as a
//! viewer would: frame rate, freezes, delay and resolution each way.

use serde_json::Value;

use crate::call::VideoQuality;

use super::BenchError;
use super::call::{CallBenchArgs, CallShape, run_peers};
use super::profile::Profile;
use super::shaper::{Shaper, ShaperStats};

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
    Direction {
        profile: profile.name(),
        direction: name.to_string(),
        fps: q.fps_from(3),
        frozen_s: q.gap_ms_after(from_us) / 1000.0,
        freezes: q.freezes,
        freeze_s: q.freeze_ms / 1000.0,
        latency_p95_ms: video["latency_ms"]["p95"].as_f64().unwrap_or(0.0),
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
    }
}

fn header() -> String {
    format!(
        "{:<9} {:<14} {:>5} {:>8} {:>7} {:>7} {:>9} {:>6} {:>9} {:>8} {:>6} {:>5} {:>5} {:>4} {:>9}",
        "profile",
        "direction",
        "fps",
        "frozen s",
        "freezes",
        "p95 ms",
        "size",
        "min h",
        "est kbps",
        "out kbps",
        "nacks",
        "fec",
        "plis",
        "kf",
        "recovery"
    )
}

fn row(d: &Direction) -> String {
    format!(
        "{:<9} {:<14} {:>5.1} {:>8.1} {:>7} {:>7.0} {:>9} {:>6} {:>9.0} {:>8.0} {:>6} {:>5} {:>5} {:>4} {:>9}",
        d.profile,
        d.direction,
        d.fps,
        d.frozen_s,
        d.freezes,
        d.latency_p95_ms,
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
    )
}
