// SPDX-License-Identifier: MIT OR Apache-2.0

//! The default run: a test pattern with audio goes through moqsink, the
//! embedded relay and moqsrc, and what arrives is printed once a second.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use gst::prelude::*;

/// What one track has seen, shared between the pad probes and the printer.
#[derive(Default)]
struct TrackStats {
    /// When each frame entered moqsink, by its running time in microseconds.
    sent_at: HashMap<u64, Instant>,
    sent: u64,
    received: u64,
    decoded: u64,
    /// Entry into moqsink -> exit from moqsrc, for frames since the last print.
    latencies: Vec<Duration>,
    all_latencies: Vec<Duration>,
}

type Stats = Arc<Mutex<HashMap<&'static str, TrackStats>>>;

pub struct Options {
    pub url: String,
    pub broadcast: String,
    pub width: u32,
    pub height: u32,
    /// Stop after this long; `None` runs until Ctrl-C.
    pub duration: Option<Duration>,
}

fn kind(pad: &gst::Pad) -> &'static str {
    gstmoq::TrackKind::of_pad_name(&pad.name()).as_str()
}

/// p50 and p99 of `values`, sorted in place.
pub fn percentiles(values: &mut [Duration]) -> Option<(Duration, Duration)> {
    if values.is_empty() {
        return None;
    }
    values.sort_unstable();
    let at = |q: f64| values[((values.len() - 1) as f64 * q).round() as usize];
    Some((at(0.50), at(0.99)))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn publisher(opts: &Options, stats: &Stats) -> anyhow::Result<gst::Pipeline> {
    let description = format!(
        "moqsink name=sink url={url} broadcast={broadcast} tls-disable-verify=true \
         videotestsrc is-live=true pattern=ball ! video/x-raw,format=I420,width={w},height={h},framerate=30/1 \
           ! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=60 bitrate=3000 ! h264parse ! sink.video_0 \
         audiotestsrc is-live=true wave=ticks ! audio/x-raw,rate=48000,channels=2 ! audioconvert \
           ! opusenc frame-size=20 ! sink.audio_0",
        url = opts.url,
        broadcast = opts.broadcast,
        w = opts.width,
        h = opts.height,
    );
    let pipeline = gst::parse::launch(&description)
        .context("cannot build the publisher pipeline (are gstreamer1.0-plugins-ugly and -good installed?)")?
        .downcast::<gst::Pipeline>()
        .map_err(|_| anyhow::anyhow!("not a pipeline"))?;
    let sink = pipeline.by_name("sink").context("no moqsink")?;
    for pad in sink.sink_pads() {
        let kind = kind(&pad);
        let stats = stats.clone();
        pad.add_probe(gst::PadProbeType::BUFFER, move |pad, info| {
            let Some(buffer) = info.buffer() else {
                return gst::PadProbeReturn::Ok;
            };
            let segment = pad.sticky_event::<gst::event::Segment>(0);
            let running_time = segment.and_then(|s| {
                s.segment()
                    .downcast_ref::<gst::ClockTime>()
                    .and_then(|s| s.to_running_time(buffer.pts()))
            });
            let mut stats = stats.lock().unwrap();
            let track = stats.entry(kind).or_default();
            track.sent += 1;
            if let Some(rt) = running_time {
                track.sent_at.insert(rt.useconds(), Instant::now());
            }
            gst::PadProbeReturn::Ok
        });
    }
    Ok(pipeline)
}

fn subscriber(opts: &Options, stats: &Stats) -> anyhow::Result<gst::Pipeline> {
    let pipeline = gst::Pipeline::with_name("subscriber");
    let src = gst::ElementFactory::make("moqsrc")
        .property("url", &opts.url)
        .property("broadcast", &opts.broadcast)
        .property("tls-disable-verify", true)
        .build()
        .context("moqsrc is missing")?;
    pipeline.add(&src)?;
    let weak = pipeline.downgrade();
    let stats = stats.clone();
    src.connect_pad_added(move |_, pad| {
        let Some(pipeline) = weak.upgrade() else {
            return;
        };
        let kind = kind(pad);
        count_arrivals(pad, kind, stats.clone());
        if let Err(err) = decode_branch(&pipeline, pad, kind, &stats) {
            eprintln!("cannot decode {}: {err:#}", pad.name());
        }
    });
    Ok(pipeline)
}

/// Counts the frames arriving on a moqsrc pad and matches each to when it
/// entered moqsink, for the latency.
fn count_arrivals(pad: &gst::Pad, kind: &'static str, stats: Stats) {
    pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
        let Some(buffer) = info.buffer() else {
            return gst::PadProbeReturn::Ok;
        };
        let now = Instant::now();
        let mut tracks = stats.lock().unwrap();
        let track = tracks.entry(kind).or_default();
        track.received += 1;
        // The publisher's timestamp travels with the buffer as a reference
        // timestamp meta: match it to when the frame entered moqsink.
        if let Some(meta) = buffer.meta::<gst::ReferenceTimestampMeta>()
            && let Some(sent) = track.sent_at.remove(&meta.timestamp().useconds())
        {
            let latency = now.duration_since(sent);
            track.latencies.push(latency);
            track.all_latencies.push(latency);
        }
        gst::PadProbeReturn::Ok
    });
}

