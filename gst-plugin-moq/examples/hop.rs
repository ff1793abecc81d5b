// SPDX-License-Identifier: MIT OR Apache-2.0

//! Benchmark: the element hop as a user runs it. Three processes, as in a
//! deployment:
//!
//! * a relay (the `moq-relay` library in a process of its own; `--relay URL`
//!   uses any other relay instead, e.g. a `moq-relay` binary);
//! * a publisher: `videotestsrc ! x264enc` (720p30, ~3 Mbit/s, a keyframe
//!   of ~90 KB every 2 s and deltas of ~10 KB: a moving zone plate, which
//!   x264 compresses like camera video, unlike the near-empty `ball`)
//!   `! moqsink`, the encoder live in that process;
//! * a subscriber: `moqsrc ! fakesink`.
//!
//! A frame is recognised on both sides by a hash of its last bytes (its
//! entropy-coded end, which no framing changes), and its latency is the wall
//! clock between entering moqsink and leaving moqsrc. Prints p50/p90/p99/max
//! over every frame and over keyframes alone, and the CPU time per 1000
//! frames of each process (the publisher's includes the encoder).
//!
//! `--plugin-path DIR` runs the publisher and subscriber with the `moqsink`
//! and `moqsrc` found in DIR instead of this crate's (e.g. moq-gst's, for a
//! comparison in the same run); `--relay-cc loss|delay` sets the relay's
//! QUIC congestion control (moq-tokio's default is delay, BBRv3).
//!
//! Run: `cargo run --release -p gst-plugin-moq --example hop [-- --seconds 20]`

mod common;

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Worker, frame_key, process_cpu, relay, wall_ns};
use gst::prelude::*;

/// Frames of the first seconds are left out: the subscriber joins mid-group
/// and gets the group's start in a burst (by design, to decode).
const WARMUP_FRAMES: usize = 90;

const USAGE: &str =
    "usage: hop [--seconds N] [--relay URL] [--plugin-path DIR] [--relay-cc loss|delay]";

/// GStreamer, and this crate's elements unless another plugin is asked for.
fn init() {
    gst::init().expect("GStreamer");
    if std::env::var_os("HOP_OTHER_PLUGIN").is_none() {
        gstmoq::plugin_register_static().expect("moq plugin");
    }
}

/// One line per frame: `key wall_ns size keyframe`, then `cpu NS FRAMES`.
type Records = Arc<Mutex<Vec<(u64, u128, usize, bool)>>>;

fn record_probe(
    records: Records,
) -> impl Fn(&gst::Pad, &mut gst::PadProbeInfo) -> gst::PadProbeReturn {
    move |_, info| {
        let wall = wall_ns();
        if let Some(buffer) = info.buffer()
            && let Some(key) = frame_key(buffer)
        {
            let keyframe = !buffer.flags().contains(gst::BufferFlags::DELTA_UNIT);
            records
                .lock()
                .unwrap()
                .push((key, wall, buffer.size(), keyframe));
        }
        gst::PadProbeReturn::Ok
    }
}

fn print_records(records: &Records, cpu: Duration) {
    let records = records.lock().unwrap();
    let mut out = std::io::stdout().lock();
    for (key, wall, size, keyframe) in records.iter() {
        let _ = writeln!(out, "{key} {wall} {size} {}", u8::from(*keyframe));
    }
    let _ = writeln!(out, "cpu {} {}", cpu.as_nanos(), records.len());
}

