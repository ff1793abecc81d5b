// SPDX-License-Identifier: MIT OR Apache-2.0

//! The relay restarts under a running moqsink: the pipeline keeps PLAYING,
//! no ERROR, and a subscriber of the restarted relay gets frames again.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::*;
use gst::prelude::*;

/// A moqsrc pipeline counting the video buffers it receives.
fn counting_subscriber(url: &str, broadcast: &str) -> (gst::Pipeline, Arc<AtomicU64>) {
    let pipeline = gst::parse::launch(&format!(
        "moqsrc name=src url={url} broadcast={broadcast} tls-disable-verify=true ! fakesink name=out signal-handoffs=true"
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let count = Arc::new(AtomicU64::new(0));
    let counted = count.clone();
    pipeline
        .by_name("out")
        .unwrap()
        .connect("handoff", false, move |_| {
            counted.fetch_add(1, Ordering::Relaxed);
            None
        });
    (pipeline, count)
}

fn wait_frames(pipeline: &gst::Pipeline, count: &AtomicU64, n: u64, timeout: Duration) -> Duration {
    let start = Instant::now();
    let bus = pipeline.bus().unwrap();
    while count.load(Ordering::Relaxed) < n {
        assert!(
            start.elapsed() < timeout,
            "fewer than {n} frames within {timeout:?}"
        );
        if let Some(msg) = bus.timed_pop_filtered(
            gst::ClockTime::from_mseconds(20),
            &[gst::MessageType::Error],
        ) {
            panic!("subscriber error: {msg:?}");
        }
    }
    start.elapsed()
}

#[test]
fn moqsink_publishes_again_after_a_relay_restart() {
    init();
    let mut relay = relay::Restartable::start().expect("relay starts");
    let broadcast = unique_broadcast("restart");
    let publisher = gst::parse::launch(&format!(
        "videotestsrc is-live=true ! video/x-raw,format=I420,width=160,height=120,framerate=30/1 \
         ! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=15 ! h264parse \
         ! moqsink url={} broadcast={broadcast} tls-disable-verify=true",
        relay.url()
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    publisher.set_state(gst::State::Playing).unwrap();

    let (sub, count) = counting_subscriber(&relay.url(), &broadcast);
    sub.set_state(gst::State::Playing).unwrap();
    wait_frames(&sub, &count, 10, Duration::from_secs(20));
    sub.set_state(gst::State::Null).unwrap();

    relay.stop();
    let outage = Instant::now();
    relay.resume().expect("relay starts again on the same port");
    let outage = outage.elapsed();

    let (sub, count) = counting_subscriber(&relay.url(), &broadcast);
    sub.set_state(gst::State::Playing).unwrap();
    let back = wait_frames(&sub, &count, 10, Duration::from_secs(20));
    eprintln!(
        "relay down for {outage:?}; a new subscriber had frames {back:?} after the relay was back"
    );
    sub.set_state(gst::State::Null).unwrap();

    let bus = publisher.bus().unwrap();
    assert!(
        bus.pop_filtered(&[gst::MessageType::Error]).is_none(),
        "the publisher posted an error"
    );
    assert_eq!(publisher.current_state(), gst::State::Playing);
    publisher.set_state(gst::State::Null).unwrap();
}
