//! `confab bench simulcast`: what simulcast costs and how fast a layer switch is.
//!
//! Encode: the synthetic 1280x720 camera encoded as one stream and as three layers
//! (`call::layered`), as fast as it goes: ms per frame for each, per layer, and the
//! share of a core at the call's frame rate when the small layers run at full, half
//! and a third of it (what the pacer falls back to when the CPU is short).
//!
//! Switch (with `--janus`): two in-process engines in a Janus room, the viewer
//! switching the publisher's camera between the smallest and largest layers; each
//! switch timed from the command to Janus's word and to the first picture of the new
//! size.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::mpsc;

use crate::call::layered::LayeredEncoder;
use crate::call::simulcast::LAYERS;
use crate::call::{
    self, AudioInfo, CallConfig, Command, Event, FrameInfo, LocalMedia, MediaSink, TrackRole,
    VideoEncoding,
};
use crate::media::{
    EncoderSettings, H264Encoder, SyntheticAudio, SyntheticVideo, VideoFrame, VideoSource,
};
use crate::sfu::SfuTarget;
use crate::signaling::{Server, ServerConfig};

use super::BenchError;
use super::call::percentiles;

#[derive(Debug, Clone, clap::Args)]
pub struct SimulcastBenchArgs {
    /// Frames encoded each way.
    #[arg(long, default_value_t = 300)]
    pub frames: usize,
    #[arg(long, default_value_t = 30.0)]
    pub fps: f32,
    /// The largest layer's bitrate.
    #[arg(long, default_value_t = 1500)]
    pub bitrate_kbps: u32,
    /// Also time layer switches through this Janus (ws://HOST:PORT).
    #[arg(long, value_name = "URL")]
    pub janus: Option<String>,
    /// Local address the engines bind their media to (one Janus gathers on).
    #[arg(long, default_value = "127.0.0.1")]
    pub bind: String,
    /// Switches to time (alternately to the largest and the smallest layer).
    #[arg(long, default_value_t = 10)]
    pub switches: usize,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct SimulcastBenchReport {
    pub frames: usize,
    /// One 1280x720 encoder.
    pub single_ms_per_frame: f64,
    /// Each layer (scaling included) per frame it encoded, smallest first.
    pub layer_ms_per_frame: Vec<f64>,
    /// Of which scaling the picture to the layer's size.
    pub layer_scaling_ms_per_frame: Vec<f64>,
    /// All layers at full rate, and with the small layers at 1/2 and 1/3 of it.
    pub layered_ms_per_frame: [f64; 3],
    /// Share of one core at `fps`: one stream, then the three layered cases.
    pub single_core_share: f64,
    pub layered_core_share: [f64; 3],
    /// Bytes per encoded frame of each layer, smallest first.
    pub layer_bytes_per_frame: Vec<f64>,
    pub switch: Option<SwitchTimes>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct SwitchTimes {
    pub switches: usize,
    /// Command to Janus's `substream` event: p50 / p95 / max.
    pub to_relayed_ms: (f64, f64, f64),
    /// Command to the first decoded picture of the new size.
    pub to_picture_ms: (f64, f64, f64),
}

impl std::fmt::Display for SimulcastBenchReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let l = &self.layered_ms_per_frame;
        let c = &self.layered_core_share;
        writeln!(f, "frames                    {}", self.frames)?;
        writeln!(
            f,
            "one 1280x720 stream       {:.2} ms/frame ({:.0} % of a core)",
            self.single_ms_per_frame,
            100.0 * self.single_core_share
        )?;
        let each: Vec<String> = self
            .layer_ms_per_frame
            .iter()
            .zip(&self.layer_bytes_per_frame)
            .zip(&self.layer_scaling_ms_per_frame)
            .map(|((ms, b), sc)| format!("{ms:.2} ms ({sc:.2} scaling) {b:.0} B"))
            .collect();
        writeln!(f, "each layer (small first)  {}", each.join(" | "))?;
        writeln!(
            f,
            "three layers              {:.2} ms/frame ({:.0} %), small at 1/2: {:.2} ({:.0} %), at 1/3: {:.2} ({:.0} %)",
            l[0],
            100.0 * c[0],
            l[1],
            100.0 * c[1],
            l[2],
            100.0 * c[2]
        )?;
        if let Some(s) = &self.switch {
            writeln!(
                f,
                "switch ({}), to Janus's event   p50 {:.0} ms  p95 {:.0} ms  max {:.0} ms",
                s.switches, s.to_relayed_ms.0, s.to_relayed_ms.1, s.to_relayed_ms.2
            )?;
            writeln!(
                f,
                "switch, to the new picture      p50 {:.0} ms  p95 {:.0} ms  max {:.0} ms",
                s.to_picture_ms.0, s.to_picture_ms.1, s.to_picture_ms.2
            )?;
        }
        Ok(())
    }
}

