// SPDX-License-Identifier: MIT OR Apache-2.0

//! Forwards what the MoQ libraries log through `tracing` into the GStreamer
//! debug log (category `moq`), so `GST_DEBUG=moq:6` shows it.
//!
//! No global subscriber is installed: that would panic or fight with the
//! application's own. Instead a small subscriber is made the default of each
//! thread of our own tokio runtime, which is where the MoQ libraries run.
//! It takes events only, and only at levels the category lets through: spans
//! stay disabled, so the libraries' instrumented hot paths cost nothing.

use std::fmt::Write as _;
use std::sync::LazyLock;

use gst::glib;
use tracing::field::{Field, Visit};
use tracing::subscriber::Interest;
use tracing::{Metadata, span};

pub static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "moq",
        gst::DebugColorFlags::empty(),
        Some("Media over QUIC libraries (moq-net, moq-tokio, moq-mux)"),
    )
});

static DISPATCH: LazyLock<tracing::Dispatch> =
    LazyLock::new(|| tracing::Dispatch::new(GstForwarder));

/// Make the forwarding dispatcher the default of the calling thread for the
/// rest of its life. Called from the runtime's `on_thread_start`.
pub fn attach_to_thread() {
    let guard = tracing::dispatcher::set_default(&DISPATCH);
    // The runtime thread never gives the dispatcher back: keep it for good.
    std::mem::forget(guard);
}

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

impl Line {
    fn field(&mut self, field: &Field, value: std::fmt::Arguments<'_>) {
        if !self.0.is_empty() {
            self.0.push(' ');
        }
        if field.name() != "message" {
            let _ = write!(self.0, "{}=", field.name());
        }
        let _ = self.0.write_fmt(value);
    }
}

impl Visit for Line {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.field(field, format_args!("{value:?}"));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.field(field, format_args!("{value}"));
    }
}

struct GstForwarder;

impl tracing::Subscriber for GstForwarder {
    fn register_callsite(&self, meta: &'static Metadata<'static>) -> Interest {
        // The GStreamer threshold can change at run time: ask per event.
        if meta.is_event() {
            Interest::sometimes()
        } else {
            Interest::never()
        }
    }

    fn enabled(&self, meta: &Metadata<'_>) -> bool {
        meta.is_event() && gst_level(meta.level()) <= CAT.threshold()
    }

    fn new_span(&self, _span: &span::Attributes<'_>) -> span::Id {
        // Spans are never enabled (see `register_callsite`); any id will do.
        span::Id::from_u64(1)
    }

    fn record(&self, _span: &span::Id, _values: &span::Record<'_>) {}

    fn record_follows_from(&self, _span: &span::Id, _follows: &span::Id) {}

    fn event(&self, event: &tracing::Event<'_>) {
        let meta = event.metadata();
        let mut line = Line::default();
        event.record(&mut line);
        CAT.log(
            None::<&gst::Object>,
            gst_level(meta.level()),
            glib::gstr!("moq"),
            meta.target(),
            meta.line().unwrap_or(0),
            format_args!("[{}] {}", meta.target(), line.0),
        );
    }

    fn enter(&self, _span: &span::Id) {}

    fn exit(&self, _span: &span::Id) {}
}
