// SPDX-License-Identifier: MIT OR Apache-2.0

//! The four gateway presets end to end: a real MoQ relay (the embedded one),
//! the preset's pipeline exactly as `--print` gives it, and GStreamer WebRTC
//! peers (whipclientsink, whepclientsrc, whepserversink, whipserversrc) with
//! real encoders on the far side. Decoded frames must arrive.

use std::net::TcpListener;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use gst::prelude::*;
use moq_gateway::presets::{self, Preset, Video};
use moq_gateway::relay::EmbeddedRelay;

static RELAY: LazyLock<EmbeddedRelay> = LazyLock::new(|| {
    moq_gateway::init().expect("GStreamer and the plugins initialize");
    EmbeddedRelay::start("127.0.0.1:0".parse().unwrap()).expect("the relay starts")
});

/// WebRTC tests encode and decode on both sides; two at once on two cores
/// starve each other's ICE and DTLS timers.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

fn unique(prefix: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    )
}

/// A pipeline that is set to NULL when dropped, with its bus errors kept.
struct Running {
    name: &'static str,
    pipeline: gst::Pipeline,
    errors: Arc<Mutex<Vec<String>>>,
}

impl Running {
    fn start(name: &'static str, description: &str) -> Self {
        let pipeline = moq_gateway::launch::build_from_str(description)
            .unwrap_or_else(|e| panic!("{name}: {e:#}\n{description}"));
        Self::run(name, pipeline)
    }

