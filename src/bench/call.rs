//! `confab bench call`: a 1:1 call between two `confab headless` processes on
//! loopback, with an in-process signaling server. Each peer is its own process
//! so its CPU time can be read from the kernel (getrusage of the children).

use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use crate::signaling::{Server, ServerConfig};

use super::BenchError;

/// What each peer of a bench call sends.
#[derive(Debug, Clone, clap::Args)]
pub struct CallShape {
    #[arg(long, default_value = "1280x720")]
    pub size: String,
    #[arg(long, default_value_t = 30.0)]
    pub fps: f32,
    #[arg(long, default_value_t = 2500)]
    pub bitrate_kbps: u32,
}

#[derive(Debug, Clone, clap::Args)]
pub struct CallBenchArgs {
    #[arg(long, default_value_t = 20.0)]
    pub seconds: f64,
    #[command(flatten)]
    pub shape: CallShape,
    /// Calls one after another; with more than one, join-to-first-frame is also given
    /// over all of them (p50 / p95 / max), where a slow mode shows.
    #[arg(long, default_value_t = 1)]
    pub runs: usize,
    /// Keeps each peer's JSON report (with its per-second timelines) in this directory.
    #[arg(long)]
    pub keep_reports: Option<PathBuf>,
    /// Room sizes: with anything but a 1:1 mesh call, one room per size and mode,
    /// compared side by side (e.g. `--peers 2,4,6,8 --mode mesh,sfu`).
    #[arg(long, value_delimiter = ',', default_value = "2")]
    pub peers: Vec<usize>,
    /// How media flows: a mesh, or through a Janus of the bench's own (`sfu`; only in
    /// a private network namespace, like `bench network`).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "mesh")]
    pub mode: Vec<super::room::Mode>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct CallBenchReport {
    pub seconds: f64,
    pub size: String,
    pub join_to_first_frame_ms: f64,
    /// Each peer's join to first frame, every run.
    pub join_samples_ms: Vec<f64>,
    pub glass_to_glass_p50_ms: f64,
    pub glass_to_glass_p95_ms: f64,
    pub audio_latency_p50_ms: f64,
    pub cpu_seconds_per_call_second_per_peer: f64,
    pub encode_ms_per_frame: f64,
    pub decode_ms_per_frame: f64,
    pub video_kbps: f64,
    pub frames_sent: u64,
    pub frames_decoded: u64,
    /// Barcode ids skipped between the first and last frame each side read: frames lost
    /// mid-call (a frame missing only at the end is not a gap).
    pub id_gaps: u64,
    pub keyframes_decoded: u64,
}

impl std::fmt::Display for CallBenchReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "1:1 call, {} for {:.0} s, two processes on loopback",
            self.size, self.seconds
        )?;
        writeln!(
            f,
            "join to first frame     {:.0} ms",
            self.join_to_first_frame_ms
        )?;
        writeln!(
            f,
            "glass to glass          p50 {:.1} ms  p95 {:.1} ms",
            self.glass_to_glass_p50_ms, self.glass_to_glass_p95_ms
        )?;
        writeln!(
            f,
            "audio (marker click)    p50 {:.1} ms",
            self.audio_latency_p50_ms
        )?;
        writeln!(
            f,
            "CPU                     {:.2} s per call-second per peer",
            self.cpu_seconds_per_call_second_per_peer
        )?;
        writeln!(
            f,
            "encode / decode         {:.2} / {:.2} ms per frame",
            self.encode_ms_per_frame, self.decode_ms_per_frame
        )?;
        writeln!(f, "video bitrate           {:.0} kbit/s", self.video_kbps)?;
        writeln!(
            f,
            "frames                  {} sent, {} decoded, {} id gaps, {} keyframes",
            self.frames_sent, self.frames_decoded, self.id_gaps, self.keyframes_decoded
        )
    }
}

