// SPDX-License-Identifier: MIT OR Apache-2.0

//! Benchmark: added latency and CPU cost of moqsink and moqsrc.
//!
//! 720p30 H.264 at about 3 Mbit/s goes appsrc -> moqsink -> moq-relay (in this
//! process, loopback) -> moqsrc -> fakesink. The publisher and the subscriber
//! run in child processes of their own so each side's CPU time is measured
//! alone; the video is encoded before publishing starts, so the encoder's CPU
//! is not counted. Prints:
//!
//! * added latency: wall clock from a frame entering moqsink to it leaving
//!   moqsrc, p50 / p99 / max;
//! * CPU seconds per 1000 frames for the sink side and the source side.
//!
//! Run: `cargo run --release -p gst-plugin-moq --example latency [-- FRAMES]`

// The examples' shared children; this one uses only the CPU clock.
#[allow(dead_code)]
mod common;
// Shared with the tests, which use more of it.
#[allow(dead_code)]
#[path = "../tests/common/relay.rs"]
mod relay;

use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::process_cpu;
use gst::prelude::*;

const WIDTH: u32 = 1280;
const HEIGHT: u32 = 720;
const FPS: u64 = 30;

fn wall_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos()
}

fn init() {
    gst::init().expect("GStreamer");
    gstmoq::plugin_register_static().expect("moq plugin");
}

/// Encode `frames` frames of 720p30 H.264 up front.
fn encode(frames: u64) -> (gst::Caps, Vec<gst::Buffer>) {
    let pipeline = gst::parse::launch(&format!(
        "videotestsrc num-buffers={frames} pattern=ball ! video/x-raw,format=I420,width={WIDTH},height={HEIGHT},framerate={FPS}/1 \
         ! x264enc tune=zerolatency speed-preset=ultrafast bitrate=3000 key-int-max=60 ! h264parse \
         ! video/x-h264,stream-format=byte-stream,alignment=au ! appsink name=out sync=false"
    ))
    .expect("encoder pipeline")
    .downcast::<gst::Pipeline>()
    .expect("a pipeline");
    let sink = pipeline
        .by_name("out")
        .expect("appsink")
        .downcast::<gst_app::AppSink>()
        .expect("an appsink");
    pipeline.set_state(gst::State::Playing).expect("encoding");
    let mut buffers = Vec::new();
    let mut caps = None;
    while let Ok(sample) = sink.pull_sample() {
        caps = caps.or_else(|| sample.caps().map(|c| c.to_owned()));
        if let Some(buffer) = sample.buffer_owned() {
            buffers.push(buffer);
        }
    }
    pipeline.set_state(gst::State::Null).expect("stopped");
    (caps.expect("encoded caps"), buffers)
}