pub async fn simulcast(args: SimulcastBenchArgs) -> Result<SimulcastBenchReport, BenchError> {
    let r = run_simulcast(args).await?;
    print!("{r}");
    Ok(r)
}

pub async fn run_simulcast(args: SimulcastBenchArgs) -> Result<SimulcastBenchReport, BenchError> {
    let a = args.clone();
    let mut r = tokio::task::spawn_blocking(move || encode_costs(&a))
        .await
        .map_err(|e| BenchError::Server(e.to_string()))??;
    if let Some(url) = &args.janus {
        r.switch = Some(switch_times(&args, url).await?);
    }
    Ok(r)
}

fn media_error(e: crate::media::MediaError) -> BenchError {
    BenchError::Server(format!("media: {e}"))
}

fn encode_costs(args: &SimulcastBenchArgs) -> Result<SimulcastBenchReport, BenchError> {
    let frames = args.frames.max(1);
    let encoding = VideoEncoding {
        fps: args.fps,
        bitrate_bps: args.bitrate_kbps.saturating_mul(1000),
        keyframe_interval_frames: 0,
    };
    let mut source = SyntheticVideo::new(1280, 720, args.fps).map_err(media_error)?;
    let pictures: Vec<VideoFrame> = (0..frames)
        .map(|_| source.next_frame())
        .collect::<Result<_, _>>()
        .map_err(media_error)?;
    let mut single = H264Encoder::new(EncoderSettings {
        width: 1280,
        height: 720,
        fps: encoding.fps,
        bitrate_bps: encoding.bitrate_bps,
        keyframe_interval_frames: 0,
    })
    .map_err(media_error)?;
    let started = Instant::now();
    for p in &pictures {
        single.encode(p).map_err(media_error)?;
    }
    let single_ms = started.elapsed().as_secs_f64() * 1000.0 / frames as f64;
    let mut layered = LayeredEncoder::new(LAYERS, encoding);
    let mut took = [Duration::ZERO; LAYERS];
    let mut scaling = [Duration::ZERO; LAYERS];
    let mut bytes = [0usize; LAYERS];
    // The pacer may skip the small layers: each layer's figures are per frame it encoded.
    let mut encoded = [0usize; LAYERS];
    for p in &pictures {
        let (units, _) = layered.encode(p).map_err(media_error)?;
        for u in units {
            took[u.layer] += u.took;
            scaling[u.layer] += u.scaling;
            bytes[u.layer] += u.data.len();
            encoded[u.layer] += 1;
        }
    }
    let per_encoded = |d: &[Duration; LAYERS]| -> Vec<f64> {
        d.iter()
            .zip(encoded)
            .map(|(d, n)| d.as_secs_f64() * 1000.0 / n.max(1) as f64)
            .collect()
    };
    let layer_ms = per_encoded(&took);
    let layer_scaling_ms = per_encoded(&scaling);
    let top = layer_ms[LAYERS - 1];
    let small: f64 = layer_ms[..LAYERS - 1].iter().sum();
    let layered_ms = [top + small, top + small / 2.0, top + small / 3.0];
    let interval_ms = 1000.0 / f64::from(args.fps.max(1.0));
    Ok(SimulcastBenchReport {
        frames,
        single_ms_per_frame: single_ms,
        layer_ms_per_frame: layer_ms,
        layer_scaling_ms_per_frame: layer_scaling_ms,
        layered_ms_per_frame: layered_ms,
        single_core_share: single_ms / interval_ms,
        layered_core_share: layered_ms.map(|ms| ms / interval_ms),
        layer_bytes_per_frame: bytes
            .iter()
            .zip(encoded)
            .map(|(b, n)| *b as f64 / n.max(1) as f64)
            .collect(),
        switch: None,
    })
}

/// The size of each picture of the publisher's camera, as the viewer shows it.
struct Pictures(mpsc::UnboundedSender<(usize, usize, Instant)>);

