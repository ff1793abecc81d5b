// SPDX-License-Identifier: MIT OR Apache-2.0

//! Benchmark: moqsrc's rendition switching on a link whose capacity
//! changes, in processes as a user runs them:
//!
//! * a relay (the `moq-relay` library in a process of its own);
//! * a publisher: a 720p30 moving zone plate encoded live by three x264
//!   encoders, 1280x720 2.5 Mbit/s, 640x360 800 kbit/s and 320x180
//!   250 kbit/s, a keyframe every 2 s in each (aligned), one moqsink (the
//!   `moq-gateway ladder` preset's shape);
//! * this process: `moqsrc ! fakesink` through a UDP bottleneck in front
//!   of the relay (the test suite's proxy: a rate cap with a 200 ms queue
//!   that drops what does not fit; this kernel has no `netem`).
//!
//! The link goes through four phases: capped at 1.2 Mbit/s, uncapped,
//! capped at 400 kbit/s, uncapped. For each it prints the switches (when,
//! from, to, why), the frames that reached the sink against the 30 per
//! second made, the longest gap between two frames and the time spent in
//! gaps over 200 ms (stalls), and how long it took to reach the rendition
//! the phase ends on.
//!
//! Run: `cargo run --release -p gst-plugin-moq --example abr [-- --phase 25]`

mod common;
// The test suite's proxy; the cut and the counters are not used here.
#[allow(dead_code)]
#[path = "../tests/common/proxy.rs"]
mod proxy;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Worker, relay};
use gst::prelude::*;
use proxy::{Impairment, Proxy};

const USAGE: &str = "usage: abr [--phase SECONDS]";
const FPS: f64 = 30.0;
/// A gap between two frames longer than this is a stall.
const STALL: Duration = Duration::from_millis(200);

fn init() {
    gst::init().expect("GStreamer");
    gstmoq::plugin_register_static().expect("moq plugin");
}

/// Child: the ladder, published until stdin closes.
fn publish(url: &str) {
    init();
    let rung = |i: usize, w: u32, h: u32, kbps: u32| {
        format!(
            "src. ! queue ! videoscale ! video/x-raw,width={w},height={h} \
             ! x264enc tune=zerolatency speed-preset=ultrafast bitrate={kbps} key-int-max=60 \
               option-string=scenecut=0 ! h264parse ! moq.video_{i} "
        )
    };
    let pipeline = gst::parse::launch(&format!(
        "moqsink name=moq url={url} broadcast=ladder tls-disable-verify=true \
         videotestsrc is-live=true pattern=zone-plate kx2=20 ky2=20 kt=1 \
         ! video/x-raw,format=I420,width=1280,height=720,framerate=30/1 ! tee name=src \
         {} {} {}",
        rung(0, 1280, 720, 2500),
        rung(1, 640, 360, 800),
        rung(2, 320, 180, 250)
    ))
    .expect("the ladder pipeline");
    pipeline.set_state(gst::State::Playing).expect("publishing");
    println!("ready");
    let _ = std::io::stdout().flush();
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
    let _ = pipeline.set_state(gst::State::Null);
}

/// A switch as the bus told it.
struct Switch {
    at: Instant,
    from: String,
    to: String,
    reason: String,
}

/// Takes the bus's `moqsrc-switch` messages; an ERROR ends the run.
fn drain(bus: &gst::Bus, switches: &mut Vec<Switch>) {
    while let Some(msg) = bus.pop_filtered(&[gst::MessageType::Element, gst::MessageType::Error]) {
        match msg.view() {
            gst::MessageView::Error(e) => {
                eprintln!("ERROR: {} ({:?})", e.error(), e.debug());
                std::process::exit(1);
            }
            gst::MessageView::Element(e) => {
                if let Some(s) = e.structure()
                    && s.name() == "moqsrc-switch"
                {
                    let field = |f: &str| s.get::<String>(f).unwrap_or_default();
                    switches.push(Switch {
                        at: Instant::now(),
                        from: field("from"),
                        to: field("to"),
                        reason: field("reason"),
                    });
                }
            }
            _ => {}
        }
    }
}

