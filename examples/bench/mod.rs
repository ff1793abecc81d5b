// SPDX-License-Identifier: MIT OR Apache-2.0

//! What the viewer benchmarks (`viewers`, `fanout`) share: processes and
//! their CPU time, whepclientsrc viewers that count frames, the publisher's
//! encoders, and one step's measurement.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use gst::prelude::*;

/// The publisher's frame rate; a viewer under 95 % of it lost frames.
pub const FPS: f64 = 30.0;

/// A child process killed when dropped.
pub struct Proc(Child);

impl Proc {
    pub fn spawn(program: &Path, args: &[&str]) -> Proc {
        let child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
        Proc(child)
    }

    pub fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// CPU time (user + system) of process `pid` and its threads so far.
pub fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) in parentheses.
    let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let fields: Vec<u64> = after
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    // utime and stime are fields 14 and 15 of stat; 12 and 13 after ")".
    let ticks = fields.get(11).copied().unwrap_or(0) + fields.get(12).copied().unwrap_or(0);
    // In clock ticks, which /proc gives in USER_HZ: 100 on Linux.
    Duration::from_millis(ticks * 10)
}

/// One viewer: a whepclientsrc pipeline counting the video frames it gets.
pub struct Viewer {
    pipeline: gst::Pipeline,
    frames: Arc<AtomicU64>,
    /// When the first frame came, in microseconds after the viewer started.
    first: Arc<AtomicU64>,
}

impl Viewer {
    /// A viewer of `endpoint` taking video as `caps` (encoded).
    pub fn start(endpoint: &str, caps: &str) -> Viewer {
        let description = format!(
            "whepclientsrc name=wc stun-server=\"\" signaller::whep-endpoint={endpoint} \
             wc.video_0 ! {caps} ! appsink name=video sync=false async=false \
             wc.audio_0 ! audio/x-opus ! fakesink sync=false async=false"
        );
        let pipeline = moq_gateway::launch::build_from_str(&description)
            .unwrap_or_else(|e| panic!("a viewer: {e:#}"));
        let frames = Arc::new(AtomicU64::new(0));
        let seen = frames.clone();
        let started = Instant::now();
        let first = Arc::new(AtomicU64::new(0));
        let first_seen = first.clone();
        let sink = pipeline
            .by_name("video")
            .and_then(|e| e.downcast::<gst_app::AppSink>().ok())
            .expect("an appsink");
        sink.set_callbacks(
            gst_app::AppSinkCallbacks::builder()
                .new_sample(move |sink| {
                    sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                    if seen.fetch_add(1, Ordering::Relaxed) == 0 {
                        let micros = started.elapsed().as_micros();
                        first_seen
                            .store(u64::try_from(micros).unwrap_or(u64::MAX), Ordering::Relaxed);
                    }
                    Ok(gst::FlowSuccess::Ok)
                })
                .build(),
        );
        pipeline
            .set_state(gst::State::Playing)
            .expect("a viewer plays");
        Viewer {
            pipeline,
            frames,
            first,
        }
    }

    pub fn frames(&self) -> u64 {
        self.frames.load(Ordering::Relaxed)
    }

    /// From the start to the first frame, if one came.
    pub fn joined_in(&self) -> Option<Duration> {
        (self.frames() > 0).then(|| Duration::from_micros(self.first.load(Ordering::Relaxed)))
    }
}

