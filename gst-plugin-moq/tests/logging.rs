// SPDX-License-Identifier: MIT OR Apache-2.0

//! What the MoQ libraries log reaches the GStreamer debug log, naming the
//! module it came from: under the element's category when logged for it (the
//! importers on its streaming thread, its own tasks), under `moq` from the
//! tasks the libraries spawn themselves (the QUIC connection loop). A binary
//! of its own: it changes the process-wide debug thresholds.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use gst::prelude::*;

#[test]
fn library_lines_reach_the_element_category() {
    init();
    let lines: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let sink_lines = lines.clone();
    gst::log::remove_default_log_function();
    gst::log::set_active(true);
    gst::log::set_threshold_for_name("moqsink", gst::DebugLevel::Log);
    gst::log::set_threshold_for_name("moq", gst::DebugLevel::Log);
    gst::log::add_log_function(
        move |category, _level, _file, _function, _line, _object, message| {
            if let Some(text) = message.get() {
                sink_lines
                    .lock()
                    .unwrap()
                    .push((category.name().to_string(), text.to_string()));
            }
        },
    );

    let broadcast = unique_broadcast("log");
    let pipeline = gst::parse::launch(&format!(
        "videotestsrc is-live=true num-buffers=15 ! video/x-raw,format=I420,width=160,height=120 \
         ! x264enc tune=zerolatency ! h264parse ! moqsink name=sink url={} broadcast={broadcast} tls-disable-verify=true \
         audiotestsrc is-live=true num-buffers=25 ! audioconvert ! opusenc ! sink.audio_0",
        RELAY.url()
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    let ended = wait_eos(&pipeline, Duration::from_secs(30));
    pipeline.set_state(gst::State::Null).unwrap();
    ended.unwrap();

    let lines = lines.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let from_library: Vec<&String> = lines
        .iter()
        .filter(|(cat, text)| cat == "moqsink" && text.starts_with("[moq_"))
        .map(|(_, text)| text)
        .collect();
    assert!(
        from_library.iter().any(|t| t.starts_with("[moq_mux::")),
        "no moq-mux line under moqsink: {from_library:#?}"
    );
    assert!(
        lines.iter().any(|(cat, t)| cat == "moq"
            && (t.starts_with("[moq_net::") || t.starts_with("[moq_tokio::"))),
        "no moq-net/moq-tokio line under moq"
    );
}