/// Child: encode live and publish for `seconds`; prints the frames as they
/// entered moqsink.
fn publish(url: &str, seconds: u64) {
    init();
    let pipeline = gst::parse::launch(&format!(
        "videotestsrc is-live=true pattern=zone-plate kx2=20 ky2=20 kt=1 num-buffers={frames} \
         ! video/x-raw,format=I420,width=1280,height=720,framerate=30/1 \
         ! x264enc tune=zerolatency speed-preset=ultrafast bitrate=3000 key-int-max=60 \
         ! h264parse config-interval=-1 ! video/x-h264,stream-format=byte-stream,alignment=au \
         ! moqsink name=sink url={url} broadcast=bench tls-disable-verify=true",
        frames = seconds * 30
    ))
    .expect("publisher pipeline")
    .downcast::<gst::Pipeline>()
    .expect("a pipeline");
    let records: Records = Arc::default();
    let sink = pipeline.by_name("sink").expect("moqsink");
    let pad = sink
        .sink_pads()
        .into_iter()
        .next()
        .expect("a linked sink pad");
    pad.add_probe(gst::PadProbeType::BUFFER, record_probe(records.clone()));
    let cpu_start = process_cpu();
    pipeline.set_state(gst::State::Playing).expect("publishing");
    let bus = pipeline.bus().expect("bus");
    let _ = bus.timed_pop_filtered(
        gst::ClockTime::from_seconds(seconds + 30),
        &[gst::MessageType::Eos, gst::MessageType::Error],
    );
    let cpu = process_cpu() - cpu_start;
    pipeline.set_state(gst::State::Null).expect("stopped");
    print_records(&records, cpu);
}

