// SPDX-License-Identifier: MIT OR Apache-2.0

//! Where a video frame's time goes inside `moq-gateway serve`, when
//! `MOQ_GATEWAY_TRACE=1` is set: each frame is stamped with the wall clock
//! as it leaves whipserversrc (its first RTP packet), enters moqsink, leaves
//! a viewer's moqsrc and enters that viewer's whepserversink. A frame is
//! known at every stage by the publisher's running time of it (the RTP
//! packets' and moqsink's timestamps, which moqsrc hands on in its
//! `timestamp/x-moq` meta). Every 10 s a line per broadcast goes to stderr:
//!
//! `trace cam: udp->rtp p50 0.3 p99 0.9 | rtp->moqsink p50 0.4 p99 1.1 |
//!  moqsink->moqsrc p50 1.2 p99 4.0 | moqsrc->whepserversink p50 0.1 p99 0.3 ms
//!  (300 frames; per stage 300/300/300/300/300/300/300)`
//!
//! (`udp` is the frame's first packet leaving the ingest's ICE transport.)
//!
//! Off (the default) it costs nothing: no probe is installed.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use gst::prelude::*;

/// The stages a frame is stamped at, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// Its first RTP packet out of the ingest's ICE transport (nicesrc),
    /// still encrypted: stamped when that packet reaches `Rtp`.
    Udp = 0,
    /// First RTP packet out of whipserversrc (SRTP, RTP session and jitter
    /// buffer behind it).
    Rtp = 1,
    MoqSink = 2,
    MoqSrc = 3,
    WhepSink = 4,
    /// Its first RTP packet out of a viewer's payloader (inside
    /// whepserversink: after its clocksync and the hand-over to the
    /// viewer's own pipeline).
    Pay = 5,
    /// That packet into the viewer's ICE transport (nicesink), encrypted.
    Wire = 6,
}

const STAGES: usize = 7;
const NAMES: [&str; STAGES - 1] = [
    "udp->rtp",
    "rtp->moqsink",
    "moqsink->moqsrc",
    "moqsrc->whepserversink",
    "whepserversink->pay",
    "pay->udp",
];
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

/// When each RTP packet (by SSRC and sequence number, which SRTP leaves in
/// the clear) came out of an ingest's nicesrc.
static ARRIVALS: LazyLock<Mutex<HashMap<(u32, u16), Instant>>> = LazyLock::new(Mutex::default);

/// SSRC and sequence number of an RTP (or SRTP) packet; None for RTCP
/// (payload types 64-95 with the marker bit folded in) and anything else.
fn rtp_id(data: &[u8]) -> Option<(u32, u16)> {
    if data.len() < 12 || data[0] >> 6 != 2 || (64..96).contains(&(data[1] & 0x7f)) {
        return None;
    }
    let seq = u16::from_be_bytes([data[2], data[3]]);
    let ssrc = u32::from_be_bytes([data[8], data[9], data[10], data[11]]);
    Some((ssrc, seq))
}

/// Records when RTP packets leave the nicesrc of `pipeline` (an ingest),
/// for the `udp->rtp` stage: what the SRTP, RTP session and jitter buffer
/// inside whipserversrc take.
pub fn arrivals(pipeline: &gst::Pipeline) {
    if !enabled() {
        return;
    }
    pipeline.connect_deep_element_added(|_, _, element| {
        if element.factory().is_none_or(|f| f.name() != "nicesrc") {
            return;
        }
        let Some(pad) = element.static_pad("src") else {
            return;
        };
        pad.add_probe(gst::PadProbeType::BUFFER, |_, info| {
            let id = info
                .buffer()
                .and_then(|b| b.map_readable().ok())
                .and_then(|m| rtp_id(&m));
            if let Some(id) = id {
                let now = Instant::now();
                let mut arrivals = ARRIVALS
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                if arrivals.len() > 50_000 {
                    arrivals.retain(|_, t| now.duration_since(*t) < Duration::from_secs(5));
                }
                arrivals.insert(id, now);
            }
            gst::PadProbeReturn::Ok
        });
    });
}

