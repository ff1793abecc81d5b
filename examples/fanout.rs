// SPDX-License-Identifier: MIT OR Apache-2.0

//! Two ways for one egress to serve many WHEP viewers of a broadcast,
//! measured side by side: one whepserversink with a consumer per viewer
//! (what `moq-gateway serve` does), or a tee with a whepserversink per
//! viewer. Both keep per-viewer keyframe requests (each reaches moqsrc as
//! an upstream event, through the tee or from webrtcsink) and per-viewer
//! congestion control (webrtcsink's, per consumer), so the question is
//! what each costs.
//!
//! Every part is a process of its own, as a user runs it: a MoQ relay
//! (`moq-gateway relay`), a publisher into it (moqsink: 640x360 at 30 fps,
//! VP8 800 kbit/s with a keyframe every 2 s, Opus; not H.264, as
//! whepserversink on its own fails the codec discovery for
//! whepclientsrc's offer of several H.264 profiles, which serve mode
//! narrows to the stream's own), the egress
//! (`moq-gateway` running the pipeline below, each design's whepserversink
//! answering WHEP on its own port), and this process with the viewers
//! (whepclientsrc, encoded frames counted, not decoded). For each step the
//! egress is started afresh with N viewers; per viewer is what each adds
//! to an egress with one whepserversink and no viewer.
//!
//! Run: `cargo build --release && cargo run --release --example fanout --
//! [--steps 10,20,40] [--seconds S]`.

mod bench;

use std::path::PathBuf;
use std::time::Duration;

use bench::{AUDIO, Proc, Viewer};

const USAGE: &str = "usage: fanout [--gateway PATH] [--steps N,N,...] [--seconds S]";

/// The publisher's encoders.
const VP8: &str = "videotestsrc is-live=true pattern=ball \
    ! video/x-raw,width=640,height=360,framerate=30/1 \
    ! vp8enc deadline=1 target-bitrate=800000 keyframe-max-dist=60";
/// moqsrc's VP8 and Opus (parsed, as webrtcsink's discovery wants it).
const SOURCE: &str = "moqsrc name=moq url={relay} broadcast=live \
    moq.video_0 ! queue ! {video} moq.audio_0 ! queue ! opusparse ! {audio}";
const SINK: &str = "whepserversink name={name} stun-server=\"\" congestion-control=disabled \
    video-caps=video/x-vp8 audio-caps=audio/x-opus signaller::host-addr=http://127.0.0.1:{port}";

#[derive(Clone, Copy, PartialEq)]
enum Design {
    /// One whepserversink, a consumer per viewer.
    Consumers,
    /// A tee per stream, a whepserversink per viewer.
    Tee,
}

impl Design {
    fn name(self) -> &'static str {
        match self {
            Design::Consumers => "one whepserversink, a consumer per viewer",
            Design::Tee => "a tee, a whepserversink per viewer",
        }
    }

    /// The egress's description for `viewers` (at least one sink), and
    /// the WHEP endpoint of each viewer.
    fn describe(self, relay: &str, viewers: usize) -> (String, Vec<String>) {
        let sinks = match self {
            Design::Consumers => 1,
            Design::Tee => viewers.max(1),
        };
        let ports: Vec<u16> = (0..sinks).map(|_| bench::free_port()).collect();
        let sink = |i: usize| {
            SINK.replace("{name}", &format!("w{i}"))
                .replace("{port}", &ports[i].to_string())
        };
        let mut description = match self {
            Design::Consumers => SOURCE
                .replace("{video}", "w0.video_0")
                .replace("{audio}", "w0.audio_0"),
            Design::Tee => SOURCE
                .replace("{video}", "tee name=v")
                .replace("{audio}", "tee name=a"),
        }
        .replace("{relay}", relay);
        for i in 0..sinks {
            description.push(' ');
            description.push_str(&sink(i));
            if self == Design::Tee {
                description.push_str(&format!(
                    " v. ! queue ! w{i}.video_0 a. ! queue ! w{i}.audio_0"
                ));
            }
        }
        let endpoints = (0..viewers)
            .map(|i| {
                let port = ports[i % sinks];
                format!("http://127.0.0.1:{port}/whep/endpoint")
            })
            .collect();
        (description, endpoints)
    }
}

