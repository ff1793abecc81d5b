// SPDX-License-Identifier: MIT OR Apache-2.0

//! Load: one broadcast, many subscribers in one process, one moqsrc each.
//!
//! A publisher (640x360 30 fps H.264 from x264) and SUBSCRIBERS moqsrc ->
//! fakesink pipelines share this process with an in-process moq-relay on
//! loopback. Every subscriber checks that the frames it gets are the
//! publisher's frames without a gap (by the `timestamp/x-moq` meta, 1/30 s
//! apart). Prints, once the subscribers are all playing and again at the
//! end: resident memory, frames per subscriber (min/max) and frames lost.
//!
//! Run: `cargo run --release -p gst-plugin-moq --example load [-- SUBSCRIBERS SECONDS]`
//! (defaults 50 and 60).

#[allow(dead_code)]
#[path = "../tests/common/relay.rs"]
mod relay;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gst::prelude::*;

const FRAME_US: u64 = 1_000_000 / 30;

/// What one subscriber saw.
#[derive(Default)]
struct Seen {
    frames: AtomicU64,
    lost: AtomicU64,
    last_us: Mutex<Option<u64>>,
}

fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|kib| kib.parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0)
}

fn report(label: &str, seen: &[Arc<Seen>]) {
    let frames: Vec<u64> = seen
        .iter()
        .map(|s| s.frames.load(Ordering::Relaxed))
        .collect();
    let lost: u64 = seen.iter().map(|s| s.lost.load(Ordering::Relaxed)).sum();
    println!(
        "{label}: RSS {:.1} MiB; frames per subscriber min {} max {}; frames lost {lost}",
        rss_mib(),
        frames.iter().min().unwrap_or(&0),
        frames.iter().max().unwrap_or(&0),
    );
}

fn main() {
    let mut args = std::env::args().skip(1);
    let subscribers: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(50);
    let seconds: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(60);
    gst::init().unwrap();
    gstmoq::plugin_register_static().unwrap();
    let (addr, _) = relay::spawn().expect("the relay starts");
    let url = format!("https://{addr}/anon");

    let publisher = gst::parse::launch(&format!(
        "videotestsrc is-live=true ! video/x-raw,format=I420,width=640,height=360,framerate=30/1 \
         ! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=60 bitrate=1500 ! h264parse \
         ! moqsink url={url} broadcast=load tls-disable-verify=true"
    ))
    .unwrap();
    publisher.set_state(gst::State::Playing).unwrap();

    let caps = gst::Caps::builder("timestamp/x-moq").build();
    let mut pipelines = Vec::new();
    let mut seen = Vec::new();
    for _ in 0..subscribers {
        let pipeline = gst::parse::launch(&format!(
            "moqsrc url={url} broadcast=load tls-disable-verify=true ! fakesink name=out sync=false"
        ))
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
        let s = Arc::new(Seen::default());
        let (counted, caps) = (s.clone(), caps.clone());
        pipeline
            .by_name("out")
            .unwrap()
            .static_pad("sink")
            .unwrap()
            .add_probe(gst::PadProbeType::BUFFER, move |_, info| {
                let Some(ts) = info
                    .buffer()
                    .and_then(|b| b.meta::<gst::ReferenceTimestampMeta>())
                    .filter(|m| m.reference().can_intersect(&caps))
                    .map(|m| m.timestamp().useconds())
                else {
                    return gst::PadProbeReturn::Ok;
                };
                counted.frames.fetch_add(1, Ordering::Relaxed);
                let mut last = counted.last_us.lock().unwrap();
                if let Some(prev) = *last {
                    // Frames 1/30 s apart; a bigger step is frames missed.
                    let step = ts.saturating_sub(prev);
                    let missed = (step + FRAME_US / 2) / FRAME_US;
                    counted
                        .lost
                        .fetch_add(missed.saturating_sub(1), Ordering::Relaxed);
                }
                *last = Some(ts);
                gst::PadProbeReturn::Ok
            });
        pipeline.set_state(gst::State::Playing).unwrap();
        pipelines.push(pipeline);
        seen.push(s);
    }
    let start = Instant::now();
    while seen.iter().any(|s| s.frames.load(Ordering::Relaxed) == 0) {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "not every subscriber got a frame within 60 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    println!(
        "{subscribers} subscribers playing after {:?}",
        start.elapsed()
    );
    report("start", &seen);
    let run = Instant::now();
    while run.elapsed() < Duration::from_secs(seconds) {
        std::thread::sleep(Duration::from_secs(10).min(Duration::from_secs(seconds)));
        for p in &pipelines {
            if let Some(msg) = p.bus().unwrap().pop_filtered(&[gst::MessageType::Error]) {
                panic!("a subscriber failed: {msg:?}");
            }
        }
        report(&format!("after {:>3} s", run.elapsed().as_secs()), &seen);
    }
    for p in &pipelines {
        p.set_state(gst::State::Null).unwrap();
    }
    publisher.set_state(gst::State::Null).unwrap();
}