/// queue ! decodebin3 ! fakesink behind a moqsrc pad, counting what is
/// decoded.
fn decode_branch(
    pipeline: &gst::Pipeline,
    pad: &gst::Pad,
    kind: &'static str,
    stats: &Stats,
) -> anyhow::Result<()> {
    let queue = gst::ElementFactory::make("queue").build();
    let decode = gst::ElementFactory::make("decodebin3").build();
    let sink = gst::ElementFactory::make("fakesink")
        .property("sync", true)
        .property("signal-handoffs", true)
        .build();
    let (queue, decode, sink) = (queue?, decode?, sink?);
    let decoded_stats = stats.clone();
    sink.connect("handoff", false, move |_| {
        decoded_stats
            .lock()
            .unwrap()
            .entry(kind)
            .or_default()
            .decoded += 1;
        None
    });
    pipeline.add_many([&queue, &decode, &sink])?;
    queue.link(&decode)?;
    let sink_pad = sink.static_pad("sink");
    decode.connect_pad_added(move |_, pad| {
        if let Some(sink_pad) = &sink_pad {
            let _ = pad.link(sink_pad);
        }
    });
    for e in [&queue, &decode, &sink] {
        let _ = e.sync_state_with_parent();
    }
    let queue_pad = queue
        .static_pad("sink")
        .context("queue without a sink pad")?;
    pad.link(&queue_pad)?;
    Ok(())
}

/// Pop messages of both pipelines for up to `wait`; an ERROR ends the run.
fn check_bus(pipelines: &[&gst::Pipeline], wait: Duration) -> anyhow::Result<bool> {
    let deadline = Instant::now() + wait;
    loop {
        for pipeline in pipelines {
            let Some(bus) = pipeline.bus() else { continue };
            while let Some(msg) = bus.pop() {
                match msg.view() {
                    gst::MessageView::Error(e) => bail!(
                        "{}: {} ({})",
                        msg.src()
                            .map(|s| s.path_string().to_string())
                            .unwrap_or_default(),
                        e.error(),
                        e.debug().map(|d| d.to_string()).unwrap_or_default()
                    ),
                    gst::MessageView::Warning(w) => eprintln!("warning: {}", w.error()),
                    gst::MessageView::Eos(_) if pipeline.name() == "subscriber" => return Ok(true),
                    _ => {}
                }
            }
        }
        if Instant::now() >= deadline {
            return Ok(false);
        }
        std::thread::park_timeout(Duration::from_millis(20));
    }
}

