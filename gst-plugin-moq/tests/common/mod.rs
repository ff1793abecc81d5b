// SPDX-License-Identifier: MIT OR Apache-2.0

//! What every element test shares: GStreamer and the plugin registered once,
//! and one real MoQ relay (the `moq-relay` library) on 127.0.0.1, port 0.

#![allow(dead_code)]

pub mod proxy;
pub mod relay;
pub mod wait;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, LazyLock, Mutex, Once};
use std::time::{Duration, Instant};

use gst::prelude::*;

pub fn init() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        gst::init().expect("GStreamer initializes");
        gstmoq::plugin_register_static().expect("the moq plugin registers");
    });
}

/// A relay running on its own thread and runtime for the whole test binary.
pub struct Relay {
    pub addr: SocketAddr,
    /// SHA-256 of the relay's self-signed certificate, for `tls-fingerprint`.
    pub fingerprint: String,
}

impl Relay {
    /// The URL elements use: the public `anon` scope, self-signed certificate.
    pub fn url(&self) -> String {
        format!("https://{}/anon", self.addr)
    }
}

pub static RELAY: LazyLock<Relay> = LazyLock::new(|| {
    let (addr, fingerprint) = relay::spawn().expect("the test relay starts");
    Relay { addr, fingerprint }
});

/// A broadcast name no other test uses.
pub fn unique_broadcast(prefix: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Wait for EOS or ERROR on the bus; `Err` carries the error text.
pub fn wait_eos(pipeline: &gst::Pipeline, timeout: Duration) -> Result<(), String> {
    let bus = pipeline.bus().unwrap();
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err("timed out waiting for EOS".into());
        }
        let Some(msg) = bus.timed_pop_filtered(
            gst::ClockTime::from_mseconds(left.as_millis() as u64),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        ) else {
            continue;
        };
        match msg.view() {
            gst::MessageView::Eos(_) => return Ok(()),
            gst::MessageView::Error(e) => {
                return Err(format!(
                    "{} ({})",
                    e.error(),
                    e.debug().map(|d| d.to_string()).unwrap_or_default()
                ));
            }
            _ => {}
        }
    }
}

/// Wait for an ERROR message; returns its text and how long it took.
pub fn wait_error(pipeline: &gst::Pipeline, timeout: Duration) -> Option<(String, Duration)> {
    let bus = pipeline.bus().unwrap();
    let start = Instant::now();
    let msg = bus.timed_pop_filtered(
        gst::ClockTime::from_mseconds(timeout.as_millis() as u64),
        &[gst::MessageType::Error],
    )?;
    let gst::MessageView::Error(e) = msg.view() else {
        return None;
    };
    Some((
        format!(
            "{} ({})",
            e.error(),
            e.debug().map(|d| d.to_string()).unwrap_or_default()
        ),
        start.elapsed(),
    ))
}

/// A pipeline from a description, with GStreamer and the plugin initialized.
pub fn pipeline(description: &str) -> gst::Pipeline {
    init();
    gst::parse::launch(description)
        .unwrap_or_else(|e| panic!("{e}: {description}"))
        .downcast::<gst::Pipeline>()
        .expect("a pipeline")
}

/// A moqsrc for `broadcast` at the test relay, for pipelines built in code.
pub fn moqsrc(broadcast: &str) -> gst::Element {
    init();
    gst::ElementFactory::make("moqsrc")
        .property("url", RELAY.url())
        .property("broadcast", broadcast)
        .property("tls-disable-verify", true)
        .build()
        .expect("moqsrc")
}

