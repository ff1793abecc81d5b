// SPDX-License-Identifier: MIT OR Apache-2.0

//! The auth token never shows: not in the GStreamer debug log at its most
//! verbose (every category at level 9, as `GST_DEBUG=9`), not on the bus,
//! not in `stats`, not when the property is read back; and a URL's query
//! (where a token may also travel) is cut from what is logged. A binary of
//! its own: it changes the process-wide debug thresholds.
//!
//! The test relay has no auth server (moq-relay 0.17 checks tokens through
//! one), so it reads the token and refuses the session: the dial, the
//! token's trip to the relay and the refusal are covered, a granted session
//! carrying media is not.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use gst::glib;
use gst::prelude::*;

const TOKEN: &str = "eyJhbGciOiJIUzI1NiJ9.c2VjcmV0LXBheWxvYWQ.S3CR3T-SIGNATURE";
const QUERY_SECRET: &str = "query-secret-0123456789";

#[test]
fn the_token_never_reaches_logs_messages_or_properties() {
    init();
    let lines: Arc<Mutex<Vec<String>>> = Arc::default();
    let sink_lines = lines.clone();
    gst::log::remove_default_log_function();
    gst::log::set_active(true);
    gst::log::set_default_threshold(gst::DebugLevel::Memdump);
    gst::log::add_log_function(
        move |category, _level, _file, function, _line, object, message| {
            let object = object.map(|o| o.to_string()).unwrap_or_default();
            let text = message.get().map(|m| m.to_string()).unwrap_or_default();
            sink_lines
                .lock()
                .unwrap()
                .push(format!("{} {function} {object} {text}", category.name()));
        },
    );

    let broadcast = unique_broadcast("secret");
    let publisher = gst::parse::launch(&format!(
        "videotestsrc is-live=true ! video/x-raw,format=I420,width=160,height=120 \
         ! x264enc tune=zerolatency ! h264parse ! moqsink name=sink broadcast={broadcast} \
         tls-disable-verify=true"
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let subscriber = gst::parse::launch(&format!(
        "moqsrc name=src broadcast={broadcast} tls-disable-verify=true ! fakesink"
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    // Set from code: gst_parse_launch logs the property values it parses.
    let sink = publisher.by_name("sink").unwrap();
    sink.set_property("url", RELAY.url());
    sink.set_property("auth-token", TOKEN);
    let src = subscriber.by_name("src").unwrap();
    src.set_property("url", format!("{}?jwt={QUERY_SECRET}", RELAY.url()));
    src.set_property("auth-token", TOKEN);
    src.set_property("stats-interval", 200u32);

    publisher.set_state(gst::State::Playing).unwrap();
    subscriber.set_state(gst::State::Playing).unwrap();
    // The relay here has no auth server, so it refuses any token: both
    // elements dial, present the token and are refused, which is where a
    // token is most likely to leak (connect, retry and error paths). Waits
    // for both refusals; a bus message is kept with its error text, which
    // its Debug form leaves out.
    let mut messages = Vec::new();
    let mut refused = Vec::new();
    wait::until(
        "both elements refused by the relay",
        Duration::from_secs(20),
        || {
            for pipeline in [&publisher, &subscriber] {
                while let Some(msg) = pipeline.bus().unwrap().pop() {
                    if let gst::MessageView::Error(e) = msg.view() {
                        let text = format!("{} ({:?})", e.error(), e.debug());
                        refused.push(text.clone());
                        messages.push(text);
                    }
                    messages.push(format!("{msg:?}"));
                }
            }
            refused.len() >= 2
        },
    );
    assert!(
        refused.iter().all(|r| r.contains("unauthorized")),
        "the relay read the token and refused it: {refused:#?}"
    );
    // Write-only: there is nothing to read back.
    let readable = sink
        .find_property("auth-token")
        .unwrap()
        .flags()
        .contains(glib::ParamFlags::READABLE);
    let stats = format!(
        "{:?} {:?}",
        sink.property::<gst::Structure>("stats"),
        src.property::<gst::Structure>("stats")
    );
    publisher.set_state(gst::State::Null).unwrap();
    subscriber.set_state(gst::State::Null).unwrap();
    gst::log::set_default_threshold(gst::DebugLevel::None);

    let lines = lines.lock().unwrap_or_else(|e| e.into_inner()).clone();
    assert!(
        lines.len() > 1000,
        "the log is too quiet to prove anything: {} lines",
        lines.len()
    );
    // The elements' own categories logged the session (the MoQ libraries'
    // lines go there too), not just GStreamer's core.
    let ours = lines
        .iter()
        .filter(|l| l.starts_with("moqsink ") || l.starts_with("moqsrc "))
        .count();
    assert!(ours > 20, "only {ours} lines from moqsink/moqsrc");
    for secret in [TOKEN, "S3CR3T-SIGNATURE", QUERY_SECRET] {
        let leaks: Vec<&String> = lines.iter().filter(|l| l.contains(secret)).collect();
        assert!(leaks.is_empty(), "{secret} in the debug log: {leaks:#?}");
        let leaks: Vec<&String> = messages.iter().filter(|m| m.contains(secret)).collect();
        assert!(leaks.is_empty(), "{secret} in a bus message: {leaks:#?}");
        assert!(!stats.contains(secret), "{secret} in stats: {stats}");
    }
    assert!(!readable, "auth-token can be read back");
    eprintln!(
        "{} log lines and {} bus messages, no secret in them",
        lines.len(),
        messages.len()
    );
}
