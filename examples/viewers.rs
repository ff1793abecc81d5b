// SPDX-License-Identifier: MIT OR Apache-2.0

//! How many WHEP viewers of one 640x360 H.264 broadcast `moq-gateway
//! serve` carries, and what each costs it, every part a process of its own
//! as a user runs it:
//!
//! - a MoQ relay (`moq-gateway relay`);
//! - the gateway (`moq-gateway serve --relay ...`, `--egress-per-viewer`
//!   with `--per-viewer`, to compare);
//! - a WHIP publisher (`moq-gateway` running a pipeline: videotestsrc
//!   640x360 at 30 fps, x264enc 800 kbit/s with a keyframe every 2 s,
//!   Opus, whipclientsink); with `--remote`, a MoQ publisher into the relay
//!   instead (the same encoders, moqsink): the broadcast is published
//!   elsewhere, as on a cluster's edge, and viewers who join a shared
//!   egress wait for its next keyframe;
//! - this process: the viewers, whepclientsrc each, taking the encoded
//!   H.264 and Opus without decoding them, so that a viewer costs the
//!   gateway what a browser would and costs this process little.
//!
//! Viewers are added in steps; after each, once all of them play, the
//! gateway's CPU time (from /proc) and every viewer's frames are counted
//! over a window. A step where a viewer received under 95 % of the
//! publisher's frames (or never played) is frame loss: the run stops
//! there. Each step also prints how long its new viewers took from their
//! offer to their first frame (median and slowest). Everything shares this
//! machine's cores, the viewers' process included, which the printed CPU
//! figures show.
//!
//! Run: `cargo build --release && cargo run --release --example viewers --
//! [--per-viewer] [--remote] [--steps 10,20,40] [--seconds S]`.

mod bench;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use bench::{AUDIO, Proc, Viewer};

/// The publisher's video: 640x360 at 30 fps, H.264 800 kbit/s with a
/// keyframe every 2 s.
const VIDEO: &str = "videotestsrc is-live=true pattern=ball \
    ! video/x-raw,width=640,height=360,framerate=30/1 \
    ! x264enc tune=zerolatency speed-preset=ultrafast bitrate=800 key-int-max=60 \
    ! video/x-h264,profile=constrained-baseline";

const USAGE: &str =
    "usage: viewers [--gateway PATH] [--per-viewer] [--remote] [--steps N,N,...] [--seconds S]";

struct Args {
    gateway: PathBuf,
    per_viewer: bool,
    remote: bool,
    steps: Vec<usize>,
    seconds: u64,
}

fn args() -> Args {
    let mut args = Args {
        gateway: bench::gateway_next_to_this(),
        per_viewer: false,
        remote: false,
        steps: vec![10, 20, 30, 40, 50, 60, 80, 100],
        seconds: 10,
    };
    let mut words = std::env::args().skip(1);
    while let Some(word) = words.next() {
        let mut value = || words.next().unwrap_or_else(|| panic!("{USAGE}"));
        match word.as_str() {
            "--gateway" => args.gateway = PathBuf::from(value()),
            "--per-viewer" => args.per_viewer = true,
            "--remote" => args.remote = true,
            "--steps" => args.steps = bench::steps(&value()).unwrap_or_else(|| panic!("{USAGE}")),
            "--seconds" => args.seconds = value().parse().unwrap_or_else(|_| panic!("{USAGE}")),
            _ => panic!("{USAGE}"),
        }
    }
    args
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

/// The broadcast `live`: over WHIP into the gateway, or (`remote`) with
/// moqsink straight into the relay.
fn publisher(args: &Args, http: &str, relay_url: &str) -> Proc {
    let description = if args.remote {
        format!(
            "{VIDEO} ! m.video_0 {AUDIO} ! m.audio_0 moqsink name=m url={relay_url} broadcast=live"
        )
    } else {
        format!(
            "{VIDEO} ! ws. {AUDIO} ! ws. whipclientsink name=ws stun-server=\"\" \
             congestion-control=disabled video-caps=video/x-h264 audio-caps=audio/x-opus \
             signaller::whip-endpoint=http://{http}/whip/live"
        )
    };
    let words: Vec<&str> = description.split_whitespace().collect();
    let publisher = Proc::spawn(&args.gateway, &words);
    if !args.remote {
        wait_publishing(http);
    }
    publisher
}

fn main() {
    let args = args();
    moq_gateway::init().expect("GStreamer and the plugins");
    let relay_port = bench::free_port();
    let http_port = bench::free_port();
    let relay_addr = format!("127.0.0.1:{relay_port}");
    let relay_url = format!("http://{relay_addr}/anon");
    let http = format!("127.0.0.1:{http_port}");
    let _relay = Proc::spawn(&args.gateway, &["relay", "--listen", &relay_addr]);
    bench::wait_listening(relay_port);
    let mut serve_args = vec!["serve", "--listen", &http, "--relay", &relay_url];
    if args.per_viewer {
        serve_args.push("--egress-per-viewer");
    }
    let gateway = Proc::spawn(&args.gateway, &serve_args);
    bench::wait_listening(http_port);
    let _publisher = publisher(&args, &http, &relay_url);
    let window = Duration::from_secs(args.seconds);
    // What the gateway spends with no viewer: the publisher's ingest.
    std::thread::sleep(Duration::from_secs(2));
    let base = bench::cpu_share(gateway.pid(), window);
    let whep = format!("http://{http}/whep/live");
    let mode = if args.per_viewer {
        "a pipeline per viewer (--egress-per-viewer)"
    } else {
        "viewers sharing one egress"
    };
    let how = if args.remote {
        "over MoQ into the relay (published elsewhere)"
    } else {
        "over WHIP"
    };
    println!("moq-gateway serve, {mode}; one 640x360 30 fps H.264 broadcast {how}");
    println!(
        "gateway CPU with no viewer: {:.1}% of a core; per viewer is what each adds",
        base * 100.0
    );
    println!("{}", bench::HEADER);
    let mut viewers: Vec<Viewer> = Vec::new();
    for &step in &args.steps {
        let joined = viewers.len();
        while viewers.len() < step {
            viewers.push(Viewer::start(&whep, "video/x-h264,alignment=au"));
            // As viewers arrive, not all in the same millisecond.
            std::thread::sleep(Duration::from_millis(20));
        }
        if !bench::step(&viewers, joined, &gateway, base, window) {
            return;
        }
    }
    println!("no frame loss up to {} viewers", viewers.len());
}
