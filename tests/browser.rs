// SPDX-License-Identifier: MIT OR Apache-2.0

//! A real browser against the serve mode: Debian's Chromium, headless, with
//! its fake camera, publishes over WHIP from the gateway's own page; a MoQ
//! subscriber (moqsrc) decodes the broadcast, and a second Chromium page
//! watches it over WHEP. The viewer's `getStats()` `framesDecoded` must grow.
//!
//! Needs `chromium` (or `CHROMIUM=/path`); without it the test says so and
//! passes, unless `GST_MOQ_BROWSER_REQUIRED=1` (set by CI) makes it fail.

use std::sync::LazyLock;
use std::time::Duration;

use gst::prelude::*;
use moq_gateway::serve::{Options, Server};

mod common;
use common::browser::{Browser, chromium};
use common::*;

/// `publish` is the publishing page's query after its broadcast name
/// (`codec=vp8`, ...).
fn browser_round_trip(publish: &str) {
    let Some(binary) = chromium() else {
        return;
    };
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    LazyLock::force(&RELAY);
    let server = Server::start(Options::new("127.0.0.1:0".parse().unwrap(), RELAY.url()))
        .expect("the serve mode starts");
    let broadcast = unique("browser");
    let page = format!("http://{}/", server.addr());

    let publisher = Browser::open(
        &binary,
        &format!("{page}?publish={broadcast}&{publish}"),
        "moq-gateway:",
    );
    // The browser's camera reaches MoQ: a moqsrc decodes it.
    let (subscriber, counts) = moq_subscriber(&broadcast);
    wait_for_frames(&counts, 30, Duration::from_secs(40), &[&subscriber]);
    assert!(
        publisher.value("framesEncoded") > 0,
        "the publishing page logged no frames: {:#?}",
        publisher.recent(10)
    );

    // With ?ladder=1 the gateway publishes three renditions.
    let heights = rendition_heights(&subscriber);
    if publish.contains("ladder=1") {
        assert_eq!(heights, [720, 360, 180]);
    } else {
        assert_eq!(heights.len(), 1, "{heights:?}");
    }

    // A second page watches over WHEP.
    let viewer = Browser::open(
        &binary,
        &format!("{page}?watch={broadcast}"),
        "moq-gateway:",
    );
    viewer.wait_for("framesDecoded", 30, Duration::from_secs(40));
    let first = viewer.value("framesDecoded");
    // It goes on decoding (stats come once a second).
    let took = viewer.wait_for("framesDecoded", first + 1, Duration::from_secs(5));
    eprintln!(
        "{publish}: the WHEP page decoded {first} then {} frames {took:?} later",
        viewer.value("framesDecoded")
    );
    subscriber.check();
}

/// The heights of the video renditions a subscriber's moqsrc may play, best
/// first (its video pad's `renditions`).
fn rendition_heights(subscriber: &Running) -> Vec<i32> {
    let moqsrc = subscriber.pipeline.by_name("moq").expect("the moqsrc");
    let pad = moqsrc.static_pad("video_0").expect("its video pad");
    pad.property::<gst::Array>("renditions")
        .iter()
        .filter_map(|v| v.get::<gst::Structure>().ok()?.get("height").ok())
        .collect()
}

#[test]
fn chromium_publishes_h264_and_watches() {
    browser_round_trip("codec=h264");
}

#[test]
fn chromium_publishes_vp8_and_watches() {
    browser_round_trip("codec=vp8");
}

/// A page that publishes with simulcast (three RID encodings, no video
/// SSRCs in its offer) keeps its session: the gateway takes one encoding.
/// Before, webrtcbin took its video for a second audio stream and the
/// session died half a second after the answer.
#[test]
fn chromium_publishes_with_simulcast_and_watches() {
    browser_round_trip("codec=vp8&simulcast=1");
}

/// Chromium's camera, published with `?ladder=1`: the gateway encodes it
/// into three renditions, which a moqsrc and a Chromium viewer play.
#[test]
fn chromium_publishes_a_ladder_and_watches() {
    browser_round_trip("codec=h264&ladder=1");
}

/// Chromium watches a broadcast with renditions (the `ladder` preset) over
/// WHEP: its transport-wide feedback reaches the gateway's congestion
/// control, whose estimates of the link drive the viewer's rendition (on
/// loopback: the best, 1280x720). A second page saying its link carries
/// 1 Mbit/s (`&max-bitrate=`) gets 640x360.
#[test]
fn chromium_watches_the_rendition_its_link_carries() {
    let Some(binary) = chromium() else {
        return;
    };
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    LazyLock::force(&RELAY);
    let server = Server::start(Options::new("127.0.0.1:0".parse().unwrap(), RELAY.url()))
        .expect("the serve mode starts");
    let broadcast = unique("ladder");
    let publisher = ladder_publisher(&broadcast);
    let page = format!("http://{}/?watch={broadcast}", server.addr());
    let viewer = Browser::open(&binary, &page, "moq-gateway:");
    viewer.wait_for("framesDecoded", 30, Duration::from_secs(40));
    assert_eq!(viewer.value("frameHeight"), 720, "{:#?}", viewer.recent(5));
    wait::until(
        "estimates of the viewer's link",
        Duration::from_secs(20),
        || server.link_estimates() > 0,
    );
    drop(viewer);

    let capped = Browser::open(
        &binary,
        &format!("{page}&max-bitrate=1000000"),
        "moq-gateway:",
    );
    capped.wait_for("framesDecoded", 30, Duration::from_secs(40));
    assert_eq!(capped.value("frameHeight"), 360, "{:#?}", capped.recent(5));
    publisher.check();
}
