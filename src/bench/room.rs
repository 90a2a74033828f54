//! `confab bench call --peers N,… --mode mesh,sfu`: one room per size and mode, every
//! member a `confab headless` process, compared side by side: what each member pays
//! (CPU, uplink) and what it sees (glass to glass, frame rate, frames in order).

use serde::Serialize;
use serde_json::Value;

use super::BenchError;
use super::call::{CallBenchArgs, Peer, children_cpu_seconds, run_headless, start_server};
use crate::sfu::{LocalJanus, SfuTarget};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    Mesh,
    Sfu,
}

/// One room of the comparison, averaged over its members.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RoomRow {
    pub members: usize,
    pub mode: &'static str,
    pub cpu_per_member: f64,
    /// Janus's CPU per call-second (SFU rooms).
    pub janus_cpu: Option<f64>,
    pub uplink_kbps: f64,
    pub downlink_video_kbps: f64,
    pub glass_to_glass_p50_ms: f64,
    pub glass_to_glass_p95_ms: f64,
    /// Frames decoded per second per remote member.
    pub fps: f64,
    /// Remote members seen, over every member: n x (n - 1) when everyone sees everyone.
    pub streams_seen: usize,
    pub streams_out_of_order: usize,
}

impl RoomRow {
    pub const HEADER: &'static str = "members  mode  CPU/member  Janus CPU  uplink kbit/s  \
                                      video in kbit/s  g2g p50/p95 ms  fps/stream  streams seen";

    fn line(&self) -> String {
        let janus = self
            .janus_cpu
            .map_or_else(|| "-".to_string(), |c| format!("{c:.2}"));
        format!(
            "{:>7}  {:<4}  {:>10.2}  {:>9}  {:>13.0}  {:>15.0}  {:>6.1} / {:<6.1}  {:>10.1}  {}/{}{}",
            self.members,
            self.mode,
            self.cpu_per_member,
            janus,
            self.uplink_kbps,
            self.downlink_video_kbps,
            self.glass_to_glass_p50_ms,
            self.glass_to_glass_p95_ms,
            self.fps,
            self.streams_seen,
            self.members * (self.members - 1),
            if self.streams_out_of_order > 0 {
                format!(" ({} out of order)", self.streams_out_of_order)
            } else {
                String::new()
            }
        )
    }
}

/// Runs every size in every mode and prints the table as it goes.
pub async fn compare(args: &CallBenchArgs) -> Result<Vec<RoomRow>, BenchError> {
    if let Some(n) = args.peers.iter().find(|n| !(2..=16).contains(*n)) {
        return Err(BenchError::Args(format!(
            "--peers {n}: a room of 2 to 16 members"
        )));
    }
    println!(
        "rooms of {} for {:.0} s each, {} at {} fps, one process per member; CPU in \
         seconds per call-second",
        args.peers
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", "),
        args.seconds,
        args.shape.size,
        args.shape.fps,
    );
    println!("{}", RoomRow::HEADER);
    let mut rows = Vec::new();
    for &n in &args.peers {
        for &mode in &args.mode {
            let row = run_room(args, n, mode).await?;
            println!("{}", row.line());
            rows.push(row);
        }
    }
    Ok(rows)
}

/// One room of `n` members for the bench's length.
pub async fn run_room(args: &CallBenchArgs, n: usize, mode: Mode) -> Result<RoomRow, BenchError> {
    let janus = match mode {
        Mode::Mesh => None,
        Mode::Sfu => Some(
            tokio::task::spawn_blocking(LocalJanus::start)
                .await
                .map_err(|e| BenchError::Server(e.to_string()))?
                .map_err(|e| BenchError::Server(e.to_string()))?,
        ),
    };
    let room = format!("bench-{n}-{mode:?}").to_lowercase();
    let extra: Vec<String> = match &janus {
        None => Vec::new(),
        Some(j) => {
            let target = SfuTarget::for_room(&j.url(), &room);
            vec![
                "--sfu".into(),
                target.url,
                "--sfu-room".into(),
                target.room.to_string(),
                "--bind".into(),
                j.bind_addr().trim_end_matches(":0").to_owned(),
                // Each member receives the layer a 720p window's grid needs, as the
                // desktop app asks for (a mesh sends one picture whatever the tile).
                "--window".into(),
                "1280x720".into(),
            ]
        }
    };
    let peers: Vec<Peer> = (1..=n)
        .map(|i| Peer {
            name: format!("m{i}"),
            tone_hz: 300 + 60 * i as u32,
            extra: extra.clone(),
        })
        .collect();
    let server = start_server().await?;
    let janus_before = janus.as_ref().map(|j| process_cpu_seconds(j.pid()));
    let cpu_before = children_cpu_seconds();
    let reports = run_headless(args, &server.ws_url(), &room, &peers).await;
    let cpu = children_cpu_seconds() - cpu_before;
    let janus_cpu = janus
        .as_ref()
        .zip(janus_before)
        .map(|(j, before)| (process_cpu_seconds(j.pid()) - before) / args.seconds);
    let _ = server.shutdown().await;
    // Janus goes (and its interface with it) on another thread: killing waits.
    if let Some(j) = janus {
        let _ = tokio::task::spawn_blocking(move || drop(j)).await;
    }
    let mut row = summarise(&reports?, args.seconds);
    row.mode = match mode {
        Mode::Mesh => "mesh",
        Mode::Sfu => "sfu",
    };
    row.cpu_per_member = cpu / n as f64 / args.seconds;
    row.janus_cpu = janus_cpu;
    Ok(row)
}

