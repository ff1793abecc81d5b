// SPDX-License-Identifier: MIT OR Apache-2.0

//! Renditions: a ladder of three H.264 encodings of one source published by
//! one moqsink, played by moqsrc through the suite's proxy with the link
//! from the relay capped. moqsrc's one video pad moves down to what the
//! link carries and back up when the cap is lifted; explicit properties pick
//! what they say.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::proxy::{Impairment, Proxy};
use common::*;
use gst::prelude::*;

const CLEAN: Impairment = Impairment {
    loss: 0.0,
    delay: Duration::from_millis(5),
    jitter: Duration::ZERO,
    reorder: 0.0,
    seed: 1,
};

/// The ladder's tracks, as moqsink names them from its pads.
const HIGH: &str = "0.avc3";
const MID: &str = "1.avc3";
const LOW: &str = "2.avc3";

/// One source (noise, so each encoder spends its whole bitrate) encoded
/// three times, 2.5 Mbit/s, 800 kbit/s and 250 kbit/s, a keyframe every 30
/// frames in all three (aligned: the same frames, no scene-cut keyframes).
fn ladder(broadcast: &str) -> gst::Pipeline {
    let rung = |width: u32, height: u32, kbps: u32, pad: &str| {
        format!(
            "t. ! queue ! videoscale ! video/x-raw,width={width},height={height} \
             ! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=30 bitrate={kbps} \
               option-string=scenecut=0 ! h264parse ! sink.{pad} "
        )
    };
    pipeline(&format!(
        "videotestsrc is-live=true pattern=snow \
         ! video/x-raw,format=I420,width=640,height=360,framerate=30/1 ! tee name=t \
         {} {} {} moqsink name=sink url={} broadcast={broadcast} tls-disable-verify=true",
        rung(640, 360, 2500, "video_0"),
        rung(320, 180, 800, "video_1"),
        rung(160, 90, 250, "video_2"),
        RELAY.url()
    ))
}

/// What reached the subscriber's sink: arrival of each buffer, and the
/// caps heights in order.
#[derive(Default)]
struct Seen {
    arrivals: Vec<Instant>,
    heights: Vec<i32>,
}

fn watch_sink(p: &gst::Pipeline) -> Arc<Mutex<Seen>> {
    let seen: Arc<Mutex<Seen>> = Arc::default();
    let kept = seen.clone();
    p.by_name("out")
        .unwrap()
        .static_pad("sink")
        .unwrap()
        .add_probe(
            gst::PadProbeType::BUFFER | gst::PadProbeType::EVENT_DOWNSTREAM,
            move |_, info| {
                let mut seen = kept.lock().unwrap();
                if info.buffer().is_some() {
                    seen.arrivals.push(Instant::now());
                } else if let Some(gst::EventView::Caps(caps)) = info.event().map(|e| e.view())
                    && let Ok(height) = caps.caps().structure(0).unwrap().get::<i32>("height")
                {
                    seen.heights.push(height);
                }
                gst::PadProbeReturn::Ok
            },
        );
    seen
}

/// The `moqsrc-switch` messages posted so far, as (from, to, reason); an
/// ERROR fails the test.
fn drain_switches(p: &gst::Pipeline, switches: &mut Vec<(String, String, String)>) {
    let bus = p.bus().unwrap();
    while let Some(msg) = bus.pop_filtered(&[gst::MessageType::Element, gst::MessageType::Error]) {
        match msg.view() {
            gst::MessageView::Error(e) => panic!("ERROR: {} ({:?})", e.error(), e.debug()),
            gst::MessageView::Element(e) => {
                if let Some(s) = e.structure()
                    && s.name() == "moqsrc-switch"
                {
                    eprintln!("switch: {s}");
                    let field = |f: &str| s.get::<String>(f).unwrap_or_default();
                    switches.push((field("from"), field("to"), field("reason")));
                }
            }
            _ => {}
        }
    }
}