/// Child: publish the encoded frames in real time; print `ts_us wall_ns` per
/// frame as it enters moqsink, then `cpu_ns frames`.
fn publish(url: &str, frames: u64) {
    init();
    let (caps, buffers) = encode(frames);
    let pipeline = gst::parse::launch(&format!(
        "appsrc name=src is-live=true format=time ! moqsink name=sink url={url} broadcast=bench tls-disable-verify=true"
    ))
    .expect("publisher")
    .downcast::<gst::Pipeline>()
    .expect("a pipeline");
    let src = pipeline
        .by_name("src")
        .expect("appsrc")
        .downcast::<gst_app::AppSrc>()
        .expect("an appsrc");
    src.set_caps(Some(&caps));
    let entries = std::sync::Arc::new(std::sync::Mutex::new(Vec::with_capacity(buffers.len())));
    let probe_entries = entries.clone();
    let sink_pad = pipeline.by_name("sink").expect("moqsink").sink_pads()[0].clone();
    sink_pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
        if let Some(buffer) = info.buffer() {
            // The segment starts at 0, so the PTS is the running time.
            let ts = buffer.pts().map(|p| p.useconds()).unwrap_or(0);
            probe_entries.lock().unwrap().push((ts, wall_ns()));
        }
        gst::PadProbeReturn::Ok
    });
    pipeline.set_state(gst::State::Playing).expect("publishing");
    let clock = pipeline.clock().expect("a clock");
    let base = pipeline.base_time().expect("a base time");
    let push = |buffer: gst::Buffer| {
        let mut buffer = buffer;
        {
            let b = buffer.make_mut();
            let now = clock.time() - base;
            b.set_pts(now);
            b.set_dts(now);
        }
        src.push_buffer(buffer).is_ok()
    };
    // The first frame carries the caps, which announce the broadcast; the rest
    // waits until the parent says the subscriber has its pad, so frames are
    // not measured while the subscriber is still finding the broadcast.
    let mut buffers = buffers.into_iter();
    if let Some(first) = buffers.next() {
        push(first);
    }
    let mut go = String::new();
    let _ = std::io::stdin().read_line(&mut go);
    let cpu_start = process_cpu();
    let start = Instant::now();
    for (i, buffer) in buffers.enumerate() {
        // Real-time pacing of a live source, not a wait for an event.
        let due = start + Duration::from_nanos(i as u64 * 1_000_000_000 / FPS);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        if !push(buffer) {
            break;
        }
    }
    let _ = src.end_of_stream();
    let bus = pipeline.bus().expect("bus");
    let _ = bus.timed_pop_filtered(
        gst::ClockTime::from_seconds(5),
        &[gst::MessageType::Eos, gst::MessageType::Error],
    );
    let cpu = process_cpu() - cpu_start;
    pipeline.set_state(gst::State::Null).expect("stopped");
    let entries = entries.lock().unwrap();
    let mut out = std::io::stdout().lock();
    // The first frame waited for the subscriber: leave it out.
    let entries = &entries[entries.len().min(1)..];
    for (ts, wall) in entries.iter() {
        let _ = writeln!(out, "{ts} {wall}");
    }
    let _ = writeln!(out, "cpu {} {}", cpu.as_nanos(), entries.len());
}

/// Child: play the broadcast into fakesink; print `ts_us wall_ns` per frame as
/// it leaves moqsrc, then `cpu_ns frames`.
fn subscribe(url: &str) {
    init();
    let pipeline = gst::Pipeline::new();
    let src = gst::ElementFactory::make("moqsrc")
        .property("url", url)
        .property("broadcast", "bench")
        .property("tls-disable-verify", true)
        .build()
        .expect("moqsrc");
    pipeline.add(&src).expect("added");
    let exits = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let pad_exits = exits.clone();
    let cpu_start = std::sync::Arc::new(std::sync::OnceLock::new());
    let first_frame_cpu = cpu_start.clone();
    let weak = pipeline.downgrade();
    let announced = std::sync::Once::new();
    src.connect_pad_added(move |_, pad| {
        let Some(pipeline) = weak.upgrade() else {
            return;
        };
        // Tell the parent the broadcast was found: the publisher goes on.
        announced.call_once(|| {
            println!("pad");
            let _ = std::io::stdout().flush();
        });
        let exits = pad_exits.clone();
        let cpu_start = cpu_start.clone();
        pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            let wall = wall_ns();
            // Count CPU from the first frame on: connecting is not per-frame work.
            cpu_start.get_or_init(process_cpu);
            if let Some(meta) = info
                .buffer()
                .and_then(|b| b.meta::<gst::ReferenceTimestampMeta>())
            {
                exits
                    .lock()
                    .unwrap()
                    .push((meta.timestamp().useconds(), wall));
            }
            gst::PadProbeReturn::Ok
        });
        let sink = gst::ElementFactory::make("fakesink")
            .property("sync", false)
            .build()
            .expect("fakesink");
        pipeline.add(&sink).expect("added");
        sink.sync_state_with_parent().expect("synced");
        pad.link(&sink.static_pad("sink").expect("sink pad"))
            .expect("linked");
    });
    pipeline
        .set_state(gst::State::Playing)
        .expect("subscribing");
    // Signal readiness to the parent: the publisher starts now.
    println!("ready");
    let bus = pipeline.bus().expect("bus");
    let _ = bus.timed_pop_filtered(
        gst::ClockTime::from_seconds(300),
        &[gst::MessageType::Eos, gst::MessageType::Error],
    );
    let cpu = process_cpu().saturating_sub(first_frame_cpu.get().copied().unwrap_or_default());
    pipeline.set_state(gst::State::Null).expect("stopped");
    let exits = exits.lock().unwrap();
    let mut out = std::io::stdout().lock();
    for (ts, wall) in exits.iter() {
        let _ = writeln!(out, "{ts} {wall}");
    }
    let _ = writeln!(out, "cpu {} {}", cpu.as_nanos(), exits.len());
}

