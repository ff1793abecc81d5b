// SPDX-License-Identifier: MIT OR Apache-2.0

//! Periodic statistics: with `stats-interval` set, an element posts its
//! `stats` structure as an element message on the bus that often, so an
//! application can draw a dashboard from bus messages alone.

use std::time::Duration;

use gst::glib;
use gst::prelude::*;

use crate::runtime::RUNTIME;

pub const DEFAULT_STATS_INTERVAL_MS: u32 = 0;

/// The `delay-us` both elements report: how far the running time `now` is
/// past `at`, in µs (negative: `at` is still ahead).
pub fn delay_us(now: gst::ClockTime, at: gst::ClockTime) -> i64 {
    let us = |t: gst::ClockTime| i64::try_from(t.useconds()).unwrap_or(i64::MAX);
    us(now).saturating_sub(us(at))
}

pub fn interval_property() -> glib::ParamSpec {
    glib::ParamSpecUInt::builder("stats-interval")
        .nick("Statistics interval")
        .blurb("Milliseconds between element messages carrying the stats structure; 0 posts none")
        .default_value(DEFAULT_STATS_INTERVAL_MS)
        .mutable_ready()
        .build()
}

/// Post `element`'s `stats` property as an element message every
/// `interval_ms` until the returned task is aborted; `None` when 0.
pub fn spawn_ticker(
    element: glib::WeakRef<gst::Element>,
    interval_ms: u32,
) -> Option<tokio::task::JoinHandle<()>> {
    if interval_ms == 0 {
        return None;
    }
    let period = Duration::from_millis(interval_ms.into());
    Some(RUNTIME.spawn(async move {
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let Some(obj) = element.upgrade() else { return };
            let stats = obj.property::<gst::Structure>("stats");
            let _ = obj.post_message(gst::message::Element::builder(stats).src(&obj).build());
        }
    }))
}