/// Which frame (broadcast, publisher µs) each payloaded RTP packet of a
/// viewer carries, until it reaches nicesink.
type Payloaded = HashMap<(u32, u16), (String, u64)>;
static PAYLOADED: LazyLock<Mutex<Payloaded>> = LazyLock::new(Mutex::default);

/// Calls `f` with the bytes of every buffer a probe sees (lists included).
fn each_buffer(info: &gst::PadProbeInfo, mut f: impl FnMut(&gst::BufferRef)) {
    match &info.data {
        Some(gst::PadProbeData::Buffer(buffer)) => f(buffer),
        Some(gst::PadProbeData::BufferList(list)) => list.iter().for_each(f),
        _ => {}
    }
}

fn moq_timestamp(buffer: &gst::BufferRef) -> Option<u64> {
    let caps = gst::Caps::new_empty_simple("timestamp/x-moq");
    buffer
        .iter_meta::<gst::ReferenceTimestampMeta>()
        .find(|m| m.reference().can_intersect(&caps))
        .map(|m| m.timestamp().useconds())
}

/// Follows the frames of `broadcast` through each viewer pipeline that
/// `sink` (a whepserversink) makes: out of the payloader (which keeps
/// moqsrc's timestamp meta) and, by SSRC and sequence number, into nicesink.
pub fn egress(sink: &gst::Element, broadcast: &str) {
    if !enabled() {
        return;
    }
    let broadcast = broadcast.to_owned();
    sink.connect("consumer-pipeline-created", false, move |args| {
        let pipeline = args.get(2)?.get::<gst::Pipeline>().ok()?;
        let broadcast = broadcast.clone();
        let watch = Arc::new(move |element: &gst::Element| {
            let Some(factory) = element.factory() else {
                return;
            };
            if factory.name() == "nicesink" {
                if let Some(pad) = element.static_pad("sink") {
                    probe_wire(&pad);
                }
            } else if factory.klass().contains("Payloader")
                && let Some(pad) = element.static_pad("src")
            {
                probe_payloader(&pad, broadcast.clone());
            }
        });
        // The payloader is the pipeline's own child (element-added), nicesink
        // is inside webrtcbin (deep-element-added).
        let own = watch.clone();
        pipeline.connect_element_added(move |_, element| own(element));
        pipeline.connect_deep_element_added(move |pipeline, bin, element| {
            if bin != pipeline.upcast_ref::<gst::Bin>() {
                watch(element);
            }
        });
        None
    });
}

/// Stamps `Pay` for the video frames leaving a viewer's payloader and
/// remembers which frame each RTP packet carries.
fn probe_payloader(pad: &gst::Pad, broadcast: String) {
    let probe = gst::PadProbeType::BUFFER | gst::PadProbeType::BUFFER_LIST;
    pad.add_probe(probe, move |pad, info| {
        let now = Instant::now();
        let video = pad.current_caps().is_some_and(|caps| {
            caps.structure(0)
                .is_some_and(|s| s.get::<&str>("media") == Ok("video"))
        });
        if !video {
            return gst::PadProbeReturn::Ok;
        }
        each_buffer(info, |buffer| {
            let Some(ts) = moq_timestamp(buffer) else {
                return;
            };
            if let Some(id) = buffer.map_readable().ok().and_then(|m| rtp_id(&m)) {
                let mut payloaded = PAYLOADED
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                if payloaded.len() > 50_000 {
                    payloaded.clear();
                }
                payloaded.insert(id, (broadcast.clone(), ts));
            }
            stamp_at(&broadcast, ts, Stage::Pay, now);
        });
        gst::PadProbeReturn::Ok
    });
}

