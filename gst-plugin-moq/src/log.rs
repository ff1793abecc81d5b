// SPDX-License-Identifier: MIT OR Apache-2.0

//! Forwards what the MoQ libraries log through `tracing` into the GStreamer
//! debug log (category `moq`), so `GST_DEBUG=moq:6` shows it.
//!
//! No global subscriber is installed: that would panic or fight with the
//! application's own. Instead the forwarding dispatcher is made the default of
//! each thread of our own tokio runtime, which is where the MoQ libraries run.

use std::fmt::Write as _;
use std::sync::LazyLock;

use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, SubscriberExt};

pub static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "moq",
        gst::DebugColorFlags::empty(),
        Some("Media over QUIC libraries (moq-net, moq-tokio, moq-mux)"),
    )
});

static DISPATCH: LazyLock<tracing::Dispatch> =
    LazyLock::new(|| tracing::Dispatch::new(tracing_subscriber::registry().with(GstLayer)));

/// Make the forwarding dispatcher the default of the calling thread for the
/// rest of its life. Called from the runtime's `on_thread_start`.
pub fn attach_to_thread() {
    let guard = tracing::dispatcher::set_default(&DISPATCH);
    // The runtime thread never gives the dispatcher back: keep it for good.
    std::mem::forget(guard);
}

struct GstLayer;

fn gst_level(level: &tracing::Level) -> gst::DebugLevel {
    match *level {
        tracing::Level::ERROR => gst::DebugLevel::Error,
        tracing::Level::WARN => gst::DebugLevel::Warning,
        tracing::Level::INFO => gst::DebugLevel::Info,
        tracing::Level::DEBUG => gst::DebugLevel::Debug,
        tracing::Level::TRACE => gst::DebugLevel::Trace,
    }
}

#[derive(Default)]
struct Line(String);

impl Visit for Line {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if !self.0.is_empty() {
            self.0.push(' ');
        }
        if field.name() == "message" {
            let _ = write!(self.0, "{value:?}");
        } else {
            let _ = write!(self.0, "{}={value:?}", field.name());
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if !self.0.is_empty() {
            self.0.push(' ');
        }
        if field.name() == "message" {
            self.0.push_str(value);
        } else {
            let _ = write!(self.0, "{}={value}", field.name());
        }
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for GstLayer {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
        let meta = event.metadata();
        let level = gst_level(meta.level());
        // Formatting costs: skip it when nobody reads this level.
        if level > CAT.threshold() {
            return;
        }
        let mut line = Line::default();
        event.record(&mut line);
        CAT.log(
            None::<&gst::Object>,
            level,
            glib::gstr!("moq"),
            meta.target(),
            meta.line().unwrap_or(0),
            format_args!("[{}] {}", meta.target(), line.0),
        );
    }
}

use gst::glib;