fn print_line(stats: &Stats, elapsed: Duration) {
    let mut stats = stats.lock().unwrap();
    let mut line = format!("[{:6.1}s]", elapsed.as_secs_f64());
    for kind in ["video", "audio"] {
        let Some(track) = stats.get_mut(kind) else {
            continue;
        };
        line.push_str(&format!(
            "  {kind}: sent {} received {} decoded {}",
            track.sent, track.received, track.decoded
        ));
        if let Some((p50, p99)) = percentiles(&mut track.latencies) {
            line.push_str(&format!(
                " latency p50 {:.2} ms p99 {:.2} ms",
                ms(p50),
                ms(p99)
            ));
        }
        track.latencies.clear();
        // Frames that never arrive must not pile up.
        // (Within 10 s of boot there is nothing that old.)
        if let Some(cutoff) = Instant::now().checked_sub(Duration::from_secs(10)) {
            track.sent_at.retain(|_, at| *at > cutoff);
        }
    }
    println!("{line}");
}

/// Ends the run cleanly: EOS through moqsink finishes the broadcast, and
/// the subscriber sees EOS on every pad (within 5 s).
fn finish(publisher: &gst::Pipeline, subscriber: &gst::Pipeline) -> anyhow::Result<()> {
    publisher.send_event(gst::event::Eos::new());
    let ended = Instant::now();
    while ended.elapsed() < Duration::from_secs(5) {
        if check_bus(&[publisher, subscriber], Duration::from_millis(200))? {
            break;
        }
    }
    Ok(())
}

fn print_summary(stats: &Stats, elapsed: Duration) {
    let mut stats = stats.lock().unwrap();
    println!("summary after {:.1}s:", elapsed.as_secs_f64());
    for kind in ["video", "audio"] {
        let Some(track) = stats.get_mut(kind) else {
            println!("  {kind}: nothing");
            continue;
        };
        let latency = percentiles(&mut track.all_latencies)
            .map(|(p50, p99)| {
                format!(
                    ", moqsink->moqsrc latency p50 {:.2} ms p99 {:.2} ms",
                    ms(p50),
                    ms(p99)
                )
            })
            .unwrap_or_default();
        println!(
            "  {kind}: {} frames sent, {} received, {} decoded{latency}",
            track.sent, track.received, track.decoded
        );
    }
}

pub fn run(opts: Options, interrupted: Arc<AtomicBool>) -> anyhow::Result<()> {
    let stats: Stats = Arc::default();
    let subscriber = subscriber(&opts, &stats)?;
    let publisher = publisher(&opts, &stats)?;
    subscriber.set_state(gst::State::Playing)?;
    publisher.set_state(gst::State::Playing)?;
    println!(
        "publishing a {}x{} test pattern with audio as '{}' on {} and playing it back; Ctrl-C stops",
        opts.width, opts.height, opts.broadcast, opts.url
    );

    let start = Instant::now();
    let result = loop {
        match check_bus(&[&publisher, &subscriber], Duration::from_secs(1)) {
            Err(err) => break Err(err),
            Ok(true) => break Ok(()),
            Ok(false) => {}
        }
        print_line(&stats, start.elapsed());
        let done = opts.duration.is_some_and(|d| start.elapsed() >= d);
        if done || interrupted.load(Ordering::SeqCst) {
            break finish(&publisher, &subscriber);
        }
    };
    publisher.set_state(gst::State::Null)?;
    subscriber.set_state(gst::State::Null)?;

    print_summary(&stats, start.elapsed());
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_pick_ranks() {
        let mut v: Vec<Duration> = (1..=100).rev().map(Duration::from_millis).collect();
        let (p50, p99) = percentiles(&mut v).unwrap();
        assert_eq!(p50, Duration::from_millis(51));
        assert_eq!(p99, Duration::from_millis(99));
        assert!(percentiles(&mut []).is_none());
    }
}
