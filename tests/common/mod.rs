// SPDX-License-Identifier: MIT OR Apache-2.0

//! Shared by the gateway tests: the embedded relay, pipelines that stop when
//! dropped and keep their bus errors, frame counters, and the peers' media.

#![allow(dead_code)]

pub mod browser;
/// The plugin tests' wait helper, one copy for both test suites.
#[path = "../../gst-plugin-moq/tests/common/wait.rs"]
pub mod wait;

use std::net::TcpListener;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use gst::prelude::*;
use moq_gateway::presets::Video;
use moq_gateway::relay::EmbeddedRelay;

pub static RELAY: LazyLock<EmbeddedRelay> = LazyLock::new(|| {
    moq_gateway::init().expect("GStreamer and the plugins initialize");
    EmbeddedRelay::start("127.0.0.1:0".parse().unwrap()).expect("the relay starts")
});

/// WebRTC tests encode and decode on both sides; two at once on two cores
/// starve each other's ICE and DTLS timers.
pub static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Waits until something accepts TCP connections on `port` of 127.0.0.1.
/// whepserversink and whipserversrc open their HTTP listener only once
/// their pipeline is running, after a peer on loopback may already have
/// gathered its candidates and sent its request.
pub fn listening(what: &str, port: u16) {
    wait::until(what, Duration::from_secs(20), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
}

pub fn unique(prefix: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    )
}

/// A pipeline that is set to NULL when dropped, with its bus errors kept.
pub struct Running {
    pub name: &'static str,
    pub pipeline: gst::Pipeline,
    pub errors: Arc<Mutex<Vec<String>>>,
    eos: Arc<std::sync::atomic::AtomicBool>,
}

impl Running {
    pub fn start(name: &'static str, description: &str) -> Self {
        let pipeline = moq_gateway::launch::build_from_str(description)
            .unwrap_or_else(|e| panic!("{name}: {e:#}\n{description}"));
        Self::run(name, pipeline)
    }

    pub fn run(name: &'static str, pipeline: gst::Pipeline) -> Self {
        let errors: Arc<Mutex<Vec<String>>> = Arc::default();
        let sink = errors.clone();
        let eos: Arc<std::sync::atomic::AtomicBool> = Arc::default();
        let saw_eos = eos.clone();
        let bus = pipeline.bus().unwrap();
        bus.set_sync_handler(move |_, msg| {
            if let gst::MessageView::Error(err) = msg.view() {
                sink.lock().unwrap().push(format!(
                    "{}: {} ({:?})",
                    err.src().map(|s| s.path_string()).unwrap_or_default(),
                    err.error(),
                    err.debug()
                ));
            }
            if let gst::MessageView::Eos(_) = msg.view() {
                saw_eos.store(true, Ordering::SeqCst);
            }
            gst::BusSyncReply::Drop
        });
        pipeline
            .set_state(gst::State::Playing)
            .unwrap_or_else(|e| panic!("{name} does not start: {e}"));
        Running {
            name,
            pipeline,
            errors,
            eos,
        }
    }

    /// Whether the pipeline posted EOS.
    pub fn ended(&self) -> bool {
        self.eos.load(Ordering::SeqCst)
    }

    pub fn check(&self) {
        let errors = self.errors.lock().unwrap();
        assert!(
            errors.is_empty(),
            "{} posted errors: {errors:#?}",
            self.name
        );
    }
}

impl Drop for Running {
    /// Stops the pipeline, waiting at most 20 s. whepclientsrc (gst-plugins-rs
    /// 0.15) can deadlock in its own shutdown when its ICE fails meanwhile
    /// (the gateway ended the session): its webrtcbin's thread waits for a
    /// lock the state change holds. Such a pipeline is left behind, named
    /// on stderr, rather than hang the test run.
    fn drop(&mut self) {
        let (done, stopped) = std::sync::mpsc::channel();
        let pipeline = self.pipeline.clone();
        std::thread::spawn(move || {
            let _ = pipeline.set_state(gst::State::Null);
            let _ = done.send(());
        });
        if stopped.recv_timeout(Duration::from_secs(20)).is_err() {
            eprintln!("{}: did not stop within 20 s, left behind", self.name);
        }
    }
}

/// Counts buffers reaching the appsinks named `video` and `audio`.
pub struct Counts {
    pub video: Arc<AtomicU64>,
    pub audio: Arc<AtomicU64>,
}

pub fn count(pipeline: &gst::Pipeline) -> Counts {
    let counter = |name: &str| {
        let n = Arc::new(AtomicU64::new(0));
        let sink = pipeline
            .by_name(name)
            .unwrap_or_else(|| panic!("no appsink {name}"))
            .downcast::<gst_app::AppSink>()
            .unwrap();
        let seen = n.clone();
        sink.set_callbacks(
            gst_app::AppSinkCallbacks::builder()
                .new_sample(move |sink| {
                    sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                    seen.fetch_add(1, Ordering::Relaxed);
                    Ok(gst::FlowSuccess::Ok)
                })
                .build(),
        );
        n
    };
    Counts {
        video: counter("video"),
        audio: counter("audio"),
    }
}