/// Child: play the broadcast until stdin says stop; prints the frames as
/// they left moqsrc.
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
    let records: Records = Arc::default();
    let cpu_start = Arc::new(std::sync::OnceLock::new());
    let first = cpu_start.clone();
    let weak = pipeline.downgrade();
    let probe_records = records.clone();
    src.connect_pad_added(move |_, pad| {
        let Some(pipeline) = weak.upgrade() else {
            return;
        };
        let records = probe_records.clone();
        let cpu_start = first.clone();
        let probe = record_probe(records);
        pad.add_probe(gst::PadProbeType::BUFFER, move |pad, info| {
            // CPU from the first frame on: connecting is not per-frame work.
            cpu_start.get_or_init(process_cpu);
            probe(pad, info)
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
    println!("ready");
    let _ = std::io::stdout().flush();
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
    let cpu = process_cpu().saturating_sub(cpu_start.get().copied().unwrap_or_default());
    pipeline.set_state(gst::State::Null).expect("stopped");
    print_records(&records, cpu);
}

struct Report {
    frames: Vec<(u64, u128, usize, bool)>,
    cpu: Duration,
    count: u64,
}

fn read_report(lines: impl Iterator<Item = String>) -> Report {
    let mut report = Report {
        frames: Vec::new(),
        cpu: Duration::ZERO,
        count: 0,
    };
    for line in lines {
        let parts: Vec<&str> = line.split_whitespace().collect();
        match parts.as_slice() {
            ["cpu", ns, n] => {
                report.cpu = Duration::from_nanos(ns.parse().unwrap_or(0));
                report.count = n.parse().unwrap_or(0);
            }
            [key, wall, size, keyframe] => {
                if let (Ok(key), Ok(wall), Ok(size)) = (key.parse(), wall.parse(), size.parse()) {
                    report.frames.push((key, wall, size, *keyframe == "1"));
                }
            }
            _ => {}
        }
    }
    report
}

/// Stops `worker` and reads its report.
fn finish(worker: Worker) -> Report {
    read_report(worker.finish_lines().into_iter())
}

fn percentiles(mut values: Vec<f64>) -> String {
    if values.is_empty() {
        return "none".into();
    }
    values.sort_by(f64::total_cmp);
    let at = |q: f64| values[((values.len() - 1) as f64 * q).round() as usize];
    format!(
        "p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({} frames)",
        at(0.5),
        at(0.9),
        at(0.99),
        values[values.len() - 1],
        values.len()
    )
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("relay") => return relay(args.get(2).map_or("", String::as_str)),
        Some("publish") => return publish(&args[2], args[3].parse().expect("seconds")),
        Some("subscribe") => return subscribe(&args[2]),
        _ => {}
    }
    let mut seconds = 20u64;
    let mut external = None;
    let mut plugin_path = None;
    let mut congestion = String::new();
    let mut it = args.iter().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().cloned().expect("a value after the option");
        match arg.as_str() {
            "--seconds" => seconds = value().parse().expect("seconds"),
            "--relay" => external = Some(value()),
            "--plugin-path" => plugin_path = Some(value()),
            "--relay-cc" => congestion = value(),
            "--help" | "-h" => {
                println!("{USAGE}");
                return;
            }
            other => {
                eprintln!("unknown option {other}\n{USAGE}");
                std::process::exit(2);
            }
        }
    }

    let mut relay = None;
    let url = match external {
        Some(url) => url,
        None => {
            let mut worker = Worker::spawn(&["relay", &congestion], None);
            let line = worker.line();
            let addr = line
                .strip_prefix("relay ")
                .expect("the relay's address")
                .to_string();
            relay = Some(worker);
            format!("https://{addr}/anon")
        }
    };
    let mut subscriber = Worker::spawn(&["subscribe", &url], plugin_path.as_deref());
    assert_eq!(subscriber.line(), "ready");
    let publisher = Worker::spawn(
        &["publish", &url, &seconds.to_string()],
        plugin_path.as_deref(),
    );
    let sent = finish(publisher);
    // Let the last frames arrive.
    std::thread::sleep(Duration::from_millis(500));
    let received = finish(subscriber);
    let relay_cpu = relay.map(|r| finish(r).cpu);

    let entered: HashMap<u64, (u128, bool)> = sent
        .frames
        .iter()
        .map(|(key, wall, _, keyframe)| (*key, (*wall, *keyframe)))
        .collect();
    let mut all = Vec::new();
    let mut keyframes = Vec::new();
    let dump = std::env::var("HOP_DUMP").ok();
    let mut dumped = String::new();
    for (key, out, size, _) in received.frames.iter().skip(WARMUP_FRAMES) {
        if let Some((inp, keyframe)) = entered.get(key) {
            let ms = (*out as f64 - *inp as f64) / 1e6;
            if dump.is_some() {
                dumped.push_str(&format!("{inp} {ms:.3} {size} {}\n", u8::from(*keyframe)));
            }
            all.push(ms);
            if *keyframe {
                keyframes.push(ms);
            }
        }
    }
    if let Some(path) = dump {
        std::fs::write(path, dumped).expect("the dump is written");
    }
    let key_sizes: Vec<usize> = sent.frames.iter().filter(|f| f.3).map(|f| f.2).collect();
    println!(
        "720p30 H.264 ~3 Mbit/s, {seconds} s; {} ({}); relay: {}",
        if plugin_path.is_some() {
            "moqsink/moqsrc from --plugin-path"
        } else {
            "gst-plugin-moq"
        },
        plugin_path.as_deref().unwrap_or("this build"),
        if relay_cpu.is_some() {
            format!(
                "moq-relay library in its own process, congestion control {}",
                if congestion.is_empty() {
                    "default"
                } else {
                    &congestion
                }
            )
        } else {
            url.clone()
        }
    );
    println!(
        "frames: {} entered moqsink, {} left moqsrc, {} matched after the first {WARMUP_FRAMES}; \
         keyframes {} of ~{} KiB",
        sent.count,
        received.count,
        all.len(),
        key_sizes.len(),
        key_sizes.iter().sum::<usize>() / key_sizes.len().max(1) / 1024
    );
    println!(
        "latency moqsink -> relay -> moqsrc: {}",
        percentiles(all.clone())
    );
    println!("  keyframes only: {}", percentiles(keyframes));
    let per_1000 = |cpu: Duration, n: u64| cpu.as_secs_f64() * 1000.0 / n.max(1) as f64;
    println!(
        "CPU s per 1000 frames: subscriber {:.3}, publisher (with encoder) {:.3}{}",
        per_1000(received.cpu, received.count),
        per_1000(sent.cpu, sent.count),
        relay_cpu
            .map(|cpu| format!(", relay {:.3}", per_1000(cpu, sent.count)))
            .unwrap_or_default()
    );
    if all.is_empty() {
        std::process::exit(1);
    }
}