/// How long an egress may take to come up: each whepserversink runs its
/// codec discovery before it opens its port.
const START: Duration = Duration::from_secs(60);

/// The egress process, once every whepserversink is listening (webrtcsink
/// opens its server after its codec discovery); `None` if one was not
/// within `START`.
fn egress(gateway: &std::path::Path, description: &str, endpoints: &[String]) -> Option<Proc> {
    let words: Vec<&str> = description.split_whitespace().collect();
    let process = Proc::spawn(gateway, &words);
    let started = std::time::Instant::now();
    for endpoint in endpoints {
        let port = endpoint
            .trim_start_matches("http://127.0.0.1:")
            .split('/')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("a port");
        if !bench::listening(port, START.saturating_sub(started.elapsed())) {
            return None;
        }
    }
    Some(process)
}

struct Args {
    gateway: PathBuf,
    steps: Vec<usize>,
    seconds: u64,
}

fn args() -> Args {
    let mut args = Args {
        gateway: bench::gateway_next_to_this(),
        steps: vec![10, 20, 40],
        seconds: 10,
    };
    let mut words = std::env::args().skip(1);
    while let Some(word) = words.next() {
        let mut value = || words.next().unwrap_or_else(|| panic!("{USAGE}"));
        match word.as_str() {
            "--gateway" => args.gateway = PathBuf::from(value()),
            "--steps" => args.steps = bench::steps(&value()).unwrap_or_else(|| panic!("{USAGE}")),
            "--seconds" => args.seconds = value().parse().unwrap_or_else(|_| panic!("{USAGE}")),
            _ => panic!("{USAGE}"),
        }
    }
    args
}

fn main() {
    let args = args();
    moq_gateway::init().expect("GStreamer and the plugins");
    let relay_port = bench::free_port();
    let relay_addr = format!("127.0.0.1:{relay_port}");
    let relay = format!("http://{relay_addr}/anon");
    let _relay = Proc::spawn(&args.gateway, &["relay", "--listen", &relay_addr]);
    bench::wait_listening(relay_port);
    let publish =
        format!("{VP8} ! m.video_0 {AUDIO} ! m.audio_0 moqsink name=m url={relay} broadcast=live");
    let words: Vec<&str> = publish.split_whitespace().collect();
    let _publisher = Proc::spawn(&args.gateway, &words);
    let window = Duration::from_secs(args.seconds);

    // The common ground: moqsrc and one whepserversink, no viewer.
    let (description, endpoints) = Design::Consumers.describe(&relay, 1);
    let idle = egress(&args.gateway, &description, &endpoints).expect("the egress comes up");
    std::thread::sleep(Duration::from_secs(2));
    let base = bench::cpu_share(idle.pid(), window);
    drop(idle);
    println!(
        "one 640x360 30 fps VP8 broadcast published into a relay, its egress started afresh per step"
    );
    println!(
        "egress CPU with one whepserversink and no viewer: {:.1}% of a core; per viewer is what each adds",
        base * 100.0
    );
    for design in [Design::Consumers, Design::Tee] {
        println!("\n{}", design.name());
        println!("{}", bench::HEADER);
        for &n in &args.steps {
            let (description, endpoints) = design.describe(&relay, n);
            let Some(process) = egress(&args.gateway, &description, &endpoints) else {
                println!("{n:>7}  the egress's whepserversinks were not all up within {START:?}");
                break;
            };
            let viewers: Vec<Viewer> = endpoints
                .iter()
                .map(|endpoint| {
                    let viewer = Viewer::start(endpoint, "video/x-vp8");
                    std::thread::sleep(Duration::from_millis(20));
                    viewer
                })
                .collect();
            let played = bench::step(&viewers, 0, &process, base, window);
            drop(viewers);
            drop(process);
            if !played {
                break;
            }
        }
    }
}
