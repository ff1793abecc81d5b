// SPDX-License-Identifier: MIT OR Apache-2.0

//! Benchmark: what `on-demand` saves a publisher nobody watches, and what a
//! viewer's first picture costs. Three processes, as in a deployment:
//!
//! * a relay (the `moq-relay` library in a process of its own);
//! * a publisher: `videotestsrc ! x264enc` (720p30, ~3 Mbit/s, a keyframe
//!   every 2 s) and `audiotestsrc ! opusenc` into `moqsink`, the encoders
//!   live in that process;
//! * later, a subscriber: `moqsrc ! fakesink`.
//!
//! For each publisher mode the publisher runs alone for `--idle` seconds,
//! then a subscriber starts. Printed per mode: during the idle spell, the
//! QUIC bytes the publisher sent (`bytes-sent` of moqsink's `stats`), the
//! frames it published and its CPU time per second (encoders included);
//! then the time from the subscriber's start to its first video frame out
//! of moqsrc, and that frame's age (wall clock between entering moqsink and
//! leaving moqsrc; a frame is recognised on both sides by a hash of its
//! last bytes).
//!
//! Modes: `always` (on-demand off), `on-demand`, and `on-demand+pause`: the
//! publisher acts as an application would on moqsink's `moq-demand`
//! messages, closing a `valve` before the video encoder while no one
//! subscribes and opening it when someone does.
//!
//! Run: `cargo run --release -p gst-plugin-moq --example ondemand [-- --idle 10]`

mod common;

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Worker, frame_key, process_cpu, relay, wall_ns};
use gst::prelude::*;

const USAGE: &str = "usage: ondemand [--idle SECONDS] [--rounds N]";
const MODES: [&str; 3] = ["always", "on-demand", "on-demand+pause"];

fn init() {
    gst::init().expect("GStreamer");
    gstmoq::plugin_register_static().expect("moq plugin");
}

/// Child: publish in `mode` until stdin closes. Answers `stats` with
/// `stats BYTES_SENT FRAMES CPU_NS` and `age KEY` with `entered WALL_NS`
/// (0 when the frame is unknown).
fn publish(url: &str, mode: &str) {
    init();
    let on_demand = mode != "always";
    let pipeline = gst::parse::launch(&format!(
        "videotestsrc is-live=true pattern=zone-plate kx2=20 ky2=20 kt=1 \
         ! video/x-raw,format=I420,width=1280,height=720,framerate=30/1 \
         ! valve name=valve drop=false \
         ! x264enc tune=zerolatency speed-preset=ultrafast bitrate=3000 key-int-max=60 \
         ! h264parse ! video/x-h264,stream-format=byte-stream,alignment=au \
         ! moqsink name=sink url={url} broadcast=ondemand tls-disable-verify=true \
           on-demand={on_demand} \
         audiotestsrc is-live=true samplesperbuffer=960 ! audioconvert ! opusenc ! sink.audio_0"
    ))
    .expect("publisher pipeline")
    .downcast::<gst::Pipeline>()
    .expect("a pipeline");
    let sink = pipeline.by_name("sink").expect("moqsink");
    let valve = pipeline.by_name("valve").expect("valve");
    if mode == "on-demand+pause" {
        // The application's part: encode only while the video is wanted.
        pipeline
            .bus()
            .expect("bus")
            .set_sync_handler(move |_, msg| {
                if let gst::MessageView::Element(e) = msg.view()
                    && let Some(s) = e.structure()
                    && s.name() == "moq-demand"
                    && s.get::<String>("pad")
                        .is_ok_and(|pad| pad.starts_with("video"))
                    && let Ok(subscribed) = s.get::<bool>("subscribed")
                {
                    valve.set_property("drop", !subscribed);
                }
                gst::BusSyncReply::Pass
            });
    }
    let entered: Arc<Mutex<HashMap<u64, u128>>> = Arc::default();
    let recorded = entered.clone();
    sink.static_pad("video_0")
        .or_else(|| {
            sink.sink_pads()
                .into_iter()
                .find(|p| p.name().starts_with("video"))
        })
        .expect("a video pad")
        .add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            let wall = wall_ns();
            if let Some(key) = info.buffer().and_then(|b| frame_key(b)) {
                recorded.lock().unwrap().insert(key, wall);
            }
            gst::PadProbeReturn::Ok
        });
    pipeline.set_state(gst::State::Playing).expect("publishing");
    println!("ready");
    let _ = std::io::stdout().flush();
    for line in std::io::stdin().lines().map_while(Result::ok) {
        let mut out = std::io::stdout().lock();
        match line.split_whitespace().collect::<Vec<_>>().as_slice() {
            ["stats"] => {
                let stats = sink.property::<gst::Structure>("stats");
                let _ = writeln!(
                    out,
                    "stats {} {} {}",
                    stats.get::<u64>("bytes-sent").unwrap_or(0),
                    stats.get::<u64>("frames").unwrap_or(0),
                    process_cpu().as_nanos()
                );
            }
            ["age", key] => {
                let key = key.parse::<u64>().unwrap_or(0);
                let wall = entered.lock().unwrap().get(&key).copied().unwrap_or(0);
                let _ = writeln!(out, "entered {wall}");
            }
            _ => {}
        }
        let _ = out.flush();
    }
    pipeline.set_state(gst::State::Null).expect("stopped");
}