    fn run(name: &'static str, pipeline: gst::Pipeline) -> Self {
        let errors: Arc<Mutex<Vec<String>>> = Arc::default();
        let sink = errors.clone();
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
            gst::BusSyncReply::Drop
        });
        pipeline
            .set_state(gst::State::Playing)
            .unwrap_or_else(|e| panic!("{name} does not start: {e}"));
        Running {
            name,
            pipeline,
            errors,
        }
    }

    fn check(&self) {
        let errors = self.errors.lock().unwrap();
        assert!(
            errors.is_empty(),
            "{} posted errors: {errors:#?}",
            self.name
        );
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

/// Counts buffers reaching the appsinks named `video` and `audio`.
struct Counts {
    video: Arc<AtomicU64>,
    audio: Arc<AtomicU64>,
}

fn count(pipeline: &gst::Pipeline) -> Counts {
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
fn wait_for_frames(counts: &Counts, want: u64, timeout: Duration, running: &[&Running]) {
    let start = Instant::now();
    loop {
        for r in running {
            r.check();
        }
        let (v, a) = (
            counts.video.load(Ordering::Relaxed),
            counts.audio.load(Ordering::Relaxed),
        );
        if v >= want && a >= want {
            eprintln!(
                "{v} video frames, {a} audio buffers after {:?}",
                start.elapsed()
            );
            return;
        }
        assert!(
            start.elapsed() < timeout,
            "after {timeout:?} only {v} decoded video frames and {a} audio buffers arrived"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn encoder(video: Video) -> &'static str {
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

fn raw_video() -> &'static str {
    "videotestsrc is-live=true pattern=ball ! video/x-raw,format=I420,width=320,height=240,framerate=30/1"
}

/// moqsink publishing `video` + Opus to the relay.
fn moq_publisher(broadcast: &str, video: Video) -> Running {
    Running::start(
        "publisher",
        &format!(
            "{raw} ! {enc} ! moq.video_0 \
             audiotestsrc is-live=true wave=ticks ! audio/x-raw,rate=48000,channels=2 ! opusenc ! moq.audio_0 \
             moqsink name=moq url={url} broadcast={broadcast}",
            raw = raw_video(),
            enc = encoder(video),
            url = RELAY.url(),
        ),
    )
}

/// moqsrc decoding the broadcast into the counting appsinks.
fn moq_subscriber(broadcast: &str) -> (Running, Counts) {
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

fn gateway(preset: Preset, broadcast: &str, video: Video, webrtc: String) -> Running {
    let opts = presets::Options {
        relay: RELAY.url(),
        broadcast: broadcast.to_owned(),
        video,
        webrtc: Some(webrtc),
        stun: None,
    };
    Running::start("gateway", &presets::describe(preset, &opts))
}

fn webrtc_caps(video: Video) -> &'static str {
    match video {
        Video::H264 => "video/x-h264",
        Video::Vp8 => "video/x-vp8",
        Video::Vp9 => "video/x-vp9",
        Video::H265 => "video/x-h265",
    }
}

const WANT: u64 = 30;
const TIMEOUT: Duration = Duration::from_secs(30);

fn whip_to_moq(video: Video) {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    LazyLock::force(&RELAY);
    let broadcast = unique("whip-to-moq");
    let port = free_port();
    let gateway = gateway(
        Preset::WhipToMoq,
        &broadcast,
        video,
        format!("http://127.0.0.1:{port}"),
    );
    let (subscriber, counts) = moq_subscriber(&broadcast);
    let publisher = Running::start(
        "whip publisher",
        &format!(
            "{raw} ! ws. audiotestsrc is-live=true wave=ticks ! ws. \
             whipclientsink name=ws stun-server=\"\" congestion-control=disabled \
             video-caps={caps} audio-caps=audio/x-opus \
             signaller::whip-endpoint=http://127.0.0.1:{port}/whip/endpoint",
            raw = raw_video(),
            caps = webrtc_caps(video),
        ),
    );
    wait_for_frames(&counts, WANT, TIMEOUT, &[&gateway, &subscriber, &publisher]);
}

fn moq_to_whep(video: Video) {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    LazyLock::force(&RELAY);
    let broadcast = unique("moq-to-whep");
    let port = free_port();
    let publisher = moq_publisher(&broadcast, video);
    let gateway = gateway(
        Preset::MoqToWhep,
        &broadcast,
        video,
        format!("http://127.0.0.1:{port}"),
    );
    let viewer = Running::start(
        "whep viewer",
        &format!(
            "whepclientsrc name=wc stun-server=\"\" \
             signaller::whep-endpoint=http://127.0.0.1:{port}/whep/endpoint \
             wc.video_0 ! queue ! videoconvert ! appsink name=video sync=false \
             wc.audio_0 ! queue ! audioconvert ! appsink name=audio sync=false"
        ),
    );
    let counts = count(&viewer.pipeline);
    wait_for_frames(&counts, WANT, TIMEOUT, &[&publisher, &gateway, &viewer]);
}

fn whep_to_moq(video: Video) {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    LazyLock::force(&RELAY);
    let broadcast = unique("whep-to-moq");
    let port = free_port();
    let server = Running::start(
        "whep server",
        &format!(
            "{raw} ! ws. audiotestsrc is-live=true wave=ticks ! ws. \
             whepserversink name=ws stun-server=\"\" congestion-control=disabled \
             video-caps={caps} audio-caps=audio/x-opus \
             signaller::host-addr=http://127.0.0.1:{port}",
            raw = raw_video(),
            caps = webrtc_caps(video),
        ),
    );
    let gateway = gateway(
        Preset::WhepToMoq,
        &broadcast,
        video,
        format!("http://127.0.0.1:{port}/whep/endpoint"),
    );
    let (subscriber, counts) = moq_subscriber(&broadcast);
    wait_for_frames(&counts, WANT, TIMEOUT, &[&server, &gateway, &subscriber]);
}

fn moq_to_whip(video: Video) {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    LazyLock::force(&RELAY);
    let broadcast = unique("moq-to-whip");
    let port = free_port();
    let server = Running::start(
        "whip server",
        &format!(
            "whipserversrc name=ws stun-server=\"\" signaller::host-addr=http://127.0.0.1:{port} \
             ws.video_0 ! queue ! videoconvert ! appsink name=video sync=false \
             ws.audio_0 ! queue ! audioconvert ! appsink name=audio sync=false"
        ),
    );
    let counts = count(&server.pipeline);
    let publisher = moq_publisher(&broadcast, video);
    let gateway = gateway(
        Preset::MoqToWhip,
        &broadcast,
        video,
        format!("http://127.0.0.1:{port}/whip/endpoint"),
    );
    wait_for_frames(&counts, WANT, TIMEOUT, &[&server, &publisher, &gateway]);
}

// H.264 between whepserversink and whepclientsrc does not negotiate in
// gst-plugins-rs 0.15: whepclientsrc offers only profile-level-id 42e016
// without level-asymmetry-allowed, and whepserversink's payloader must then
// produce exactly that, which x264's 42c0xx streams are not. Browsers offer
// level-asymmetry-allowed=1 and play H.264 from moq-to-whep; the serve mode
// adds it to offers that lack it (tested in tests/serve.rs).

#[test]
fn whip_to_moq_vp8_opus() {
    whip_to_moq(Video::Vp8);
}

#[test]
fn whip_to_moq_h264_opus() {
    whip_to_moq(Video::H264);
}

#[test]
fn moq_to_whep_vp8_opus() {
    moq_to_whep(Video::Vp8);
}

#[test]
fn whep_to_moq_vp8_opus() {
    whep_to_moq(Video::Vp8);
}

#[test]
fn moq_to_whip_vp8_opus() {
    moq_to_whip(Video::Vp8);
}

#[test]
fn moq_to_whip_h264_opus() {
    moq_to_whip(Video::H264);
}