/// Stamps `Wire` for the payloaded packets reaching a viewer's nicesink.
fn probe_wire(pad: &gst::Pad) {
    let probe = gst::PadProbeType::BUFFER | gst::PadProbeType::BUFFER_LIST;
    pad.add_probe(probe, |_, info| {
        let now = Instant::now();
        each_buffer(info, |buffer| {
            let id = buffer.map_readable().ok().and_then(|m| rtp_id(&m));
            let frame = id.and_then(|id| {
                PAYLOADED
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .remove(&id)
            });
            if let Some((broadcast, ts)) = frame {
                stamp_at(&broadcast, ts, Stage::Wire, now);
            }
        });
        gst::PadProbeReturn::Ok
    });
}

fn stamp(broadcast: &str, ts_us: u64, stage: Stage) {
    stamp_at(broadcast, ts_us, stage, Instant::now());
}

fn stamp_at(broadcast: &str, ts_us: u64, stage: Stage, now: Instant) {
    let mut traces = TRACES
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
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
            line.push_str(&format!(" {name} - |"));
        } else {
            let at = |q: f64| ms[((ms.len() - 1) as f64 * q).round() as usize];
            line.push_str(&format!(" {name} p50 {:.2} p99 {:.2} |", at(0.5), at(0.99)));
        }
    }
    // How many frames reached each stage: a frame that stops short of the
    // last one was dropped (or never sent) between the two.
    let reached: Vec<String> = (0..STAGES)
        .map(|i| {
            frames
                .values()
                .filter(|t| t[i].is_some())
                .count()
                .to_string()
        })
        .collect();
    eprintln!(
        "{} ms ({complete} frames; per stage {})",
        line.trim_end_matches(" |"),
        reached.join("/")
    );
}

/// Stamps every buffer through `pad` (a video pad) at `stage`, keyed by its
/// running time (`Rtp`, `MoqSink`) or its `timestamp/x-moq` meta.
pub fn probe(pad: &gst::Pad, broadcast: &str, stage: Stage) {
    if !enabled() {
        return;
    }
    let broadcast = broadcast.to_owned();
    pad.add_probe(gst::PadProbeType::BUFFER, move |pad, info| {
        let Some(buffer) = info.buffer() else {
            return gst::PadProbeReturn::Ok;
        };
        let ts = match stage {
            Stage::Udp | Stage::Rtp | Stage::MoqSink | Stage::Pay | Stage::Wire => pad
                .sticky_event::<gst::event::Segment>(0)
                .and_then(|e| {
                    e.segment()
                        .downcast_ref::<gst::ClockTime>()
                        .and_then(|s| s.to_running_time(buffer.pts()))
                })
                .map(gst::ClockTime::useconds),
            Stage::MoqSrc | Stage::WhepSink => moq_timestamp(buffer),
        };
        if let Some(ts) = ts {
            if stage == Stage::Rtp {
                let arrived = buffer
                    .map_readable()
                    .ok()
                    .and_then(|m| rtp_id(&m))
                    .and_then(|id| {
                        ARRIVALS
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .remove(&id)
                    });
                if let Some(arrived) = arrived {
                    stamp_at(&broadcast, ts, Stage::Udp, arrived);
                }
            }
            stamp(&broadcast, ts, stage);
        }
        gst::PadProbeReturn::Ok
    });
}

#[cfg(test)]
mod tests {
    use super::rtp_id;

    #[test]
    fn rtp_ids_and_rtcp() {
        let mut rtp = [0u8; 12];
        rtp[0] = 0x80;
        rtp[1] = 0x80 | 96; // marker, PT 96
        rtp[2..4].copy_from_slice(&513u16.to_be_bytes());
        rtp[8..12].copy_from_slice(&0xdead_beefu32.to_be_bytes());
        assert_eq!(rtp_id(&rtp), Some((0xdead_beef, 513)));
        let mut rtcp = rtp;
        rtcp[1] = 200; // sender report
        assert_eq!(rtp_id(&rtcp), None);
        assert_eq!(rtp_id(&rtp[..11]), None);
        let mut stun = rtp;
        stun[0] = 0x00;
        assert_eq!(rtp_id(&stun), None);
    }
}