struct Report {
    frames: HashMap<u64, u128>,
    cpu: Duration,
    count: u64,
}

fn read_report(output: &[u8]) -> Report {
    let mut report = Report {
        frames: HashMap::new(),
        cpu: Duration::ZERO,
        count: 0,
    };
    for line in output.lines().map_while(Result::ok) {
        let parts: Vec<&str> = line.split_whitespace().collect();
        match parts.as_slice() {
            ["cpu", ns, n] => {
                report.cpu = Duration::from_nanos(ns.parse().unwrap_or(0));
                report.count = n.parse().unwrap_or(0);
            }
            [ts, wall] => {
                if let (Ok(ts), Ok(wall)) = (ts.parse(), wall.parse()) {
                    report.frames.insert(ts, wall);
                }
            }
            _ => {}
        }
    }
    report
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("publish") => return publish(&args[2], args[3].parse().expect("frames")),
        Some("subscribe") => return subscribe(&args[2]),
        _ => {}
    }
    let frames: u64 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(600);
    let (addr, _) = relay::spawn().expect("relay");
    let url = format!("https://{addr}/anon");
    let exe = std::env::current_exe().expect("own path");

    let mut subscriber = Command::new(&exe)
        .args(["subscribe", &url])
        .stdout(Stdio::piped())
        .spawn()
        .expect("subscriber process");
    let mut sub_out = std::io::BufReader::new(subscriber.stdout.take().expect("stdout"));
    let mut ready = String::new();
    sub_out.read_line(&mut ready).expect("subscriber ready");
    let mut publisher = Command::new(&exe)
        .args(["publish", &url, &frames.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("publisher process");
    let mut pad = String::new();
    sub_out
        .read_line(&mut pad)
        .expect("subscriber found the broadcast");
    let mut go = publisher.stdin.take().expect("publisher stdin");
    writeln!(go, "go").expect("publisher goes on");
    drop(go);
    let pub_output = publisher.wait_with_output().expect("publisher output");
    let mut rest = Vec::new();
    std::io::Read::read_to_end(&mut sub_out, &mut rest).expect("subscriber output");
    let _ = subscriber.wait();

    let sent = read_report(&pub_output.stdout);
    let received = read_report(&rest);
    let mut latencies: Vec<f64> = received
        .frames
        .iter()
        .filter_map(|(ts, out)| {
            sent.frames
                .get(ts)
                .map(|inp| (*out as f64 - *inp as f64) / 1e6)
        })
        .collect();
    latencies.sort_by(f64::total_cmp);
    let pct = |q: f64| latencies[((latencies.len() - 1) as f64 * q).round() as usize];
    println!("720p30 H.264 ~3 Mbit/s, {frames} frames, loopback relay in-process");
    println!(
        "frames: {} entered moqsink, {} left moqsrc, {} matched",
        sent.count,
        received.count,
        latencies.len()
    );
    if latencies.is_empty() {
        println!("no frame arrived");
        std::process::exit(1);
    }
    println!(
        "added latency moqsink -> relay -> moqsrc: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        pct(0.5),
        pct(0.99),
        latencies[latencies.len() - 1]
    );
    let per_1000 = |cpu: Duration, n: u64| cpu.as_secs_f64() * 1000.0 / n.max(1) as f64;
    println!(
        "CPU per 1000 frames: sink side {:.3} s, source side {:.3} s",
        per_1000(sent.cpu, sent.count),
        per_1000(received.cpu, received.count)
    );
}
