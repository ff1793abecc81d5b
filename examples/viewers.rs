// SPDX-License-Identifier: MIT OR Apache-2.0

//! How many WHEP viewers of one 640x360 H.264 broadcast `moq-gateway
//! serve` carries, and what each costs it, every part a process of its own
//! as a user runs it:
//!
//! - a MoQ relay (`moq-gateway relay`);
//! - the gateway (`moq-gateway serve --relay ...`, `--egress-per-viewer`
//!   with `--per-viewer`, to compare);
//! - a WHIP publisher (`moq-gateway` running a pipeline: videotestsrc
//!   640x360 at 30 fps, x264enc 800 kbit/s, Opus, whipclientsink);
//! - this process: the viewers, whepclientsrc each, taking the encoded
//!   H.264 and Opus without decoding them, so that a viewer costs the
//!   gateway what a browser would and costs this process little.
//!
//! Viewers are added in steps; after each, once all of them play, the
//! gateway's CPU time (from /proc) and every viewer's frames are counted
//! over a window. A step where a viewer received under 95 % of the
//! publisher's frames (or never played) is frame loss: the run stops
//! there. Everything shares this machine's cores, the viewers' process
//! included, which the printed CPU figures show.
//!
//! Run: `cargo build --release && cargo run --release --example viewers --
//! [--per-viewer] [--steps 10,20,40] [--seconds S]`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use gst::prelude::*;

const USAGE: &str =
    "usage: viewers [--gateway PATH] [--per-viewer] [--steps N,N,...] [--seconds S]";
const FPS: f64 = 30.0;

/// A child process killed when dropped.
struct Proc(Child);

impl Proc {
    fn spawn(program: &Path, args: &[&str]) -> Proc {
        let child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
        Proc(child)
    }