/// Averages over members (and over the remote members each one saw).
pub fn summarise(reports: &[Value], seconds: f64) -> RoomRow {
    let n = reports.len();
    let mean = |v: &[f64]| {
        if v.is_empty() {
            0.0
        } else {
            v.iter().sum::<f64>() / v.len() as f64
        }
    };
    let remotes: Vec<&Value> = reports
        .iter()
        .flat_map(|r| r["peers"].as_array().into_iter().flatten())
        .filter(|p| p["video"]["frames_decoded"].as_u64().unwrap_or(0) > 0)
        .collect();
    let each = |f: &dyn Fn(&Value) -> Option<f64>| -> Vec<f64> {
        remotes.iter().filter_map(|p| f(p)).collect()
    };
    let uplink: Vec<f64> = reports
        .iter()
        .filter_map(|r| r["sent"]["uplink_bytes"].as_f64())
        .map(|b| b * 8.0 / 1000.0 / seconds)
        .collect();
    let downlink: Vec<f64> = reports
        .iter()
        .map(|r| {
            r["peers"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|p| p["last_stats"]["video_in_kbps"].as_f64())
                .sum()
        })
        .collect();
    RoomRow {
        members: n,
        uplink_kbps: mean(&uplink),
        downlink_video_kbps: mean(&downlink),
        glass_to_glass_p50_ms: mean(&each(&|p| p["video"]["latency_ms"]["p50"].as_f64())),
        glass_to_glass_p95_ms: mean(&each(&|p| p["video"]["latency_ms"]["p95"].as_f64())),
        fps: mean(&each(&|p| {
            p["video"]["frames_decoded"].as_f64().map(|f| f / seconds)
        })),
        streams_seen: remotes.len(),
        streams_out_of_order: remotes
            .iter()
            .filter(|p| p["video"]["ids_in_order"] == Value::Bool(false))
            .count(),
        ..RoomRow::default()
    }
}

/// User + system CPU of process `pid` so far, from /proc (0 when it is gone).
fn process_cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the command (which may hold spaces) start after the last ')'.
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat(5); `rest` starts at field 3.
    let ticks: f64 = [11, 12]
        .iter()
        .filter_map(|i| fields.get(*i)?.parse::<f64>().ok())
        .sum();
    // SAFETY: sysconf only reads a configuration value.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    ticks / hz.max(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::time::Duration;

    fn member(uplink_bytes: u64, remotes: Vec<Value>) -> Value {
        json!({"sent": {"uplink_bytes": uplink_bytes}, "peers": remotes})
    }

    fn remote(frames: u64, p50: f64, in_order: bool) -> Value {
        json!({"video": {"frames_decoded": frames, "ids_in_order": in_order,
                         "latency_ms": {"p50": p50, "p95": p50 * 2.0}},
               "last_stats": {"video_in_kbps": 100.0}})
    }

    #[test]
    fn a_room_row_averages_members_and_the_streams_they_saw() {
        let reports = [
            member(
                10_000,
                vec![remote(100, 10.0, true), remote(50, 20.0, false)],
            ),
            member(30_000, vec![remote(0, 99.0, true)]),
        ];
        let row = summarise(&reports, 10.0);
        assert_eq!(row.members, 2);
        // (8 + 24) kbit/s over two members.
        assert!((row.uplink_kbps - 16.0).abs() < 1e-9);
        // A remote that never decoded counts as not seen and not in the latency.
        assert_eq!(row.streams_seen, 2);
        assert_eq!(row.streams_out_of_order, 1);
        assert!((row.glass_to_glass_p50_ms - 15.0).abs() < 1e-9);
        assert!((row.glass_to_glass_p95_ms - 30.0).abs() < 1e-9);
        assert!((row.fps - 7.5).abs() < 1e-9);
        // Downlink sums what each member received: 200 and 100.
        assert!((row.downlink_video_kbps - 150.0).abs() < 1e-9);
    }

    #[test]
    fn our_own_cpu_time_is_read_from_proc() {
        // Burn a little CPU so the count is above zero.
        let mut x = 0u64;
        let start = std::time::Instant::now();
        while start.elapsed() < Duration::from_millis(50) {
            x = x.wrapping_add(std::hint::black_box(1));
        }
        assert!(x > 0);
        assert!(process_cpu_seconds(std::process::id()) > 0.0);
        assert_eq!(process_cpu_seconds(u32::MAX), 0.0);
    }
}
