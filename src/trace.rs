// SPDX-License-Identifier: MIT OR Apache-2.0

//! Where a video frame's time goes inside `moq-gateway serve`, when
//! `MOQ_GATEWAY_TRACE=1` is set: each frame is stamped with the wall clock
//! as it leaves whipserversrc (its first RTP packet), enters moqsink, leaves
//! a viewer's moqsrc and enters that viewer's whepserversink. A frame is
//! known at every stage by the publisher's running time of it (the RTP
//! packets' and moqsink's timestamps, which moqsrc hands on in its
//! `timestamp/x-moq` meta). Every 10 s a line per broadcast goes to stderr:
//!
//! `trace cam: rtp->moqsink p50 0.4 p99 1.1 | moqsink->moqsrc p50 1.2 p99 4.0 |
//!  moqsrc->whepserversink p50 0.1 p99 0.3 ms (300 frames)`
//!
//! Off (the default) it costs nothing: no probe is installed.

use std::collections::{BTreeMap, HashMap};
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

use gst::prelude::*;

/// The stages a frame is stamped at, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// First RTP packet out of whipserversrc.
    Rtp = 0,
    MoqSink = 1,
    MoqSrc = 2,
    WhepSink = 3,
}

const STAGES: usize = 4;
const NAMES: [&str; STAGES - 1] = ["rtp->moqsink", "moqsink->moqsrc", "moqsrc->whepserversink"];
/// Frames older than this are reported and forgotten.
const WINDOW: Duration = Duration::from_secs(10);

/// Whether `MOQ_GATEWAY_TRACE` asks for tracing.
pub fn enabled() -> bool {
    static ON: LazyLock<bool> =
        LazyLock::new(|| std::env::var("MOQ_GATEWAY_TRACE").is_ok_and(|v| v == "1"));
    *ON
}

#[derive(Default)]
struct Broadcast {
    /// Per frame (publisher running time, µs): when it reached each stage.
    frames: BTreeMap<u64, [Option<Instant>; STAGES]>,
    since: Option<Instant>,
}

static TRACES: LazyLock<Mutex<HashMap<String, Broadcast>>> = LazyLock::new(Mutex::default);

fn stamp(broadcast: &str, ts_us: u64, stage: Stage) {
    let now = Instant::now();
    let mut traces = TRACES.lock().unwrap_or_else(|e| e.into_inner());
    let trace = traces.entry(broadcast.to_owned()).or_default();
    let since = *trace.since.get_or_insert(now);
    let slot = &mut trace.frames.entry(ts_us).or_default()[stage as usize];
    // The first arrival counts (the first RTP packet of a frame, the first
    // viewer of a broadcast).
    slot.get_or_insert(now);
    if now.duration_since(since) >= WINDOW {
        let frames = std::mem::take(&mut trace.frames);
        trace.since = Some(now);
        drop(traces);
        report(broadcast, frames);
    }
}

fn report(broadcast: &str, frames: BTreeMap<u64, [Option<Instant>; STAGES]>) {
    let mut line = format!("trace {broadcast}:");
    let mut complete = 0;
    for (i, name) in NAMES.iter().enumerate() {
        let mut ms: Vec<f64> = frames
            .values()
            .filter_map(|t| Some(t[i + 1]?.checked_duration_since(t[i]?)?.as_secs_f64() * 1e3))
            .collect();
        ms.sort_by(f64::total_cmp);
        complete = complete.max(ms.len());
        if ms.is_empty() {
            line.push_str(&format!(" {name} -"));
        } else {
            let at = |q: f64| ms[((ms.len() - 1) as f64 * q).round() as usize];
            line.push_str(&format!(" {name} p50 {:.2} p99 {:.2} |", at(0.5), at(0.99)));
        }
    }
    eprintln!("{} ms ({complete} frames)", line.trim_end_matches(" |"));
}

/// Stamps every buffer through `pad` (a video pad) at `stage`, keyed by its
/// running time (`Rtp`, `MoqSink`) or its `timestamp/x-moq` meta.
pub fn probe(pad: &gst::Pad, broadcast: &str, stage: Stage) {
    if !enabled() {
        return;
    }
    let broadcast = broadcast.to_owned();
    let meta_caps = gst::Caps::new_empty_simple("timestamp/x-moq");
    pad.add_probe(gst::PadProbeType::BUFFER, move |pad, info| {
        let Some(buffer) = info.buffer() else {
            return gst::PadProbeReturn::Ok;
        };
        let ts = match stage {
            Stage::Rtp | Stage::MoqSink => pad
                .sticky_event::<gst::event::Segment>(0)
                .and_then(|e| {
                    e.segment()
                        .downcast_ref::<gst::ClockTime>()
                        .and_then(|s| s.to_running_time(buffer.pts()))
                })
                .map(|t| t.useconds()),
            Stage::MoqSrc | Stage::WhepSink => buffer
                .iter_meta::<gst::ReferenceTimestampMeta>()
                .find(|m| m.reference().can_intersect(&meta_caps))
                .map(|m| m.timestamp().useconds()),
        };
        if let Some(ts) = ts {
            stamp(&broadcast, ts, stage);
        }
        gst::PadProbeReturn::Ok
    });
}
