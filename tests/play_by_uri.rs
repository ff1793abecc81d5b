// SPDX-License-Identifier: MIT OR Apache-2.0

//! What `gst-play-1.0 moq+http://127.0.0.1:4443/anon/demo` does, in process:
//! playbin picks moqsrc by the URI's scheme, moqsrc fetches and pins the
//! embedded relay's certificate (the `http` of `moq+http`), and playbin
//! decodes video and audio into its sinks.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use gst::prelude::*;
use moq_gateway::presets::Video;

mod common;
use common::*;

/// A fakesink that counts the buffers reaching it.
fn counting_sink() -> (gst::Element, Arc<AtomicU64>) {
    let sink = gst::ElementFactory::make("fakesink").build().unwrap();
    let count = Arc::new(AtomicU64::new(0));
    let counted = count.clone();
    sink.static_pad("sink")
        .unwrap()
        .add_probe(gst::PadProbeType::BUFFER, move |_, _| {
            counted.fetch_add(1, Ordering::Relaxed);
            gst::PadProbeReturn::Ok
        });
    (sink, count)
}

#[test]
fn playbin_plays_a_broadcast_by_moq_http_uri() {
    let broadcast = unique("by-uri");
    let publisher = moq_publisher_with(&broadcast, Video::H264, "opusenc");
    // The relay's URL is http://ADDR/anon: its certificate is fetched there.
    let uri = format!("moq+{}/{broadcast}", RELAY.url());
    assert!(uri.starts_with("moq+http://"), "{uri}");
    let (video, frames) = counting_sink();
    let (audio, samples) = counting_sink();
    let playbin = gst::ElementFactory::make("playbin")
        .property("uri", &uri)
        .property("video-sink", &video)
        .property("audio-sink", &audio)
        .build()
        .expect("playbin");
    let player = Running::run("playbin", playbin.downcast().unwrap());
    wait::until(
        "30 decoded frames and 30 audio buffers through playbin",
        Duration::from_secs(30),
        || {
            player.check();
            frames.load(Ordering::Relaxed) >= 30 && samples.load(Ordering::Relaxed) >= 30
        },
    );
    player.check();
    publisher.check();
}