/// Child: subscribe, print `first KEY WALL_NS ELAPSED_NS` for the first video
/// frame out of moqsrc, then play until stdin closes.
fn subscribe(url: &str) {
    init();
    let started = Instant::now();
    let pipeline = gst::Pipeline::new();
    let src = gst::ElementFactory::make("moqsrc")
        .property("url", url)
        .property("broadcast", "ondemand")
        .property("tls-disable-verify", true)
        .build()
        .expect("moqsrc");
    pipeline.add(&src).expect("added");
    let weak = pipeline.downgrade();
    src.connect_pad_added(move |_, pad| {
        let Some(pipeline) = weak.upgrade() else {
            return;
        };
        if pad.name().starts_with("video") {
            let printed = std::sync::Once::new();
            pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
                let wall = wall_ns();
                if let Some(key) = info.buffer().and_then(|b| frame_key(b)) {
                    printed.call_once(|| {
                        println!("first {key} {wall} {}", started.elapsed().as_nanos());
                        let _ = std::io::stdout().flush();
                    });
                }
                gst::PadProbeReturn::Ok
            });
        }
        let sink = gst::ElementFactory::make("fakesink")
            .property("sync", false)
            .build()
            .expect("fakesink");
        pipeline.add(&sink).expect("added");
        sink.sync_state_with_parent().expect("synced");
        let _ = pad.link(&sink.static_pad("sink").expect("sink pad"));
    });
    pipeline
        .set_state(gst::State::Playing)
        .expect("subscribing");
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
    pipeline.set_state(gst::State::Null).expect("stopped");
}

/// Numbers after the word `tag` in a worker's next line.
fn numbers(worker: &mut Worker, tag: &str) -> Vec<u128> {
    loop {
        let line = worker.line();
        let mut parts = line.split_whitespace();
        if parts.next() == Some(tag) {
            return parts.filter_map(|p| p.parse().ok()).collect();
        }
    }
}

struct Round {
    idle_bytes: u128,
    idle_frames: u128,
    idle_cpu_per_s: Duration,
    first_frame: Duration,
    first_age: Option<Duration>,
}

fn round(url: &str, mode: &str, idle: Duration) -> Round {
    let mut publisher = Worker::spawn(&["publish", url, mode], None);
    assert_eq!(publisher.line(), "ready");
    // Let the start settle (connect, first frames), then watch the idle spell.
    std::thread::sleep(Duration::from_secs(2));
    publisher.say("stats");
    let before = numbers(&mut publisher, "stats");
    std::thread::sleep(idle);
    publisher.say("stats");
    let after = numbers(&mut publisher, "stats");
    let mut subscriber = Worker::spawn(&["subscribe", url], None);
    let first = numbers(&mut subscriber, "first");
    publisher.say(&format!("age {}", first[0]));
    let entered = numbers(&mut publisher, "entered")[0];
    subscriber.finish_lines();
    publisher.finish_lines();
    let idle_cpu = Duration::from_nanos((after[2] - before[2]) as u64);
    Round {
        idle_bytes: after[0] - before[0],
        idle_frames: after[1] - before[1],
        idle_cpu_per_s: idle_cpu.div_f64(idle.as_secs_f64()),
        first_frame: Duration::from_nanos(first[2] as u64),
        first_age: (entered > 0).then(|| Duration::from_nanos((first[1] - entered) as u64)),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("relay") => return relay("default"),
        Some("publish") => return publish(&args[1], &args[2]),
        Some("subscribe") => return subscribe(&args[1]),
        _ => {}
    }
    let mut idle = Duration::from_secs(10);
    let mut rounds = 3;
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        let value = rest.next().and_then(|v| v.parse::<u64>().ok());
        match (arg.as_str(), value) {
            ("--idle", Some(v)) => idle = Duration::from_secs(v),
            ("--rounds", Some(v)) => rounds = v,
            _ => {
                eprintln!("{USAGE}");
                std::process::exit(2);
            }
        }
    }
    let mut relay = Worker::spawn(&["relay"], None);
    let addr = word_after(&mut relay, "relay");
    let url = format!("https://{addr}/anon");
    println!(
        "mode              idle: QUIC bytes sent  frames  CPU/s    subscriber: first frame  its age"
    );
    for mode in MODES {
        for _ in 0..rounds {
            let r = round(&url, mode, idle);
            println!(
                "{mode:<17} {:>22} {:>7} {:>6.0}ms {:>25.0?} {:>8}",
                r.idle_bytes,
                r.idle_frames,
                r.idle_cpu_per_s.as_secs_f64() * 1000.0,
                r.first_frame,
                r.first_age
                    .map_or("?".to_string(), |age| format!("{:.0?}", age)),
            );
        }
    }
    relay.finish_lines();
}

/// The word after `tag` in a worker's next line that starts with it.
fn word_after(worker: &mut Worker, tag: &str) -> String {
    loop {
        let line = worker.line();
        if let Some(rest) = line.strip_prefix(&format!("{tag} ")) {
            return rest.trim().to_string();
        }
    }
}
