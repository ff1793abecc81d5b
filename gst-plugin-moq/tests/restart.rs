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
    let bus = pipeline.bus().unwrap();
    wait::until(&format!("{n} frames"), timeout, || {
        if let Some(msg) = bus.pop_filtered(&[gst::MessageType::Error]) {
            panic!("subscriber error: {msg:?}");
        }
        count.load(Ordering::Relaxed) >= n
    })
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

/// A publisher of `broadcast`: small H.264 at 30 fps.
fn publisher(url: &str, broadcast: &str) -> gst::Pipeline {
    let pipeline = gst::parse::launch(&format!(
        "videotestsrc is-live=true ! video/x-raw,format=I420,width=160,height=120,framerate=30/1 \
         ! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=15 ! h264parse \
         ! moqsink url={url} broadcast={broadcast} tls-disable-verify=true"
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    pipeline
}

/// Counts the pads moqsrc adds and the EOS events leaving them.
fn watch_pads(sub: &gst::Pipeline) -> (Arc<AtomicU64>, Arc<AtomicU64>) {
    let (pads, eos) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let (p, e) = (pads.clone(), eos.clone());
    sub.by_name("src")
        .unwrap()
        .connect_pad_added(move |_, pad| {
            p.fetch_add(1, Ordering::SeqCst);
            let e = e.clone();
            pad.add_probe(gst::PadProbeType::EVENT_DOWNSTREAM, move |_, info| {
                if matches!(info.event().map(|ev| ev.type_()), Some(gst::EventType::Eos)) {
                    e.fetch_add(1, Ordering::SeqCst);
                }
                gst::PadProbeReturn::Ok
            });
        });
    (pads, eos)
}

/// The relay restarts under a running moqsink and moqsrc: both keep PLAYING,
/// and the subscriber goes on on the same pad.
#[test]
fn moqsrc_resubscribes_after_a_relay_restart() {
    init();
    let mut relay = relay::Restartable::start().expect("relay starts");
    let broadcast = unique_broadcast("resubscribe");
    let publisher = publisher(&relay.url(), &broadcast);
    let (sub, count) = counting_subscriber(&relay.url(), &broadcast);
    let (pads, eos) = watch_pads(&sub);
    sub.set_state(gst::State::Playing).unwrap();
    wait_frames(&sub, &count, 10, Duration::from_secs(20));

    relay.stop();
    let down = Instant::now();
    let before = count.load(Ordering::Relaxed);
    relay.resume().expect("relay starts again on the same port");
    let outage = down.elapsed();
    let back = wait_frames(&sub, &count, before + 10, Duration::from_secs(20));
    eprintln!(
        "relay down for {outage:?}; the subscriber had frames again {back:?} after it was back"
    );

    no_error(&publisher, "the publisher");
    no_error(&sub, "the subscriber");
    assert_eq!(pads.load(Ordering::SeqCst), 1, "moqsrc made new pads");
    assert_eq!(eos.load(Ordering::SeqCst), 0, "moqsrc sent EOS");
    let stats = sub
        .by_name("src")
        .unwrap()
        .property::<gst::Structure>("stats");
    assert!(stats.get::<u64>("resubscriptions").unwrap() >= 1, "{stats}");
    assert!(stats.get::<u64>("reconnects").unwrap() >= 1, "{stats}");
    let sink_stats = by_factory(&publisher, "moqsink").property::<gst::Structure>("stats");
    eprintln!("after the restart: {stats}\n{sink_stats}");
    assert!(
        sink_stats.get::<u64>("reconnects").unwrap() >= 1,
        "{sink_stats}"
    );
    sub.set_state(gst::State::Null).unwrap();
    publisher.set_state(gst::State::Null).unwrap();
}

/// The publisher stops (no EOS: a crash or restart) and a new one publishes
/// the same broadcast: moqsrc keeps its pad and goes on.
#[test]
fn moqsrc_survives_a_publisher_restart() {
    init();
    let url = RELAY.url();
    let broadcast = unique_broadcast("republish");
    let first = publisher(&url, &broadcast);
    let (sub, count) = counting_subscriber(&url, &broadcast);
    let (pads, eos) = watch_pads(&sub);
    sub.set_state(gst::State::Playing).unwrap();
    wait_frames(&sub, &count, 10, Duration::from_secs(20));
    first.set_state(gst::State::Null).unwrap();
    // The subscriber sees the broadcast lost (a WARNING) before it is back.
    let warnings = watch_bus(
        &sub,
        Duration::from_secs(10),
        "a warning about the lost relay",
        |w| !w.is_empty(),
    );
    eprintln!("the subscriber said: {warnings:?}");
    let before = count.load(Ordering::Relaxed);
    let restarted = Instant::now();
    let second = publisher(&url, &broadcast);
    let back = wait_frames(&sub, &count, before + 10, Duration::from_secs(20));
    eprintln!("frames again {back:?} after the publisher restarted");
    no_error(&sub, "the subscriber");
    assert_eq!(pads.load(Ordering::SeqCst), 1, "moqsrc made new pads");
    assert_eq!(eos.load(Ordering::SeqCst), 0, "moqsrc sent EOS");
    let _ = restarted;
    sub.set_state(gst::State::Null).unwrap();
    second.set_state(gst::State::Null).unwrap();
}

/// With reconnect off, losing the relay is an error on the bus.
#[test]
fn reconnect_off_makes_a_lost_relay_an_error() {
    init();
    let mut relay = relay::Restartable::start().expect("relay starts");
    let broadcast = unique_broadcast("noreconnect");
    let publisher = publisher(&relay.url(), &broadcast);
    let sub = gst::parse::launch(&format!(
        "moqsrc name=src url={} broadcast={broadcast} tls-disable-verify=true reconnect=false ! fakesink",
        relay.url()
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    sub.set_state(gst::State::Playing).unwrap();
    let src = sub.by_name("src").unwrap();
    // Playing, not only connected: a relay lost before the catalog came is
    // a catalog error, whatever `reconnect` says.
    watch_bus(
        &sub,
        Duration::from_secs(10),
        "a pad from the catalog",
        |_| status(&src) == "connected" && !src.src_pads().is_empty(),
    );
    relay.stop();
    let (msg, _) = wait_error(&sub, Duration::from_secs(10)).expect("an error on the bus");
    assert!(msg.contains("reconnect is off"), "{msg}");
    sub.set_state(gst::State::Null).unwrap();
    publisher.set_state(gst::State::Null).unwrap();
}
