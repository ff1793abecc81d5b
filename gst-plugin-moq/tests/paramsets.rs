// SPDX-License-Identifier: MIT OR Apache-2.0

//! H.264 without in-band parameter sets on every keyframe, through a real
//! relay: x264enc's byte-stream output with its SPS/PPS removed by a probe
//! (after the first keyframe, or always), as encoders and WebRTC
//! depayloaders that send them once produce it.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::*;
use gst::prelude::*;

/// The Annex-B access unit without its SPS (7) and PPS (8) NAL units.
fn strip_parameter_sets(au: &[u8]) -> Vec<u8> {
    let mut starts = Vec::new();
    let mut i = 0;
    while i + 3 <= au.len() {
        if au[i] == 0 && au[i + 1] == 0 && au[i + 2] == 1 {
            starts.push(i + 3);
            i += 3;
        } else {
            i += 1;
        }
    }
    let mut out = Vec::with_capacity(au.len());
    for (n, &begin) in starts.iter().enumerate() {
        let end = starts.get(n + 1).map_or(au.len(), |next| next - 3);
        let unit = &au[begin..end];
        let unit = unit.strip_suffix(&[0]).unwrap_or(unit);
        if matches!(unit.first().map(|h| h & 0x1f), Some(7 | 8)) {
            continue;
        }
        out.extend_from_slice(&[0, 0, 0, 1]);
        out.extend_from_slice(unit);
    }
    out
}

struct Publisher {
    pipeline: gst::Pipeline,
    /// Force-key-unit requests moqsink sent upstream.
    requests: Arc<AtomicU64>,
}

/// x264enc (a keyframe every 15 frames, SPS/PPS on each) whose parameter
/// sets are removed after the first `keep` keyframes.
fn publisher(broadcast: &str, keep: u64) -> Publisher {
    let pipeline = pipeline(&format!(
        "videotestsrc is-live=true ! video/x-raw,format=I420,width=320,height=240,framerate=30/1 \
         ! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=15 \
         ! video/x-h264,stream-format=byte-stream,alignment=au ! identity name=strip \
         ! moqsink url={} broadcast={broadcast} tls-disable-verify=true",
        RELAY.url()
    ));
    let pad = pipeline
        .by_name("strip")
        .unwrap()
        .static_pad("src")
        .unwrap();
    let keyframes = AtomicU64::new(0);
    pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
        let Some(buffer) = info.buffer() else {
            return gst::PadProbeReturn::Ok;
        };
        if buffer.flags().contains(gst::BufferFlags::DELTA_UNIT) {
            return gst::PadProbeReturn::Ok;
        }
        if keyframes.fetch_add(1, Ordering::SeqCst) < keep {
            return gst::PadProbeReturn::Ok;
        }
        let stripped = {
            let map = buffer.map_readable().unwrap();
            strip_parameter_sets(&map)
        };
        let mut out = gst::Buffer::from_mut_slice(stripped);
        {
            let out = out.get_mut().unwrap();
            out.set_pts(buffer.pts());
            out.set_dts(buffer.dts());
            out.set_duration(buffer.duration());
            out.set_flags(buffer.flags());
        }
        info.data = Some(gst::PadProbeData::Buffer(out));
        gst::PadProbeReturn::Ok
    });
    let requests = Arc::new(AtomicU64::new(0));
    let counted = requests.clone();
    pad.add_probe(gst::PadProbeType::EVENT_UPSTREAM, move |_, info| {
        if let Some(event) = info.event()
            && gst_video::UpstreamForceKeyUnitEvent::parse(event).is_ok()
        {
            counted.fetch_add(1, Ordering::SeqCst);
        }
        gst::PadProbeReturn::Ok
    });
    Publisher { pipeline, requests }
}

/// moqsrc -> h264parse -> avdec_h264, counting decoded frames.
fn decoder(broadcast: &str) -> (gst::Pipeline, Arc<AtomicU64>) {
    let pipeline = pipeline(&format!(
        "moqsrc url={} broadcast={broadcast} tls-disable-verify=true \
         ! queue ! h264parse ! avdec_h264 ! fakesink name=out sync=false",
        RELAY.url()
    ));
    let decoded = Arc::new(AtomicU64::new(0));
    let seen = decoded.clone();
    pipeline
        .by_name("out")
        .unwrap()
        .static_pad("sink")
        .unwrap()
        .add_probe(gst::PadProbeType::BUFFER, move |_, _| {
            seen.fetch_add(1, Ordering::SeqCst);
            gst::PadProbeReturn::Ok
        });
    (pipeline, decoded)
}

/// Parameter sets only on the first keyframe: moqsink repeats them on every
/// later one, so a subscriber that joins seconds later (its first keyframe
/// has none of its own) decodes.
#[test]
fn parameter_sets_sent_once_reach_late_joiners() {
    init();
    let broadcast = unique_broadcast("sps-once");
    let publ = publisher(&broadcast, 1);
    publ.pipeline.set_state(gst::State::Playing).unwrap();
    // Several groups later (a keyframe every half second).
    let sink = by_factory(&publ.pipeline, "moqsink");
    let warnings = watch_bus(
        &publ.pipeline,
        Duration::from_secs(20),
        "four published groups",
        |_| {
            sink.property::<gst::Structure>("stats")
                .get::<u64>("groups")
                .unwrap_or(0)
                >= 4
        },
    );
    assert!(warnings.is_empty(), "{warnings:#?}");
    let (sub, decoded) = decoder(&broadcast);
    sub.set_state(gst::State::Playing).unwrap();
    let start = Instant::now();
    watch_bus(&sub, Duration::from_secs(15), "30 decoded frames", |_| {
        decoded.load(Ordering::SeqCst) >= 30
    });
    assert!(
        decoded.load(Ordering::SeqCst) >= 30,
        "the late joiner decoded {} frames",
        decoded.load(Ordering::SeqCst)
    );
    eprintln!(
        "late joiner: 30 frames decoded {:?} after it started",
        start.elapsed()
    );
    let warnings = no_error(&publ.pipeline, "publisher");
    assert!(warnings.is_empty(), "{warnings:#?}");
    sub.set_state(gst::State::Null).unwrap();
    publ.pipeline.set_state(gst::State::Null).unwrap();
}

/// No parameter sets at all: nothing undecodable is published, one WARNING
/// names what is missing, keyframes are asked for upstream, no ERROR.
#[test]
fn no_parameter_sets_is_a_warning() {
    init();
    let broadcast = unique_broadcast("sps-never");
    let publ = publisher(&broadcast, 0);
    publ.pipeline.set_state(gst::State::Playing).unwrap();
    // Requests go out once a second: three take two seconds, in which
    // more keyframes without parameter sets came.
    let warnings = watch_bus(
        &publ.pipeline,
        Duration::from_secs(10),
        "a warning and three keyframe requests",
        |w| !w.is_empty() && publ.requests.load(Ordering::SeqCst) >= 3,
    );
    let sink = by_factory(&publ.pipeline, "moqsink");
    let stats = sink.property::<gst::Structure>("stats");
    eprintln!(
        "warnings {warnings:#?}; {} keyframe requests; stats {stats}",
        publ.requests.load(Ordering::SeqCst)
    );
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
    assert!(
        warnings[0].contains("SPS/PPS") && warnings[0].contains("video_0"),
        "{warnings:#?}"
    );
    assert!(publ.requests.load(Ordering::SeqCst) >= 2);
    assert_eq!(stats.get::<u64>("frames").unwrap(), 0, "{stats}");
    publ.pipeline.set_state(gst::State::Null).unwrap();
}
