// SPDX-License-Identifier: MIT OR Apache-2.0

//! The four gateway presets end to end: a real MoQ relay (the embedded one),
//! the preset's pipeline exactly as `--print` gives it, and GStreamer WebRTC
//! peers (whipclientsink, whepclientsrc, whepserversink, whipserversrc) with
//! real encoders on the far side. Decoded frames must arrive.

use std::sync::LazyLock;
use std::time::Duration;

use moq_gateway::presets::{self, Preset, Video};

mod common;
use common::*;

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
    listening("the gateway's WHEP server", port);
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
    listening("the WHEP server", port);
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
    listening("the WHIP server", port);
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

/// A broadcast with AAC audio reaches WebRTC viewers as Opus: the preset
/// decodes it and whepserversink encodes Opus.
#[test]
fn moq_to_whep_aac_becomes_opus() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    LazyLock::force(&RELAY);
    let broadcast = unique("aac");
    let port = free_port();
    let publisher = Running::start(
        "aac publisher",
        &format!(
            "{raw} ! {enc} ! moq.video_0 \
             audiotestsrc is-live=true wave=ticks ! audio/x-raw,rate=48000,channels=2 \
             ! avenc_aac ! aacparse ! moq.audio_0 \
             moqsink name=moq url={url} broadcast={broadcast}",
            raw = raw_video(),
            enc = encoder(Video::Vp8),
            url = RELAY.url(),
        ),
    );
    let gateway = gateway(
        Preset::MoqToWhep,
        &broadcast,
        Video::Vp8,
        format!("http://127.0.0.1:{port}"),
    );
    listening("the gateway's WHEP server", port);
    let viewer = Running::start(
        "whep viewer",
        &format!(
            "whepclientsrc name=wc stun-server=\"\" audio-codecs=\"<OPUS>\" \
             signaller::whep-endpoint=http://127.0.0.1:{port}/whep/endpoint \
             wc.video_0 ! queue ! videoconvert ! appsink name=video sync=false \
             wc.audio_0 ! queue ! audioconvert ! appsink name=audio sync=false"
        ),
    );
    let counts = count(&viewer.pipeline);
    wait_for_frames(&counts, WANT, TIMEOUT, &[&publisher, &gateway, &viewer]);
}

/// `--print` gives exactly the preset, and it parses into a pipeline with
/// the elements it names (the plugins are the ones gst-launch-1.0 loads).
#[test]
fn printed_presets_parse() {
    LazyLock::force(&RELAY);
    for preset in Preset::ALL {
        for (flag, video) in [("h264", Video::H264), ("vp8", Video::Vp8)] {
            let out = std::process::Command::new(env!("CARGO_BIN_EXE_moq-gateway"))
                .args(["--print", preset.name(), "--video", flag])
                .output()
                .expect("moq-gateway runs");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let printed = String::from_utf8(out.stdout).unwrap();
            let opts = presets::Options {
                video,
                ..presets::Options::default()
            };
            assert_eq!(printed.trim_end(), presets::describe(preset, &opts));
            let pipeline = moq_gateway::launch::build_from_str(&printed)
                .unwrap_or_else(|e| panic!("{}: {e:#}\n{printed}", preset.name()));
            use gst::prelude::*;
            assert!(pipeline.by_name("moq").is_some());
            assert_eq!(pipeline.by_name("webrtc").is_some(), preset.is_gateway());
        }
    }
}

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
