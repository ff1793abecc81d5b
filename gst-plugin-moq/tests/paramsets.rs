// SPDX-License-Identifier: MIT OR Apache-2.0

//! Video without its in-band configuration on every keyframe, through a
//! real relay: x264enc's byte-stream output with its SPS/PPS removed by a
//! probe (after the first keyframe, or always), and av1enc's with its
//! sequence header removed the same way, as encoders and WebRTC
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

/// The temporal unit without its sequence header OBUs (type 1). Every OBU
/// of `obu-stream` carries its size (a LEB128 after the header).
fn strip_sequence_header(tu: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(tu.len());
    let mut at = 0;
    while at < tu.len() {
        let header = tu[at];
        let mut pos = at + 1 + usize::from(header & 0x04 != 0);
        assert!(header & 0x02 != 0, "an OBU without a size field");
        let mut size = 0usize;
        for shift in (0..).step_by(7) {
            let byte = tu[pos];
            pos += 1;
            size |= usize::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                break;
            }
        }
        let end = pos + size;
        if (header >> 3) & 0x0f != 1 {
            out.extend_from_slice(&tu[at..end]);
        }
        at = end;
    }
    out
}

/// What the publisher encodes, and how its keyframes lose their configuration.
#[derive(Clone, Copy)]
enum Codec {
    H264,
    Av1,
}

impl Codec {
    fn encoder(self) -> &'static str {
        match self {
            Codec::H264 => {
                "x264enc tune=zerolatency speed-preset=ultrafast key-int-max=15 \
                 ! video/x-h264,stream-format=byte-stream,alignment=au"
            }
            Codec::Av1 => {
                "av1enc cpu-used=10 usage-profile=realtime keyframe-max-dist=15 ! av1parse \
                 ! video/x-av1,stream-format=obu-stream,alignment=tu"
            }
        }
    }

    fn strip(self, data: &[u8]) -> Vec<u8> {
        match self {
            Codec::H264 => strip_parameter_sets(data),
            Codec::Av1 => strip_sequence_header(data),
        }
    }
}

struct Publisher {
    pipeline: gst::Pipeline,
    /// Force-key-unit requests moqsink sent upstream.
    requests: Arc<AtomicU64>,
}

/// An encoder (a keyframe every 15 frames, its configuration on each)
/// whose configuration is removed after the first `keep` keyframes.
fn publisher(codec: Codec, broadcast: &str, keep: u64) -> Publisher {
    let pipeline = pipeline(&format!(
        "videotestsrc is-live=true ! video/x-raw,format=I420,width=320,height=240,framerate=30/1 \
         ! {} ! identity name=strip \
         ! moqsink url={} broadcast={broadcast} tls-disable-verify=true",
        codec.encoder(),
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
            codec.strip(&map)
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

/// moqsrc -> decodebin3, counting decoded frames.
fn decoder(broadcast: &str) -> (gst::Pipeline, Arc<AtomicU64>) {
    let pipeline = pipeline(&format!(
        "moqsrc url={} broadcast={broadcast} tls-disable-verify=true \
         ! queue ! decodebin3 ! video/x-raw ! fakesink name=out sync=false",
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
    sent_once_reaches_late_joiners(Codec::H264);
}

/// The same with an AV1 sequence header sent only on the first keyframe.
#[test]
fn av1_sequence_header_sent_once_reaches_late_joiners() {
    sent_once_reaches_late_joiners(Codec::Av1);
}

fn sent_once_reaches_late_joiners(codec: Codec) {
    init();
    let broadcast = unique_broadcast("config-once");
    let publ = publisher(codec, &broadcast, 1);
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
    let publ = publisher(Codec::H264, &broadcast, 0);
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