    fn pid(&self) -> u32 {
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
fn cpu_time(pid: u32) -> Duration {
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
struct Viewer {
    pipeline: gst::Pipeline,
    frames: Arc<AtomicU64>,
}

impl Viewer {
    fn start(endpoint: &str) -> Viewer {
        let description = format!(
            "whepclientsrc name=wc stun-server=\"\" signaller::whep-endpoint={endpoint} \
             wc.video_0 ! video/x-h264,alignment=au ! appsink name=video sync=false async=false \
             wc.audio_0 ! audio/x-opus ! fakesink sync=false async=false"
        );
        let pipeline = moq_gateway::launch::build_from_str(&description)
            .unwrap_or_else(|e| panic!("a viewer: {e:#}"));
        let frames = Arc::new(AtomicU64::new(0));
        let seen = frames.clone();
        let sink = pipeline
            .by_name("video")
            .and_then(|e| e.downcast::<gst_app::AppSink>().ok())
            .expect("an appsink");
        sink.set_callbacks(
            gst_app::AppSinkCallbacks::builder()
                .new_sample(move |sink| {
                    sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                    seen.fetch_add(1, Ordering::Relaxed);
                    Ok(gst::FlowSuccess::Ok)
                })
                .build(),
        );
        pipeline
            .set_state(gst::State::Playing)
            .expect("a viewer plays");
        Viewer { pipeline, frames }
    }

    fn frames(&self) -> u64 {
        self.frames.load(Ordering::Relaxed)
    }
}

impl Drop for Viewer {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

struct Args {
    gateway: PathBuf,
    per_viewer: bool,
    steps: Vec<usize>,
    seconds: u64,
}

fn args() -> Args {
    let mut args = Args {
        gateway: std::env::current_exe()
            .ok()
            .and_then(|exe| Some(exe.parent()?.parent()?.join("moq-gateway")))
            .unwrap_or_else(|| PathBuf::from("moq-gateway")),
        per_viewer: false,
        steps: vec![10, 20, 30, 40, 50, 60, 80, 100],
        seconds: 10,
    };
    let mut words = std::env::args().skip(1);
    while let Some(word) = words.next() {
        let mut value = || words.next().unwrap_or_else(|| panic!("{USAGE}"));
        match word.as_str() {
            "--gateway" => args.gateway = PathBuf::from(value()),
            "--per-viewer" => args.per_viewer = true,
            "--steps" => {
                args.steps = value()
                    .split(',')
                    .map(|n| n.parse().unwrap_or_else(|_| panic!("{USAGE}")))
                    .collect();
            }
            "--seconds" => args.seconds = value().parse().unwrap_or_else(|_| panic!("{USAGE}")),
            _ => panic!("{USAGE}"),
        }
    }
    args
}

fn free_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn wait_listening(port: u16) {
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "nothing on port {port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The share of a core process `pid` used over `window`.
fn cpu_share(pid: u32, window: Duration) -> f64 {
    let before = cpu_time(pid);
    let began = Instant::now();
    std::thread::sleep(window);
    (cpu_time(pid) - before).as_secs_f64() / began.elapsed().as_secs_f64()
}

/// Waits until the gateway says the publisher is on (its /healthz).
fn wait_publishing(http: &str) {
    use std::io::{Read, Write};
    let start = Instant::now();
    loop {
        let mut answer = String::new();
        if let Ok(mut stream) = std::net::TcpStream::connect(http) {
            let _ = write!(
                stream,
                "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            );
            let _ = stream.read_to_string(&mut answer);
        }
        if answer.contains("ok: 1 publishers") {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the publisher never came: {answer}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn main() {
    let args = args();
    moq_gateway::init().expect("GStreamer and the plugins");
    let relay_port = free_port();
    let http_port = free_port();
    let relay_addr = format!("127.0.0.1:{relay_port}");
    let relay_url = format!("http://{relay_addr}/anon");
    let http = format!("127.0.0.1:{http_port}");
    let _relay = Proc::spawn(&args.gateway, &["relay", "--listen", &relay_addr]);
    wait_listening(relay_port);
    let mut serve_args = vec!["serve", "--listen", &http, "--relay", &relay_url];
    if args.per_viewer {
        serve_args.push("--egress-per-viewer");
    }
    let gateway = Proc::spawn(&args.gateway, &serve_args);
    wait_listening(http_port);
    let endpoint = format!("signaller::whip-endpoint=http://{http}/whip/live");
    let _publisher = Proc::spawn(
        &args.gateway,
        &[
            "videotestsrc",
            "is-live=true",
            "pattern=ball",
            "!",
            "video/x-raw,width=640,height=360,framerate=30/1",
            "!",
            "x264enc",
            "tune=zerolatency",
            "speed-preset=ultrafast",
            "bitrate=800",
            "key-int-max=60",
            "!",
            "video/x-h264,profile=constrained-baseline",
            "!",
            "ws.",
            "audiotestsrc",
            "is-live=true",
            "!",
            "opusenc",
            "!",
            "ws.",
            "whipclientsink",
            "name=ws",
            "stun-server=\"\"",
            "congestion-control=disabled",
            "video-caps=video/x-h264",
            "audio-caps=audio/x-opus",
            &endpoint,
        ],
    );
    wait_publishing(&http);
    let window = Duration::from_secs(args.seconds);
    // What the gateway spends with no viewer: the publisher's ingest.
    std::thread::sleep(Duration::from_secs(2));
    let base = cpu_share(gateway.pid(), window);
    let whep = format!("http://{http}/whep/live");
    let mode = if args.per_viewer {
        "a pipeline per viewer (--egress-per-viewer)"
    } else {
        "viewers sharing one egress"
    };
    println!("moq-gateway serve, {mode}; one 640x360 30 fps H.264 broadcast over WHIP");
    println!(
        "gateway CPU with the publisher alone: {:.1}% of a core; per viewer is what each adds",
        base * 100.0
    );
    println!("viewers  gateway CPU  per viewer  this process  min fps  median fps");
    let mut viewers: Vec<Viewer> = Vec::new();
    for &step in &args.steps {
        while viewers.len() < step {
            viewers.push(Viewer::start(&whep));
            // As viewers arrive, not all in the same millisecond.
            std::thread::sleep(Duration::from_millis(20));
        }
        // Until every viewer plays (bounded), then a settled second.
        let start = Instant::now();
        while viewers.iter().any(|v| v.frames() < 10) && start.elapsed() < Duration::from_secs(30) {
            std::thread::sleep(Duration::from_millis(100));
        }
        std::thread::sleep(Duration::from_secs(1));
        let before: Vec<u64> = viewers.iter().map(Viewer::frames).collect();
        let (cpu_gateway, cpu_self) = (cpu_time(gateway.pid()), cpu_time(std::process::id()));
        let began = Instant::now();
        std::thread::sleep(window);
        let took = began.elapsed().as_secs_f64();
        let gateway_share = (cpu_time(gateway.pid()) - cpu_gateway).as_secs_f64() / took;
        let self_share = (cpu_time(std::process::id()) - cpu_self).as_secs_f64() / took;
        let mut fps: Vec<f64> = viewers
            .iter()
            .zip(&before)
            .map(|(v, b)| (v.frames() - b) as f64 / took)
            .collect();
        fps.sort_by(f64::total_cmp);
        let min = fps.first().copied().unwrap_or(0.0);
        let median = fps.get(fps.len() / 2).copied().unwrap_or(0.0);
        println!(
            "{:>7}  {:>10.0}%  {:>7.2} ms/s  {:>11.0}%  {:>7.1}  {:>10.1}",
            viewers.len(),
            gateway_share * 100.0,
            (gateway_share - base).max(0.0) * 1000.0 / viewers.len() as f64,
            self_share * 100.0,
            min,
            median,
        );
        if min < FPS * 0.95 {
            println!(
                "frame loss at {} viewers: the slowest received {min:.1} of {FPS} frames/s",
                viewers.len()
            );
            return;
        }
    }
    println!("no frame loss up to {} viewers", viewers.len());
}