/// Runs `bench call` and prints its figures: a 1:1 call's in full, or a table of rooms.
pub async fn call(args: CallBenchArgs) -> Result<(), BenchError> {
    if args.peers != [2] || args.mode != [super::room::Mode::Mesh] {
        super::room::compare(&args).await?;
        return Ok(());
    }
    let mut joins = Vec::new();
    let mut last = None;
    for run in 1..=args.runs.max(1) {
        let r = run_call(args.clone()).await?;
        if args.runs > 1 {
            let each: Vec<String> = r
                .join_samples_ms
                .iter()
                .map(|j| format!("{j:.0}"))
                .collect();
            println!("run {run}: join to first frame {} ms", each.join(" / "));
        }
        joins.extend(r.join_samples_ms.iter().copied());
        last = Some(r);
    }
    let mut r = last.expect("at least one run");
    if args.runs > 1 {
        let p = percentiles(&mut joins);
        println!(
            "join to first frame over {} runs ({} joins): p50 {:.0} ms  p95 {:.0} ms  max {:.0} ms",
            args.runs,
            joins.len(),
            p.0,
            p.1,
            p.2
        );
        println!("the last run in full:");
        r.join_samples_ms = joins;
    }
    print!("{r}");
    Ok(())
}

/// p50, p95 and max of `v` (nearest rank).
pub(super) fn percentiles(v: &mut [f64]) -> (f64, f64, f64) {
    if v.is_empty() {
        return (0.0, 0.0, 0.0);
    }
    v.sort_by(f64::total_cmp);
    let at = |q: f64| v[((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
    (at(0.5), at(0.95), v[v.len() - 1])
}

pub async fn run_call(args: CallBenchArgs) -> Result<CallBenchReport, BenchError> {
    // Children's CPU accumulates over runs: this call's is the difference.
    let cpu_before = children_cpu_seconds();
    let reports = run_peers(&args).await?;
    let cpu = children_cpu_seconds() - cpu_before;
    Ok(summarise(&args, &reports, cpu))
}

/// Runs the call: two `confab headless` processes, alpha and beta, and returns their
/// JSON reports in that order.
pub(super) async fn run_peers(args: &CallBenchArgs) -> Result<Vec<serde_json::Value>, BenchError> {
    let server = start_server().await?;
    let peers = [("alpha", 440), ("beta", 660)].map(|(name, tone)| Peer {
        name: name.into(),
        tone_hz: tone,
        extra: Vec::new(),
    });
    let reports = run_headless(args, &server.ws_url(), "bench", &peers).await;
    let _ = server.shutdown().await;
    reports
}

/// One `confab headless` of a bench call.
pub(super) struct Peer {
    pub name: String,
    pub tone_hz: u32,
    /// More arguments, e.g. where its media goes.
    pub extra: Vec<String>,
}

pub(super) async fn start_server() -> Result<Server, BenchError> {
    Server::start(ServerConfig {
        listen: "127.0.0.1:0".parse().expect("valid address"),
        ..ServerConfig::default()
    })
    .await
    .map_err(|e| BenchError::Server(e.to_string()))
}

/// Runs `peers` in `room` of the server at `url` for the bench's length and returns their
/// JSON reports in the same order.
pub(super) async fn run_headless(
    args: &CallBenchArgs,
    url: &str,
    room: &str,
    peers: &[Peer],
) -> Result<Vec<serde_json::Value>, BenchError> {
    let dir = std::env::temp_dir().join(format!("confab-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(BenchError::Io)?;
    let exe = super::confab_binary()?;
    let mut children = Vec::new();
    for peer in peers {
        let report: PathBuf = dir.join(format!("{}.json", peer.name));
        let child = tokio::process::Command::new(&exe)
            .args([
                "headless",
                "--server",
                url,
                "--room",
                room,
                "--name",
                &peer.name,
                "--seconds",
                &args.seconds.to_string(),
                "--size",
                &args.shape.size,
                "--fps",
                &args.shape.fps.to_string(),
                "--bitrate-kbps",
                &args.shape.bitrate_kbps.to_string(),
                "--tone-hz",
                &peer.tone_hz.to_string(),
                "--report",
                report.to_str().expect("utf-8 temp path"),
            ])
            .args(if peer.extra.is_empty() {
                vec!["--bind".to_string(), "127.0.0.1".to_string()]
            } else {
                peer.extra.clone()
            })
            .env(
                "RUST_LOG",
                std::env::var("CONFAB_BENCH_PEER_LOG").unwrap_or_else(|_| "error".into()),
            )
            // Its summary is in its report and the bench prints its own; the log says
            // what went wrong should the peer fail.
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::from(
                std::fs::File::create(dir.join(format!("{}.log", peer.name)))
                    .map_err(BenchError::Io)?,
            ))
            .kill_on_drop(true)
            .spawn()
            .map_err(BenchError::Io)?;
        children.push((child, report, dir.join(format!("{}.log", peer.name))));
    }
    let mut reports = Vec::new();
    for (mut child, path, log) in children {
        let limit = Duration::from_secs_f64(args.seconds + 30.0);
        let status = tokio::time::timeout(limit, child.wait())
            .await
            .map_err(|_| BenchError::Server("a peer did not finish".into()))?
            .map_err(BenchError::Io)?;
        if !status.success() {
            let log = std::fs::read_to_string(&log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(20).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            return Err(BenchError::Server(format!(
                "a peer failed: {status}\n{}",
                tail.join("\n")
            )));
        }
        let text = std::fs::read_to_string(&path).map_err(BenchError::Io)?;
        let r: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| BenchError::Server(format!("unreadable report: {e}")))?;
        reports.push(r);
    }
    if let Some(keep) = &args.keep_reports {
        std::fs::create_dir_all(keep).map_err(BenchError::Io)?;
        for peer in peers {
            for ext in ["json", "log"] {
                let name = format!("{}.{ext}", peer.name);
                std::fs::copy(dir.join(&name), keep.join(&name)).map_err(BenchError::Io)?;
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(reports)
}

/// User + system CPU of every child process waited for so far.
pub(super) fn children_cpu_seconds() -> f64 {
    // SAFETY: getrusage fills the struct we pass and nothing else.
    unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        if libc::getrusage(libc::RUSAGE_CHILDREN, &mut u) != 0 {
            return 0.0;
        }
        let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
        tv(u.ru_utime) + tv(u.ru_stime)
    }
}

fn summarise(args: &CallBenchArgs, reports: &[serde_json::Value], cpu: f64) -> CallBenchReport {
    let mean = |f: &dyn Fn(&serde_json::Value) -> Option<f64>| {
        let v: Vec<f64> = reports.iter().filter_map(f).collect();
        if v.is_empty() {
            0.0
        } else {
            v.iter().sum::<f64>() / v.len() as f64
        }
    };
    let peer = |r: &serde_json::Value| r["peers"].get(0).cloned().unwrap_or_default();
    CallBenchReport {
        seconds: args.seconds,
        size: args.shape.size.clone(),
        join_to_first_frame_ms: mean(&|r| peer(r)["first_frame_ms"].as_f64()),
        join_samples_ms: reports
            .iter()
            .filter_map(|r| peer(r)["first_frame_ms"].as_f64())
            .collect(),
        glass_to_glass_p50_ms: mean(&|r| peer(r)["video"]["latency_ms"]["p50"].as_f64()),
        glass_to_glass_p95_ms: mean(&|r| peer(r)["video"]["latency_ms"]["p95"].as_f64()),
        audio_latency_p50_ms: mean(&|r| peer(r)["audio"]["latency_ms"]["p50"].as_f64()),
        cpu_seconds_per_call_second_per_peer: cpu / reports.len().max(1) as f64 / args.seconds,
        encode_ms_per_frame: mean(&|r| r["sent"]["encode_ms"].as_f64()),
        decode_ms_per_frame: mean(&|r| peer(r)["last_stats"]["decode_ms"].as_f64()),
        video_kbps: mean(&|r| peer(r)["last_stats"]["video_in_kbps"].as_f64()),
        frames_sent: reports
            .iter()
            .filter_map(|r| r["sent"]["video_frames"].as_u64())
            .sum(),
        frames_decoded: reports
            .iter()
            .filter_map(|r| peer(r)["video"]["frames_decoded"].as_u64())
            .sum(),
        id_gaps: reports
            .iter()
            .filter_map(|r| peer(r)["video"]["id_gaps"].as_u64())
            .sum(),
        keyframes_decoded: reports
            .iter()
            .filter_map(|r| peer(r)["video"]["keyframes"].as_u64())
            .sum(),
    }
}

#[cfg(test)]
mod tests {
    use super::percentiles;

    #[test]
    fn join_percentiles_are_nearest_rank_over_every_sample() {
        let mut v: Vec<f64> = (1..=20).rev().map(f64::from).collect();
        assert_eq!(percentiles(&mut v), (10.0, 19.0, 20.0));
        assert_eq!(percentiles(&mut [1200.0]), (1200.0, 1200.0, 1200.0));
        assert_eq!(percentiles(&mut []), (0.0, 0.0, 0.0));
    }
}
