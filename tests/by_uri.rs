// SPDX-License-Identifier: MIT OR Apache-2.0

//! The README's `gst-play-1.0 moq+http://127.0.0.1:4443/anon/demo`, in
//! process: `playbin` plays a broadcast on the embedded relay by its
//! `moq+http://` URI alone (moqsrc fetches and pins the relay's certificate
//! over HTTP), decoded, with sound.

mod common;

use std::time::Duration;

use common::*;
use gst::prelude::*;
use moq_gateway::presets::Video;

#[test]
fn playbin_plays_the_embedded_relay_by_moq_http_uri() {
    let broadcast = unique("by-uri");
    let publisher = moq_publisher(&broadcast, Video::H264);
    let uri = format!("moq+http://{}/anon/{broadcast}", RELAY.addr());
    let playbin = gst::ElementFactory::make("playbin")
        .property("uri", &uri)
        .property(
            "video-sink",
            gst::ElementFactory::make("appsink")
                .name("video")
                .build()
                .unwrap(),
        )
        .property(
            "audio-sink",
            gst::ElementFactory::make("appsink")
                .name("audio")
                .build()
                .unwrap(),
        )
        .build()
        .expect("playbin");
    let pipeline = playbin.downcast::<gst::Pipeline>().unwrap();
    let counts = count(&pipeline);
    let player = Running::run("playbin", pipeline);
    wait_for_frames(&counts, 30, Duration::from_secs(30), &[&publisher, &player]);
    let source = player
        .pipeline
        .property::<Option<gst::Element>>("source")
        .expect("playbin's source");
    assert_eq!(source.factory().unwrap().name(), "moqsrc");
    assert_eq!(source.property::<String>("url"), RELAY.url());
}