/// A pipeline of `src` (a moqsrc) with a decodebin3 and a counting fakesink
/// on each pad it adds; the counts are decoded [video, audio] buffers.
pub fn decoding(src: gst::Element) -> (gst::Pipeline, Arc<Mutex<[u64; 2]>>) {
    let decoded: Arc<Mutex<[u64; 2]>> = Arc::default();
    let pipeline = gst::Pipeline::new();
    pipeline.add(&src).unwrap();
    let weak = pipeline.downgrade();
    let counts = decoded.clone();
    src.connect_pad_added(move |_, pad| {
        let Some(pipeline) = weak.upgrade() else {
            return;
        };
        let index = usize::from(pad.name().starts_with("audio"));
        let decode = gst::ElementFactory::make("decodebin3").build().unwrap();
        let sink = gst::ElementFactory::make("fakesink")
            .property("signal-handoffs", true)
            .build()
            .unwrap();
        let counts = counts.clone();
        sink.connect("handoff", false, move |_| {
            counts.lock().unwrap()[index] += 1;
            None
        });
        pipeline.add_many([&decode, &sink]).unwrap();
        let sink_pad = sink.static_pad("sink").unwrap();
        decode.connect_pad_added(move |_, pad| {
            let _ = pad.link(&sink_pad);
        });
        decode.sync_state_with_parent().unwrap();
        sink.sync_state_with_parent().unwrap();
        pad.link(&decode.static_pad("sink").unwrap()).unwrap();
    });
    (pipeline, decoded)
}

/// Raw I420 caps of one size at 30 fps (a capsfilter's new caps mid-stream).
pub fn i420(width: i32, height: i32) -> gst::Caps {
    gst::Caps::builder("video/x-raw")
        .field("format", "I420")
        .field("width", width)
        .field("height", height)
        .field("framerate", gst::Fraction::new(30, 1))
        .build()
}

/// The element of `pipeline` made by `factory` (the first one).
pub fn by_factory(pipeline: &gst::Pipeline, factory: &str) -> gst::Element {
    pipeline
        .iterate_recurse()
        .into_iter()
        .flatten()
        .find(|e| e.factory().is_some_and(|f| f.name() == factory))
        .unwrap_or_else(|| panic!("no {factory} in the pipeline"))
}

/// What `pipeline`'s bus holds now: panics on an ERROR (naming `who`),
/// returns the WARNING texts.
pub fn no_error(pipeline: &gst::Pipeline, who: &str) -> Vec<String> {
    let mut warnings = Vec::new();
    while let Some(msg) = pipeline.bus().unwrap().pop() {
        collect(&msg, who, &mut warnings);
    }
    warnings
}

/// Reads `pipeline`'s bus until `done(warnings so far)` holds, panicking on
/// an ERROR, or naming `what` once `timeout` has passed; returns the WARNING
/// texts seen.
pub fn watch_bus(
    pipeline: &gst::Pipeline,
    timeout: Duration,
    what: &str,
    mut done: impl FnMut(&[String]) -> bool,
) -> Vec<String> {
    let bus = pipeline.bus().unwrap();
    let deadline = Instant::now() + timeout;
    let mut warnings = Vec::new();
    while !done(&warnings) {
        assert!(
            Instant::now() < deadline,
            "{}: {what} not within {timeout:?} (warnings: {warnings:?})",
            pipeline.name()
        );
        if let Some(msg) = bus.timed_pop(gst::ClockTime::from_mseconds(20)) {
            collect(&msg, &pipeline.name(), &mut warnings);
        }
    }
    warnings
}

fn collect(msg: &gst::Message, who: &str, warnings: &mut Vec<String>) {
    match msg.view() {
        gst::MessageView::Error(e) => panic!("{who}: {} ({:?})", e.error(), e.debug()),
        gst::MessageView::Warning(w) => warnings.push(w.error().to_string()),
        _ => {}
    }
}

/// `f` of every buffer that reaches the sink pad of the element `name`.
pub fn record<T: Send + 'static>(
    pipeline: &gst::Pipeline,
    name: &str,
    f: impl Fn(&gst::BufferRef) -> Option<T> + Send + Sync + 'static,
) -> Arc<Mutex<Vec<T>>> {
    let seen: Arc<Mutex<Vec<T>>> = Arc::default();
    let kept = seen.clone();
    pipeline
        .by_name(name)
        .unwrap_or_else(|| panic!("no element {name}"))
        .static_pad("sink")
        .expect("a sink pad")
        .add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            if let Some(value) = info.buffer().and_then(|b| f(b)) {
                kept.lock().unwrap().push(value);
            }
            gst::PadProbeReturn::Ok
        });
    seen
}

/// The nick of an element's `status` property (idle, connecting, connected, ...).
pub fn status(element: &gst::Element) -> String {
    let value = element.property_value("status");
    gst::glib::EnumValue::from_value(&value)
        .map(|(_, v)| v.nick().to_string())
        .unwrap_or_default()
}