impl MediaSink for Pictures {
    fn video(&self, _: &str, track: TrackRole, frame: &VideoFrame, _: &FrameInfo) {
        if track == TrackRole::Camera {
            let _ = self.0.send((frame.width, frame.height, Instant::now()));
        }
    }
    fn audio(&self, _: &str, _: TrackRole, _: &[f32], _: &AudioInfo) {}
}

const WAIT: Duration = Duration::from_secs(20);

/// When Janus says it relays `layer` of the camera; None if the engine stopped.
async fn relayed(events: &mut mpsc::UnboundedReceiver<Event>, layer: u8) -> Option<Instant> {
    loop {
        match events.recv().await? {
            Event::LayerRelayed {
                track: TrackRole::Camera,
                layer: l,
                ..
            } if l == layer => return Some(Instant::now()),
            _ => {}
        }
    }
}

/// When the first picture `height` high was shown.
async fn sized(
    pictures: &mut mpsc::UnboundedReceiver<(usize, usize, Instant)>,
    height: usize,
) -> Option<Instant> {
    loop {
        let (_, h, at) = pictures.recv().await?;
        if h == height {
            return Some(at);
        }
    }
}

async fn switch_times(args: &SimulcastBenchArgs, janus: &str) -> Result<SwitchTimes, BenchError> {
    let failed = |what: &str| BenchError::Server(format!("switch bench: {what}"));
    let server = Server::start(ServerConfig {
        listen: "127.0.0.1:0".parse().expect("valid address"),
        ..ServerConfig::default()
    })
    .await
    .map_err(|e| BenchError::Server(e.to_string()))?;
    let room = format!("simulcast-bench-{}", std::process::id());
    let cfg = |name: &str| {
        let mut c = CallConfig::new(&server.ws_url(), &room, name);
        c.bind_addrs = vec![format!("{}:0", args.bind)];
        c.sfu = Some(SfuTarget::for_room(janus, &room));
        c.video = VideoEncoding {
            fps: args.fps,
            bitrate_bps: args.bitrate_kbps.saturating_mul(1000),
            keyframe_interval_frames: 0,
        };
        c
    };
    let camera = |w, h| -> Result<LocalMedia, BenchError> {
        Ok(LocalMedia {
            camera: Some(Box::new(
                SyntheticVideo::new(w, h, args.fps).map_err(media_error)?,
            )),
            microphone: Some(Box::new(SyntheticAudio::new(440.0))),
        })
    };
    let start_err = |e: call::CallError| BenchError::Server(format!("engine: {e}"));
    let (publisher, _pub_events) = call::start(
        cfg("publisher"),
        camera(1280, 720)?,
        Arc::new(call::NullSink),
    )
    .await
    .map_err(start_err)?;
    let (tx, mut pictures) = mpsc::unbounded_channel();
    let mut viewer_cfg = cfg("viewer");
    viewer_cfg.sfu_layer = Some(0);
    let (viewer, mut events) = call::start(viewer_cfg, camera(320, 180)?, Arc::new(Pictures(tx)))
        .await
        .map_err(start_err)?;
    tokio::time::timeout(WAIT, sized(&mut pictures, 180))
        .await
        .ok()
        .flatten()
        .ok_or_else(|| failed("no small picture at the start"))?;
    let (mut to_relayed, mut to_picture) = (Vec::new(), Vec::new());
    for i in 0..args.switches.max(1) {
        let (layer, height) = if i % 2 == 0 { (2, 720) } else { (0, 180) };
        // Pictures and Janus's words from before the command are not the switch's.
        while pictures.try_recv().is_ok() {}
        while events.try_recv().is_ok() {}
        let asked = Instant::now();
        viewer.send(Command::ForceLayer(Some(layer)));
        let r = tokio::time::timeout(WAIT, relayed(&mut events, layer))
            .await
            .ok()
            .flatten()
            .ok_or_else(|| failed("Janus never switched"))?;
        let p = tokio::time::timeout(WAIT, sized(&mut pictures, height))
            .await
            .ok()
            .flatten()
            .ok_or_else(|| failed("no picture of the new layer"))?;
        to_relayed.push((r - asked).as_secs_f64() * 1000.0);
        to_picture.push((p - asked).as_secs_f64() * 1000.0);
    }
    viewer.send(Command::Leave);
    publisher.send(Command::Leave);
    Ok(SwitchTimes {
        switches: to_relayed.len(),
        to_relayed_ms: percentiles(&mut to_relayed),
        to_picture_ms: percentiles(&mut to_picture),
    })
}