fn stat(src: &gst::Element, field: &str) -> u64 {
    src.property::<gst::Structure>("stats")
        .get::<u64>(field)
        .unwrap_or(0)
}

/// The longest gap between two buffers after `from`.
fn longest_gap(seen: &Seen, from: Instant) -> Duration {
    seen.arrivals
        .windows(2)
        .filter(|w| w[0] >= from)
        .map(|w| w[1] - w[0])
        .max()
        .unwrap_or_default()
}

/// The link capped at 1.2 Mbit/s: moqsrc starts on 2.5 Mbit/s, goes down to
/// 800 kbit/s and plays it with no group lost; the cap lifted, it climbs
/// back; the cap cut to 400 kbit/s, it steps down to 250 kbit/s with no
/// stall.
#[test]
fn the_video_pad_follows_the_link() {
    init();
    let broadcast = unique_broadcast("abr");
    let proxy = Proxy::start(RELAY.addr, CLEAN);
    proxy.set_rate(1_200_000);
    let publisher = ladder(&broadcast);
    publisher.set_state(gst::State::Playing).unwrap();
    let p = pipeline(&format!(
        "moqsrc name=src url=https://{}/anon broadcast={broadcast} tls-disable-verify=true \
         ! fakesink name=out sync=false",
        proxy.addr
    ));
    let src = p.by_name("src").unwrap();
    let seen = watch_sink(&p);
    p.set_state(gst::State::Playing).unwrap();
    let mut switches = Vec::new();

    wait::until(
        "a switch down to 800 kbit/s",
        Duration::from_secs(30),
        || {
            drain_switches(&p, &mut switches);
            switches.iter().any(|(_, to, _)| to == MID)
        },
    );
    // Played on the rendition that fits: no group lost, frames all along.
    let settled = Instant::now();
    let lost = stat(&src, "discontinuities");
    std::thread::sleep(Duration::from_secs(8));
    drain_switches(&p, &mut switches);
    eprintln!("switches so far: {switches:?}");
    let track = src
        .static_pad("video_0")
        .unwrap()
        .property::<String>("track");
    assert_eq!(track, MID, "{switches:?}");
    assert_eq!(
        stat(&src, "discontinuities"),
        lost,
        "groups lost at 800 kbit/s"
    );
    let gap = longest_gap(&seen.lock().unwrap(), settled);
    assert!(
        gap < Duration::from_secs(1),
        "a {gap:?} stall at 800 kbit/s"
    );

    // The cap lifted: back up to the top.
    proxy.set_rate(0);
    wait::until(
        "a climb back to 2.5 Mbit/s",
        Duration::from_secs(40),
        || {
            drain_switches(&p, &mut switches);
            switches.last().is_some_and(|(_, to, _)| to == HIGH)
        },
    );

    // 400 kbit/s: down to the lowest, before the picture stops.
    proxy.set_rate(400_000);
    let cut = Instant::now();
    wait::until(
        "a switch down to 250 kbit/s",
        Duration::from_secs(30),
        || {
            drain_switches(&p, &mut switches);
            switches.last().is_some_and(|(_, to, _)| to == LOW)
        },
    );
    std::thread::sleep(Duration::from_secs(3));
    let gap = longest_gap(&seen.lock().unwrap(), cut);
    eprintln!("longest gap after the drop to 400 kbit/s: {gap:?}; switches: {switches:?}");
    // Typically under 1.5 s; 2.6 s was seen once on this 2-core machine
    // with the rest of the suite's tests of this file running beside it.
    // Without the switch the picture would not come back at all.
    assert!(
        gap < Duration::from_secs(4),
        "a {gap:?} stall after the drop"
    );
    let heights = seen.lock().unwrap().heights.clone();
    assert_eq!(heights.first(), Some(&360), "{heights:?}");
    assert_eq!(heights.last(), Some(&90), "{heights:?}");
    assert!(heights.contains(&180), "{heights:?}");
    assert!(stat(&src, "switches-down") >= 2 && stat(&src, "switches-up") >= 1);
    p.set_state(gst::State::Null).unwrap();
    publisher.set_state(gst::State::Null).unwrap();
}