/// Waits until both counts reach `want`, checking every pipeline for errors.
pub fn wait_for_frames(counts: &Counts, want: u64, timeout: Duration, running: &[&Running]) {
    let read = || {
        (
            counts.video.load(Ordering::Relaxed),
            counts.audio.load(Ordering::Relaxed),
        )
    };
    let took = wait::until_else(
        timeout,
        || {
            for r in running {
                r.check();
            }
            let (v, a) = read();
            v >= want && a >= want
        },
        || {
            let (v, a) = read();
            format!("after {timeout:?} only {v} decoded video frames and {a} audio buffers arrived")
        },
    );
    let (v, a) = read();
    eprintln!("{v} video frames, {a} audio buffers after {took:?}");
}

pub fn encoder(video: Video) -> &'static str {
    match video {
        // Constrained baseline: what browsers and WebRTC peers decode.
        Video::H264 => {
            "x264enc tune=zerolatency speed-preset=ultrafast key-int-max=30 bitrate=500 \
             ! video/x-h264,profile=constrained-baseline"
        }
        Video::Vp8 => "vp8enc deadline=1 keyframe-max-dist=30 target-bitrate=500000",
        Video::Vp9 => "vp9enc deadline=1 keyframe-max-dist=30",
        Video::H265 => "x265enc tune=zerolatency speed-preset=ultrafast key-int-max=30",
    }
}

pub fn raw_video() -> &'static str {
    "videotestsrc is-live=true pattern=ball ! video/x-raw,format=I420,width=320,height=240,framerate=30/1"
}

/// moqsink publishing `video` + Opus to the relay.
pub fn moq_publisher(broadcast: &str, video: Video) -> Running {
    moq_publisher_with(broadcast, video, "opusenc")
}

/// moqsink publishing `video` + audio from the `audio_encoder` chain.
pub fn moq_publisher_with(broadcast: &str, video: Video, audio_encoder: &str) -> Running {
    moq_publisher_beside(broadcast, video, audio_encoder, "")
}

/// As `moq_publisher_with`, with `more` (more branches into `moq.`) in the
/// description.
pub fn moq_publisher_beside(
    broadcast: &str,
    video: Video,
    audio_encoder: &str,
    more: &str,
) -> Running {
    Running::start(
        "publisher",
        &format!(
            "{raw} ! {enc} ! moq.video_0 \
             audiotestsrc is-live=true wave=ticks ! audio/x-raw,rate=48000,channels=2 ! {audio_encoder} ! moq.audio_0 \
             {more} moqsink name=moq url={url} broadcast={broadcast}",
            raw = raw_video(),
            enc = encoder(video),
            url = RELAY.url(),
        ),
    )
}

/// The `ladder` preset (three H.264 renditions and Opus) publishing
/// `broadcast` to the test relay.
pub fn ladder_publisher(broadcast: &str) -> Running {
    let description = moq_gateway::presets::describe(
        moq_gateway::presets::Preset::Ladder,
        &moq_gateway::presets::Options {
            relay: RELAY.url(),
            broadcast: broadcast.to_owned(),
            ..Default::default()
        },
    );
    Running::start("ladder", &description)
}

/// moqsrc decoding the broadcast into the counting appsinks.
pub fn moq_subscriber(broadcast: &str) -> (Running, Counts) {
    let running = Running::start(
        "subscriber",
        &format!(
            "moqsrc name=moq url={url} broadcast={broadcast} \
             moq.video_0 ! queue ! decodebin3 ! videoconvert ! appsink name=video sync=false \
             moq.audio_0 ! queue ! decodebin3 ! audioconvert ! appsink name=audio sync=false",
            url = RELAY.url(),
        ),
    );
    let counts = count(&running.pipeline);
    (running, counts)
}

pub fn webrtc_caps(video: Video) -> &'static str {
    match video {
        Video::H264 => "video/x-h264",
        Video::Vp8 => "video/x-vp8",
        Video::Vp9 => "video/x-vp9",
        Video::H265 => "video/x-h265",
    }
}

/// A plain HTTP/1.1 exchange (the WebRTC elements do their own; this is for
/// what they never send). Returns the status, the headers (names in lower
/// case) and the body.
pub fn http(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    body: &str,
) -> (u16, Vec<(String, String)>, String) {
    http_with(addr, method, path, &[], body)
}

/// `http` with more request headers, as (name, value) pairs.
pub fn http_with(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, Vec<(String, String)>, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).expect("the server accepts");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let extra: String = headers
        .iter()
        .map(|(name, value)| format!("{name}: {value}\r\n"))
        .collect();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nOrigin: http://elsewhere.example\r\n{extra}\
         Content-Type: application/sdp\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("a response");
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    (status, headers, body.to_owned())
}

pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}
