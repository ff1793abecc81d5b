// SPDX-License-Identifier: MIT OR Apache-2.0

//! With `GST_DEBUG` unset the elements print nothing: the MoQ libraries'
//! tracing output only goes to the GStreamer debug log, and no global
//! subscriber writes to stderr. The test runs itself again as a child
//! process (a publisher and a subscriber through the relay, to EOS) and
//! reads the child's stderr.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;
use gst::prelude::*;

const CHILD: &str = "GST_MOQ_QUIET_CHILD";

/// What the child runs: both elements, connection, catalog, media, EOS.
fn round_trip() {
    let broadcast = unique_broadcast("quiet");
    let sub = pipeline(&format!(
        "moqsrc url={} broadcast={broadcast} tls-disable-verify=true ! fakesink sync=false",
        RELAY.url()
    ));
    sub.set_state(gst::State::Playing).unwrap();
    let publ = pipeline(&format!(
        "audiotestsrc is-live=true num-buffers=50 ! audioconvert ! opusenc \
         ! moqsink url={} broadcast={broadcast} tls-disable-verify=true",
        RELAY.url()
    ));
    publ.set_state(gst::State::Playing).unwrap();
    let published = wait_eos(&publ, Duration::from_secs(30));
    let played = wait_eos(&sub, Duration::from_secs(30));
    publ.set_state(gst::State::Null).unwrap();
    sub.set_state(gst::State::Null).unwrap();
    published.expect("the publisher reaches EOS");
    played.expect("the subscriber reaches EOS");
}

#[test]
fn nothing_on_stderr_without_gst_debug() {
    if std::env::var_os(CHILD).is_some() {
        round_trip();
        return;
    }
    let out = Command::new(std::env::current_exe().expect("the test binary"))
        .args([
            "--exact",
            "nothing_on_stderr_without_gst_debug",
            "--test-threads=1",
            "--nocapture",
        ])
        .env(CHILD, "1")
        .env_remove("GST_DEBUG")
        .env_remove("GST_DEBUG_FILE")
        .env_remove("RUST_LOG")
        .output()
        .expect("the child runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "the child failed: {}\n{stdout}\n{stderr}",
        out.status
    );
    assert!(stderr.trim().is_empty(), "printed to stderr:\n{stderr}");
}