/// The first caps height on `pad` of a moqsrc with `props`, and its pads.
fn first_height(broadcast: &str, props: &str) -> (i32, Vec<String>, String) {
    let p = pipeline(&format!(
        "moqsrc name=src url={} broadcast={broadcast} tls-disable-verify=true {props} \
         ! fakesink name=out sync=false",
        RELAY.url()
    ));
    let seen = watch_sink(&p);
    p.set_state(gst::State::Playing).unwrap();
    wait::until("caps on the video pad", Duration::from_secs(20), || {
        !seen.lock().unwrap().heights.is_empty()
    });
    let src = p.by_name("src").unwrap();
    let pads = src
        .src_pads()
        .iter()
        .map(|p| p.name().to_string())
        .collect();
    let track = src.src_pads()[0].property::<String>("track");
    p.set_state(gst::State::Null).unwrap();
    let height = seen.lock().unwrap().heights[0];
    (height, pads, track)
}

/// `rendition`, `max-video-height`, `max-bitrate` and `renditions-per-pad`
/// pick what they say; a rendition the catalog lacks is an ERROR naming
/// the ones it has.
#[test]
fn explicit_properties_pick_what_they_say() {
    init();
    let broadcast = unique_broadcast("pick");
    let publisher = ladder(&broadcast);
    publisher.set_state(gst::State::Playing).unwrap();

    let (height, pads, track) = first_height(&broadcast, "");
    assert_eq!((height, track.as_str()), (360, HIGH), "{pads:?}");
    assert_eq!(pads, ["video_0"], "one pad per kind by default");
    let (height, _, track) = first_height(&broadcast, &format!("rendition={LOW}"));
    assert_eq!((height, track.as_str()), (90, LOW));
    let (height, _, _) = first_height(&broadcast, "max-video-height=200");
    assert_eq!(height, 180);
    let (height, _, _) = first_height(&broadcast, "max-video-height=200 abr=false");
    assert_eq!(height, 180);
    let (height, _, _) = first_height(&broadcast, "max-video-height=10");
    assert_eq!(height, 90, "nothing fits: the lowest plays");

    // A pad per rendition: the application links the one it wants.
    let p = pipeline(&format!(
        "moqsrc name=src url={} broadcast={broadcast} tls-disable-verify=true renditions-per-pad=true \
         src.video_2 ! fakesink name=out sync=false",
        RELAY.url()
    ));
    let seen = watch_sink(&p);
    p.set_state(gst::State::Playing).unwrap();
    wait::until("the third pad's caps", Duration::from_secs(20), || {
        !seen.lock().unwrap().heights.is_empty()
    });
    assert_eq!(p.by_name("src").unwrap().src_pads().len(), 3);
    assert_eq!(seen.lock().unwrap().heights[0], 90);
    p.set_state(gst::State::Null).unwrap();

    let p = pipeline(&format!(
        "moqsrc url={} broadcast={broadcast} tls-disable-verify=true rendition=nope ! fakesink",
        RELAY.url()
    ));
    p.set_state(gst::State::Playing).unwrap();
    let (error, _) = wait_error(&p, Duration::from_secs(20)).expect("no error for rendition=nope");
    p.set_state(gst::State::Null).unwrap();
    publisher.set_state(gst::State::Null).unwrap();
    assert!(
        error.contains("'nope'") && error.contains(HIGH) && error.contains(LOW),
        "{error}"
    );
}

