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
