// SPDX-License-Identifier: MIT OR Apache-2.0

//! moqsink driven pad by pad with `gst_check::Harness` against the test
//! relay: what it tells upstream (accept-caps, flow returns, keyframe
//! requests) for what it is given.

mod common;

use std::time::Duration;

use common::{RELAY, init, status, unique_broadcast, wait};
use gst::prelude::*;

/// A moqsink with its request pad `pad` linked to a harness, on the relay,
/// connected. The harness sets a sink element PLAYING as it takes it, so
/// the element is made with its properties first. Waiting for the
/// connection keeps a handshake from being under way when the test binary
/// exits: the relay's TLS would then seed aws-lc's random generator on a
/// thread while the process tears it down, and aws-lc aborts.
fn harness(pad: &str) -> gst_check::Harness {
    init();
    let sink = gst::ElementFactory::make("moqsink")
        .property("url", RELAY.url())
        .property("broadcast", unique_broadcast("harness"))
        .property("tls-disable-verify", true)
        .build()
        .expect("moqsink");
    let h = gst_check::Harness::with_element(&sink, Some(pad), None);
    wait::until("moqsink connected", Duration::from_secs(10), || {
        status(&sink) == "connected"
    });
    h
}

fn accepts(h: &gst_check::Harness, caps: &str) -> bool {
    let caps: gst::Caps = caps.parse().unwrap();
    h.srcpad().unwrap().peer_query_accept_caps(&caps)
}

fn stat(h: &gst_check::Harness, field: &str) -> u64 {
    let stats = h.element().unwrap().property::<gst::Structure>("stats");
    stats.get::<u64>(field).unwrap()
}

/// Opus caps and `n` packets of 20 ms from `start` (moqsink does not parse
/// Opus payloads: any bytes are a packet).
fn opus_buffers(start: u64, n: u64) -> Vec<gst::Buffer> {
    (start..start + n)
        .map(|i| {
            let mut buffer = gst::Buffer::from_slice(vec![0xfc; 60]);
            let b = buffer.get_mut().unwrap();
            b.set_pts(gst::ClockTime::from_mseconds(20 * i));
            b.set_duration(gst::ClockTime::from_mseconds(20));
            buffer
        })
        .collect()
}

const OPUS: &str = "audio/x-opus,channel-mapping-family=0,rate=48000,channels=2";

#[test]
fn accept_caps_tells_the_truth() {
    let video = harness("video_0");
    assert!(accepts(
        &video,
        "video/x-h264,stream-format=byte-stream,alignment=au,width=320,height=240"
    ));
    assert!(accepts(&video, "video/x-vp8,width=320,height=240"));
    // A codec it does not carry, a framing it does not take, audio on a
    // video pad. (Accept-caps queries carry fixed caps only.)
    assert!(!accepts(&video, "video/x-theora,width=320,height=240"));
    assert!(!accepts(
        &video,
        "video/x-h264,stream-format=avc,alignment=nal"
    ));
    assert!(!accepts(&video, OPUS));
    let audio = harness("audio_0");
    assert!(accepts(&audio, OPUS));
    assert!(!accepts(&audio, "video/x-vp8,width=320,height=240"));
}

#[test]
fn flow_returns_follow_the_track() {
    let mut h = harness("audio_0");
    h.play();
    // No caps yet: not negotiated (and an ERROR on the bus, see errors.rs).
    assert_eq!(
        h.push(opus_buffers(0, 1).remove(0)),
        Err(gst::FlowError::NotNegotiated)
    );
    h.set_src_caps_str(OPUS);
    for buffer in opus_buffers(0, 10) {
        assert_eq!(h.push(buffer), Ok(gst::FlowSuccess::Ok));
    }
    assert_eq!(stat(&h, "frames"), 10);
    assert_eq!(stat(&h, "groups"), 10, "every audio packet is a group");
    assert!(h.push_event(gst::event::Eos::new()));
    // A finished MoQ track does not restart.
    assert_eq!(
        h.push(opus_buffers(10, 1).remove(0)),
        Err(gst::FlowError::Eos)
    );
    assert_eq!(stat(&h, "frames"), 10);
}

/// VP8 frames from the real encoder, one keyframe then deltas only.
fn vp8_frames(n: usize) -> (gst::Caps, Vec<gst::Buffer>) {
    init();
    let pipeline = gst::parse::launch(&format!(
        "videotestsrc num-buffers={n} ! video/x-raw,width=160,height=120,framerate=30/1 \
         ! vp8enc deadline=1 keyframe-max-dist=100000 ! appsink name=out sync=false"
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let out = pipeline
        .by_name("out")
        .unwrap()
        .downcast::<gst_app::AppSink>()
        .unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    let mut frames = Vec::new();
    let mut caps = None;
    while let Ok(sample) = out.pull_sample() {
        caps = sample.caps_owned();
        frames.push(sample.buffer_owned().unwrap());
    }
    pipeline.set_state(gst::State::Null).unwrap();
    (caps.expect("caps"), frames)
}

fn keyframe_requests(h: &mut gst_check::Harness) -> usize {
    let mut n = 0;
    while let Some(event) = h.try_pull_upstream_event() {
        if gst_video::UpstreamForceKeyUnitEvent::parse(&event).is_ok() {
            n += 1;
        }
    }
    n
}

#[test]
fn long_groups_ask_for_a_keyframe() {
    let (caps, frames) = vp8_frames(40);
    assert!(
        frames[1..]
            .iter()
            .all(|f| f.flags().contains(gst::BufferFlags::DELTA_UNIT)),
        "one keyframe, then deltas"
    );
    let mut h = harness("video_0");
    h.element()
        .unwrap()
        .set_property("max-group-duration", 300u32);
    h.play();
    h.set_src_caps(caps);
    let mut asked_at = Vec::new();
    for (i, frame) in frames.into_iter().enumerate() {
        assert_eq!(h.push(frame), Ok(gst::FlowSuccess::Ok));
        if keyframe_requests(&mut h) > 0 {
            asked_at.push(i);
        }
    }
    // 30 fps, one group: the request comes once the group is 300 ms long
    // (frame 9), then at most once per 300 ms while no keyframe comes.
    assert_eq!(
        asked_at.first(),
        Some(&9),
        "requests at frames {asked_at:?}"
    );
    assert!(
        asked_at.windows(2).all(|w| w[1] - w[0] >= 9),
        "requests at frames {asked_at:?}"
    );
    assert_eq!(stat(&h, "groups"), 1);
    assert_eq!(stat(&h, "frames"), 40);
}

#[test]
fn a_start_mid_group_waits_for_a_keyframe() {
    let (caps, frames) = vp8_frames(10);
    let mut h = harness("video_0");
    h.element()
        .unwrap()
        .set_property("max-group-duration", 0u32);
    h.play();
    h.set_src_caps(caps);
    // The keyframe is lost: deltas are dropped, a keyframe is asked for once.
    for frame in frames.into_iter().skip(1) {
        assert_eq!(h.push(frame), Ok(gst::FlowSuccess::Ok));
    }
    assert_eq!(keyframe_requests(&mut h), 1);
    assert_eq!(stat(&h, "frames"), 0);
    assert_eq!(stat(&h, "dropped"), 9);
}