impl Drop for Viewer {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

pub fn free_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Whether something listens on `port` within `within`.
pub fn listening(port: u16, within: Duration) -> bool {
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if start.elapsed() > within {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    true
}

pub fn wait_listening(port: u16) {
    assert!(
        listening(port, Duration::from_secs(20)),
        "nothing on port {port}"
    );
}

/// The share of a core process `pid` used over `window`.
pub fn cpu_share(pid: u32, window: Duration) -> f64 {
    let before = cpu_time(pid);
    let began = Instant::now();
    std::thread::sleep(window);
    (cpu_time(pid) - before).as_secs_f64() / began.elapsed().as_secs_f64()
}

/// The publishers' audio.
pub const AUDIO: &str = "audiotestsrc is-live=true ! opusenc";

/// What one step measured.
struct Step {
    gateway_share: f64,
    self_share: f64,
    /// Frames per second of the slowest viewer, and of the median one.
    min_fps: f64,
    median_fps: f64,
}

/// Counts every viewer's frames and both processes' CPU over `window`.
fn measure(viewers: &[Viewer], gateway: &Proc, window: Duration) -> Step {
    let before: Vec<u64> = viewers.iter().map(Viewer::frames).collect();
    let (cpu_gateway, cpu_self) = (cpu_time(gateway.pid()), cpu_time(std::process::id()));
    let began = Instant::now();
    std::thread::sleep(window);
    let took = began.elapsed().as_secs_f64();
    let mut fps: Vec<f64> = viewers
        .iter()
        .zip(&before)
        .map(|(v, b)| (v.frames() - b) as f64 / took)
        .collect();
    fps.sort_by(f64::total_cmp);
    Step {
        gateway_share: (cpu_time(gateway.pid()) - cpu_gateway).as_secs_f64() / took,
        self_share: (cpu_time(std::process::id()) - cpu_self).as_secs_f64() / took,
        min_fps: fps.first().copied().unwrap_or(0.0),
        median_fps: fps.get(fps.len() / 2).copied().unwrap_or(0.0),
    }
}

/// The median and the longest time to a first frame of `viewers`.
fn join_times(viewers: &[Viewer]) -> (f64, f64) {
    let mut times: Vec<f64> = viewers
        .iter()
        .map(|v| v.joined_in().map_or(f64::INFINITY, |d| d.as_secs_f64()))
        .collect();
    times.sort_by(f64::total_cmp);
    (
        times.get(times.len() / 2).copied().unwrap_or(0.0),
        times.last().copied().unwrap_or(0.0),
    )
}

/// The columns `step` prints.
pub const HEADER: &str =
    "viewers  gateway CPU  per viewer  this process  min fps  median fps  join median/max s";

/// Once every viewer plays (or 30 s passed), measures `gateway` with
/// `viewers` (those from `joined` on are new) and prints a line; what a
/// viewer adds is over `base`, the gateway's share of a core without any.
/// Whether no viewer lost frames.
pub fn step(
    viewers: &[Viewer],
    joined: usize,
    gateway: &Proc,
    base: f64,
    window: Duration,
) -> bool {
    let start = Instant::now();
    while viewers.iter().any(|v| v.frames() < 10) && start.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(100));
    }
    // A settled second.
    std::thread::sleep(Duration::from_secs(1));
    let (join_median, join_max) = join_times(&viewers[joined..]);
    let step = measure(viewers, gateway, window);
    println!(
        "{:>7}  {:>10.0}%  {:>7.2} ms/s  {:>11.0}%  {:>7.1}  {:>10.1}  {:>8.2}/{:.2}",
        viewers.len(),
        step.gateway_share * 100.0,
        (step.gateway_share - base).max(0.0) * 1000.0 / viewers.len() as f64,
        step.self_share * 100.0,
        step.min_fps,
        step.median_fps,
        join_median,
        join_max,
    );
    if step.min_fps < FPS * 0.95 {
        println!(
            "frame loss at {} viewers: the slowest received {:.1} of {FPS} frames/s",
            viewers.len(),
            step.min_fps
        );
        return false;
    }
    true
}

/// `moq-gateway` beside the running example (`target/release/examples/..`).
pub fn gateway_next_to_this() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.join("moq-gateway")))
        .unwrap_or_else(|| PathBuf::from("moq-gateway"))
}

/// `--steps 10,20,40`.
pub fn steps(text: &str) -> Option<Vec<usize>> {
    text.split(',').map(|n| n.parse().ok()).collect()
}