/// One phase's figures, printed as one block.
fn report(name: &str, start: Instant, end: Instant, arrivals: &[Instant], switches: &[Switch]) {
    let within: Vec<Instant> = arrivals
        .iter()
        .copied()
        .filter(|t| *t >= start && *t < end)
        .collect();
    let expected = ((end - start).as_secs_f64() * FPS).round() as usize;
    let gaps: Vec<Duration> = within.windows(2).map(|w| w[1] - w[0]).collect();
    let longest = gaps.iter().max().copied().unwrap_or_default();
    let stalled: Duration = gaps.iter().filter(|g| **g > STALL).sum();
    println!("{name}:");
    let mine: Vec<&Switch> = switches
        .iter()
        .filter(|s| s.at >= start && s.at < end)
        .collect();
    for s in &mine {
        println!(
            "  +{:5.2} s  {} -> {} ({})",
            (s.at - start).as_secs_f64(),
            s.from,
            s.to,
            s.reason
        );
    }
    if let Some(last) = mine.last() {
        println!(
            "  settled on {} {:.2} s after the change",
            last.to,
            (last.at - start).as_secs_f64()
        );
    } else {
        println!("  no switch");
    }
    println!(
        "  frames {} of ~{expected} made ({} lost), longest gap {:.0} ms, stalled {:.0} ms",
        within.len(),
        expected.saturating_sub(within.len()),
        longest.as_secs_f64() * 1e3,
        stalled.as_secs_f64() * 1e3
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("relay") => return relay(""),
        Some("publish") => return publish(&args[2]),
        _ => {}
    }
    let mut phase = 25u64;
    let mut it = args.iter().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--phase" => phase = it.next().and_then(|v| v.parse().ok()).expect("seconds"),
            "--help" | "-h" => return println!("{USAGE}"),
            other => {
                eprintln!("unknown option {other}\n{USAGE}");
                std::process::exit(2);
            }
        }
    }
    init();
    let mut relay = Worker::spawn(&["relay"], None);
    let line = relay.line();
    let addr: std::net::SocketAddr = line
        .strip_prefix("relay ")
        .and_then(|a| a.parse().ok())
        .expect("the relay's address");
    let mut publisher = Worker::spawn(&["publish", &format!("https://{addr}/anon")], None);
    assert_eq!(publisher.line(), "ready");
    let link = Proxy::start(
        addr,
        Impairment {
            loss: 0.0,
            delay: Duration::from_millis(10),
            jitter: Duration::ZERO,
            reorder: 0.0,
            seed: 1,
        },
    );
    let phases: [(&str, u64); 4] = [
        ("capped at 1.2 Mbit/s", 1_200_000),
        ("cap lifted", 0),
        ("capped at 400 kbit/s", 400_000),
        ("cap lifted", 0),
    ];
    link.set_rate(phases[0].1);
    let pipeline = gst::parse::launch(&format!(
        "moqsrc url=https://{}/anon broadcast=ladder tls-disable-verify=true \
         ! fakesink name=out sync=false",
        link.addr
    ))
    .expect("the subscriber")
    .downcast::<gst::Pipeline>()
    .expect("a pipeline");
    let arrivals: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let seen = arrivals.clone();
    pipeline
        .by_name("out")
        .and_then(|s| s.static_pad("sink"))
        .expect("fakesink's pad")
        .add_probe(gst::PadProbeType::BUFFER, move |_, _| {
            seen.lock().unwrap().push(Instant::now());
            gst::PadProbeReturn::Ok
        });
    let bus = pipeline.bus().expect("a bus");
    pipeline.set_state(gst::State::Playing).expect("playing");
    let mut switches = Vec::new();
    let mut bounds = Vec::new();
    for (name, rate) in phases {
        link.set_rate(rate);
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(phase) {
            drain(&bus, &mut switches);
            std::thread::sleep(Duration::from_millis(20));
        }
        bounds.push((name, start, Instant::now()));
    }
    let _ = pipeline.set_state(gst::State::Null);
    drop(publisher.finish_lines());
    drop(relay.finish_lines());
    println!(
        "ladder 720p 2.5 Mbit/s, 360p 800 kbit/s, 180p 250 kbit/s (x264, 2 s groups); \
         relay and publisher in processes of their own, {phase} s per phase"
    );
    let arrivals = arrivals.lock().unwrap();
    for (name, start, end) in bounds {
        report(name, start, end, &arrivals, &switches);
    }
}