/// The video pad lists its renditions; `max-video-height` and
/// `max-bitrate` set while playing move it at a group boundary: down out
/// of what they no longer allow, and (with no adaptive choice) up to the
/// best they allow again, with no gap longer than a group.
#[test]
fn limits_set_while_playing_move_the_pad() {
    init();
    let broadcast = unique_broadcast("live-limits");
    let publisher = ladder(&broadcast);
    publisher.set_state(gst::State::Playing).unwrap();
    let p = pipeline(&format!(
        "moqsrc name=src url={} broadcast={broadcast} tls-disable-verify=true abr=false \
         ! fakesink name=out sync=false",
        RELAY.url()
    ));
    let seen = watch_sink(&p);
    p.set_state(gst::State::Playing).unwrap();
    let src = p.by_name("src").unwrap();
    let pad = || src.src_pads()[0].property::<String>("track");
    let mut switches = Vec::new();
    wait::until(
        "frames of the best rendition",
        Duration::from_secs(20),
        || seen.lock().unwrap().arrivals.len() > 30,
    );
    assert_eq!(pad(), HIGH);
    // The pad tells what it may move between, best first. The publisher
    // sets no bitrates: moqsink measures them, and they reach the catalog
    // (and the listing) once measured.
    let listing = || -> Vec<(String, i32, Option<u64>)> {
        src.src_pads()[0]
            .property::<gst::Array>("renditions")
            .iter()
            .map(|v| {
                let s = v.get::<gst::Structure>().unwrap();
                (
                    s.get("track").unwrap(),
                    s.get("height").unwrap(),
                    s.get("bitrate").ok(),
                )
            })
            .collect()
    };
    wait::until(
        "measured bitrates in the listing",
        Duration::from_secs(15),
        || listing().iter().all(|(_, _, b)| b.is_some()),
    );
    let listed: Vec<(String, i32, u64)> = listing()
        .into_iter()
        .map(|(t, h, b)| (t, h, b.unwrap_or_default()))
        .collect();
    let tracks: Vec<&str> = listed.iter().map(|(t, _, _)| t.as_str()).collect();
    assert_eq!(tracks, [HIGH, MID, LOW], "{listed:?}");
    let heights: Vec<i32> = listed.iter().map(|(_, h, _)| *h).collect();
    assert_eq!(heights, [360, 180, 90]);
    assert!(listed.iter().all(|(_, _, b)| *b > 0), "{listed:?}");

    let lowered = Instant::now();
    src.set_property("max-video-height", 200u32);
    wait::until(
        "the pad on the middle rendition",
        Duration::from_secs(10),
        || {
            drain_switches(&p, &mut switches);
            pad() == MID
        },
    );
    src.set_property("max-bitrate", 300_000u64);
    wait::until(
        "the pad on the lowest rendition",
        Duration::from_secs(10),
        || {
            drain_switches(&p, &mut switches);
            pad() == LOW
        },
    );
    src.set_property("max-video-height", 0u32);
    src.set_property("max-bitrate", 0u64);
    wait::until("the pad back on the best", Duration::from_secs(10), || {
        drain_switches(&p, &mut switches);
        pad() == HIGH
    });
    let arrivals = seen.lock().unwrap().arrivals.len();
    wait::until("frames after the switches", Duration::from_secs(10), || {
        seen.lock().unwrap().arrivals.len() > arrivals + 30
    });
    drain_switches(&p, &mut switches);
    let seen = seen.lock().unwrap();
    let gap = longest_gap(&seen, lowered);
    p.set_state(gst::State::Null).unwrap();
    publisher.set_state(gst::State::Null).unwrap();

    let reasons: Vec<&str> = switches.iter().map(|(_, _, why)| why.as_str()).collect();
    assert_eq!(reasons, ["limit"; 3], "{switches:?}");
    assert_eq!(seen.heights, [360, 180, 90, 360]);
    assert_eq!(
        (stat(&src, "switches-down"), stat(&src, "switches-up")),
        (2, 1)
    );
    assert!(gap < Duration::from_secs(1), "a {gap:?} gap");
}
