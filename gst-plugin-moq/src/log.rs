// SPDX-License-Identifier: MIT OR Apache-2.0

//! Forwards what the MoQ libraries log through `tracing` into the GStreamer
//! debug log, each line prefixed with its tracing target (the module, e.g.
//! `[moq_tokio::connection]`).
//!
//! A line goes to the category of the element it was logged for
//! (`GST_DEBUG=moqsink:6`), with the element as its object: work an element
//! runs on the runtime is wrapped in its [`Scope`] (a task-local), and the
//! element's streaming-thread calls into the libraries run [`Scope::enter`].
//! Lines from tasks the libraries spawn on their own (the QUIC connection
//! loop) have no element and go to the `moq` category.
//!
//! No global subscriber is installed: that would panic or fight with the
//! application's own. Instead a small subscriber is made the default of each
//! thread of our own tokio runtime, and of a streaming thread while it is in a
//! scope. It takes events only, and only at levels the category lets through:
//! spans stay disabled, so the libraries' instrumented hot paths cost nothing.

use std::cell::RefCell;
use std::fmt::Write as _;
use std::future::Future;
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

/// Where the library lines logged on behalf of one element go.
#[derive(Clone)]
pub struct Scope {
    cat: gst::DebugCategory,
    obj: glib::WeakRef<gst::Object>,
}

tokio::task_local! {
    static TASK_SCOPE: Scope;
}

thread_local! {
    static THREAD_SCOPE: RefCell<Option<Scope>> = const { RefCell::new(None) };
}

impl Scope {
    pub fn new(cat: gst::DebugCategory, obj: &impl glib::prelude::IsA<gst::Object>) -> Self {
        use glib::prelude::*;
        Self {
            cat,
            obj: obj.upcast_ref::<gst::Object>().downgrade(),
        }
    }

    /// Run `future` (a task of the element's on the runtime) in this scope.
    pub fn wrap<F: Future>(&self, future: F) -> impl Future<Output = F::Output> + use<F> {
        TASK_SCOPE.scope(self.clone(), future)
    }

    /// Run `f` (on a streaming thread) in this scope, with the forwarding
    /// subscriber as the thread's default for its duration.
    pub fn enter<R>(&self, f: impl FnOnce() -> R) -> R {
        let previous = THREAD_SCOPE.with(|s| s.replace(Some(self.clone())));
        let result = tracing::dispatcher::with_default(&DISPATCH, f);
        THREAD_SCOPE.with(|s| *s.borrow_mut() = previous);
        result
    }

    fn current() -> Option<Scope> {
        TASK_SCOPE
            .try_with(Clone::clone)
            .ok()
            .or_else(|| THREAD_SCOPE.with(|s| s.borrow().clone()))
    }
}

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
        // LOG, not TRACE: `GST_DEBUG=moqsink:6` shows everything.
        tracing::Level::TRACE => gst::DebugLevel::Log,
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

/// Removes what may carry a credential from a library's line: URL query
/// strings (where `?jwt=` travels) and the query of a debug-printed `Url`.
/// The libraries log the URLs they dial at debug level.
fn redact(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.contains('?') && !text.contains("jwt") && !text.contains("query: Some(") {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    loop {
        // The next place where a query starts: `://...?`, `query: Some("`,
        // or a bare `jwt=`.
        let url_query = rest.find("://").and_then(|at| {
            let tail = &rest[at..];
            let end = tail
                .find(|c: char| c.is_whitespace() || c == '"' || c == '\'' || c == '>' || c == ')')
                .unwrap_or(tail.len());
            tail[..end].find('?').map(|q| (at + q + 1, at + end))
        });
        let debug_query = rest.find("query: Some(\"").map(|at| {
            let start = at + "query: Some(\"".len();
            let end = rest[start..].find('"').map_or(rest.len(), |e| start + e);
            (start, end)
        });
        let jwt = rest.find("jwt=").map(|at| {
            let start = at + "jwt=".len();
            let end = rest[start..]
                .find(|c: char| c.is_whitespace() || "&\"')>,".contains(c))
                .map_or(rest.len(), |e| start + e);
            (start, end)
        });
        let next = [url_query, debug_query, jwt]
            .into_iter()
            .flatten()
            .min_by_key(|(start, _)| *start);
        match next {
            Some((start, end)) => {
                out.push_str(&rest[..start]);
                out.push_str("<redacted>");
                rest = &rest[end..];
            }
            None => {
                out.push_str(rest);
                return std::borrow::Cow::Owned(out);
            }
        }
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
        if !meta.is_event() {
            return false;
        }
        let cat = Scope::current().map_or(*CAT, |scope| scope.cat);
        gst_level(meta.level()) <= cat.threshold()
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
        let scope = Scope::current();
        let (cat, obj) = match &scope {
            Some(scope) => (scope.cat, scope.obj.upgrade()),
            None => (*CAT, None),
        };
        cat.log(
            obj.as_ref(),
            gst_level(meta.level()),
            glib::gstr!("moq"),
            meta.target(),
            meta.line().unwrap_or(0),
            format_args!("[{}] {}", meta.target(), redact(&line.0)),
        );
    }

    fn enter(&self, _span: &span::Id) {}

    fn exit(&self, _span: &span::Id) {}
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn credentials_are_cut() {
        assert_eq!(
            redact("connected to https://relay:4443/anon"),
            "connected to https://relay:4443/anon"
        );
        assert_eq!(
            redact("dialing https://relay:4443/anon?jwt=abc.def.ghi now"),
            "dialing https://relay:4443/anon?<redacted> now"
        );
        assert_eq!(
            redact(r#"Url { path: "/anon", query: Some("jwt=abc.def"), fragment: None }"#),
            r#"Url { path: "/anon", query: Some("<redacted>"), fragment: None }"#
        );
        assert_eq!(redact("token jwt=abc.def&x=1"), "token jwt=<redacted>&x=1");
        assert_eq!(
            redact("a https://r/x?jwt=1 and https://s/y?k=2"),
            "a https://r/x?<redacted> and https://s/y?<redacted>"
        );
        assert_eq!(redact("what? nothing"), "what? nothing");
    }
}
