// SPDX-License-Identifier: MIT OR Apache-2.0

//! Runs a pipeline description the way `gst-launch-1.0` does, plus what a
//! description cannot express for the gateways.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use gst::glib;
use gst::prelude::*;

/// How long Ctrl-C waits for EOS to reach the sinks before giving up.
const EOS_GRACE: Duration = Duration::from_secs(5);

/// Parses `description` (the words of a gst-launch command line) into a
/// pipeline with the gateway's helpers attached.
pub fn build(description: &[String]) -> anyhow::Result<gst::Pipeline> {
    let words: Vec<&str> = description.iter().map(String::as_str).collect();
    let element = gst::parse::launchv(&words)
        .map_err(|err| anyhow::anyhow!("cannot build the pipeline: {err}"))?;
    finish(element)
}

/// Like [`build`], from one string (a preset).
pub fn build_from_str(description: &str) -> anyhow::Result<gst::Pipeline> {
    let element = gst::parse::launch(description)
        .map_err(|err| anyhow::anyhow!("cannot build the pipeline: {err}"))?;
    finish(element)
}

fn finish(element: gst::Element) -> anyhow::Result<gst::Pipeline> {
    let pipeline = match element.downcast::<gst::Pipeline>() {
        Ok(pipeline) => pipeline,
        Err(element) => {
            // A single element: wrap it like gst-launch-1.0 does.
            let pipeline = gst::Pipeline::new();
            pipeline.add(&element)?;
            pipeline
        }
    };
    let mut publishes_to_moq = false;
    for element in pipeline.iterate_recurse().into_iter().flatten() {
        end_stream_with_session(&element);
        publishes_to_moq |= element.factory().is_some_and(|f| f.name() == "moqsink");
    }
    crate::webrtcbin::without_upnp(pipeline.upcast_ref());
    if publishes_to_moq {
        // What WebRTC elements receive here becomes MoQ frames, timed by
        // the sender; a pipeline that plays WebRTC locally keeps rtpbin's
        // default, which follows the local clock.
        crate::webrtcbin::with_sender_timestamps(pipeline.upcast_ref());
    }
    Ok(pipeline)
}

/// whipserversrc and whepclientsrc remove their pads when the WebRTC peer
/// leaves, without sending EOS: downstream (moqsink) would wait forever
/// and the broadcast would never end. Remember whom each pad feeds and
/// send EOS there when the pad goes away.
pub fn end_stream_with_session(element: &gst::Element) {
    let is_webrtc_source = element.factory().is_some_and(|f| {
        matches!(
            f.name().as_str(),
            "whipserversrc" | "whepclientsrc" | "webrtcsrc"
        )
    });
    if !is_webrtc_source {
        return;
    }
    type Links = Vec<(glib::WeakRef<gst::Pad>, glib::WeakRef<gst::Pad>)>;
    let links: Arc<Mutex<Links>> = Arc::default();
    let added = links.clone();
    // Connected after gst_parse_launch's own pad-added handler, which
    // links the pad, so the peer is known here.
    element.connect_pad_added(move |_, pad| {
        if let Some(peer) = pad.peer() {
            added
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push((pad.downgrade(), peer.downgrade()));
        }
    });
    element.connect_pad_removed(move |element, pad| {
        let peer = {
            let mut links = links.lock().unwrap_or_else(PoisonError::into_inner);
            let at = links
                .iter()
                .position(|(p, _)| p.upgrade().as_ref() == Some(pad));
            at.map(|i| links.remove(i).1)
        };
        if let Some(peer) = peer.and_then(|p| p.upgrade()) {
            gst::info!(
                gst::CAT_DEFAULT,
                obj = element,
                "WebRTC peer left: EOS to {}",
                peer.name()
            );
            peer.send_event(gst::event::Eos::new());
        }
    });
}

/// Runs `pipeline` until EOS, an error, or `interrupted` (then EOS is sent
/// and awaited, so moqsink ends its broadcast cleanly).
pub fn run(pipeline: &gst::Pipeline, interrupted: &AtomicBool) -> anyhow::Result<()> {
    let bus = pipeline.bus().context("pipeline without a bus")?;
    pipeline
        .set_state(gst::State::Playing)
        .context("the pipeline did not start (see the error above)")
        .inspect_err(|_| print_pending_errors(&bus))?;
    eprintln!("running; Ctrl-C ends the stream (EOS)");
    let result = watch(pipeline, &bus, interrupted);
    let _ = pipeline.set_state(gst::State::Null);
    result
}

fn print_pending_errors(bus: &gst::Bus) {
    while let Some(msg) = bus.pop_filtered(&[gst::MessageType::Error]) {
        if let gst::MessageView::Error(err) = msg.view() {
            eprintln!("{}", describe_error(err));
        }
    }
}

fn describe_error(err: &gst::message::Error) -> String {
    let from = err
        .src()
        .map(|s| s.path_string().to_string())
        .unwrap_or_default();
    match err.debug() {
        Some(debug) => format!("ERROR from {from}: {} ({debug})", err.error()),
        None => format!("ERROR from {from}: {}", err.error()),
    }
}

fn watch(pipeline: &gst::Pipeline, bus: &gst::Bus, interrupted: &AtomicBool) -> anyhow::Result<()> {
    let mut eos_deadline: Option<Instant> = None;
    loop {
        if eos_deadline.is_none() && interrupted.load(Ordering::SeqCst) {
            eprintln!("interrupt: sending EOS");
            pipeline.send_event(gst::event::Eos::new());
            eos_deadline = Some(Instant::now() + EOS_GRACE);
        }
        if eos_deadline.is_some_and(|d| Instant::now() > d) {
            bail!("EOS did not reach the sinks within {EOS_GRACE:?}");
        }
        let Some(msg) = bus.timed_pop(gst::ClockTime::from_mseconds(100)) else {
            continue;
        };
        match msg.view() {
            gst::MessageView::Eos(_) => {
                eprintln!("EOS: done");
                return Ok(());
            }
            gst::MessageView::Error(err) => bail!("{}", describe_error(err)),
            gst::MessageView::Warning(w) => {
                let from = w
                    .src()
                    .map(|s| s.path_string().to_string())
                    .unwrap_or_default();
                eprintln!("WARNING from {from}: {}", w.error());
            }
            gst::MessageView::Latency(_) => {
                let _ = pipeline.recalculate_latency();
            }
            _ => {}
        }
    }
}
