// SPDX-License-Identifier: MIT OR Apache-2.0

//! What every element test shares: GStreamer and the plugin registered once,
//! and one real MoQ relay (the `moq-relay` library) on 127.0.0.1, port 0.

#![allow(dead_code)]

pub mod proxy;
pub mod relay;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{LazyLock, Once};
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
