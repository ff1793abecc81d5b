// SPDX-License-Identifier: MIT OR Apache-2.0

//! What serve reports at `GET /metrics`, in the OpenMetrics text format
//! (which Prometheus scrapes), through the Prometheus project's own Rust
//! client (`prometheus-client`).
//!
//! Counters are bumped where things happen; the per-buffer ones (frames
//! and bytes in from publishers, out to viewers) are a handle fetched once
//! per pad, so a buffer costs two atomic adds. What the session table
//! already knows (sessions, broadcasts, viewers per broadcast) is read from
//! it at each scrape instead of being kept twice.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// The Content-Type of [`Metrics::encode`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    /// `whip` (a publisher) or `whep` (a viewer).
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BroadcastLabel {
    broadcast: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CauseLabel {
    cause: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FlowLabel {
    /// `in` from WHIP publishers, `out` to WHEP viewers.
    direction: &'static str,
    /// `video` or `audio`.
    media: &'static str,
}

/// Which way media flows through a gateway session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// From a WHIP publisher.
    In,
    /// To a WHEP viewer.
    Out,
}

type Histograms = Family<KindLabel, Histogram, fn() -> Histogram>;

/// The gateway's metrics and the registry that writes them out.
pub struct Metrics {
    registry: Registry,
    sessions: Family<KindLabel, Gauge>,
    broadcasts: Gauge,
    egress_pipelines: Gauge,
    viewers: Family<BroadcastLabel, Gauge>,
    started: Family<KindLabel, Counter>,
    errors: Family<CauseLabel, Counter>,
    frames: Family<FlowLabel, Counter>,
    bytes: Family<FlowLabel, Counter>,
    keyframe_requests: Counter,
    link_estimates: Counter,
    setup: Histograms,
}

/// Session setup takes from ~50 ms (a viewer of a live broadcast) to the
/// broadcast wait (15 s by default): 10 ms doubling to ~20 s.
fn setup_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.01, 2.0, 12))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// `metric`, registered in `registry` under `name` with `help`.
fn registered<M>(registry: &mut Registry, name: &str, help: &str, metric: M) -> M
where
    M: prometheus_client::registry::Metric + Clone,
{
    registry.register(name, help, metric.clone());
    metric
}

// What each metric means, as `# HELP` says it.
const SESSIONS_HELP: &str = "Sessions carried now, by kind (whip: publishers, whep: viewers)";
const BROADCASTS_HELP: &str = "Broadcasts with a publisher or a viewer on this gateway now";
const EGRESS_PIPELINES_HELP: &str = "WHEP egress pipelines now, each one MoQ subscription; \
     viewers of a broadcast share one where nothing differs between them";
const VIEWERS_HELP: &str = "WHEP viewers now, by broadcast";
const STARTED_HELP: &str = "Sessions answered with 201 Created, by kind";
const ERRORS_HELP: &str = "Requests refused and sessions ended by a failure, by cause";
const FRAMES_HELP: &str = "Encoded frames in from WHIP publishers and out to WHEP viewers";
const BYTES_HELP: &str = "Encoded media bytes in from WHIP publishers and out to WHEP viewers";
const KEYFRAME_REQUESTS_HELP: &str =
    "Keyframe requests (viewers joining, their PLI/FIR) passed to publishers here";
const LINK_ESTIMATES_HELP: &str =
    "Estimates of WHEP viewers' links that reached their rendition choice";
const SETUP_HELP: &str = "From a POST to its 201 answer, by kind";

impl Metrics {
    pub fn new() -> Self {
        let mut r = Registry::with_prefix("moq_gateway");
        let reg = &mut r;
        Self {
            sessions: registered(reg, "sessions", SESSIONS_HELP, Family::default()),
            broadcasts: registered(reg, "broadcasts", BROADCASTS_HELP, Gauge::default()),
            egress_pipelines: registered(
                reg,
                "egress_pipelines",
                EGRESS_PIPELINES_HELP,
                Gauge::default(),
            ),
            viewers: registered(reg, "viewers", VIEWERS_HELP, Family::default()),
            started: registered(reg, "sessions_started", STARTED_HELP, Family::default()),
            errors: registered(reg, "errors", ERRORS_HELP, Family::default()),
            frames: registered(reg, "frames", FRAMES_HELP, Family::default()),
            bytes: registered(reg, "bytes", BYTES_HELP, Family::default()),
            keyframe_requests: registered(
                reg,
                "keyframe_requests",
                KEYFRAME_REQUESTS_HELP,
                Counter::default(),
            ),
            link_estimates: registered(
                reg,
                "link_estimates",
                LINK_ESTIMATES_HELP,
                Counter::default(),
            ),
            setup: registered(
                reg,
                "session_setup_seconds",
                SETUP_HELP,
                Family::new_with_constructor(setup_histogram as fn() -> Histogram),
            ),
            registry: r,
        }
    }

    /// A session answered after `took`.
    pub fn started(&self, kind: &'static str, took: Duration) {
        let label = KindLabel { kind };
        self.started.get_or_create(&label).inc();
        self.setup.get_or_create(&label).observe(took.as_secs_f64());
    }

    /// A refusal or a failure, by a short cause (`unauthorized`, `busy`...).
    pub fn error(&self, cause: &'static str) {
        self.errors.get_or_create(&CauseLabel { cause }).inc();
    }

    /// How many errors of `cause` there were.
    pub fn errors(&self, cause: &'static str) -> u64 {
        self.errors.get_or_create(&CauseLabel { cause }).get()
    }

    pub fn keyframe_requests(&self) -> &Counter {
        &self.keyframe_requests
    }

    pub fn link_estimates(&self) -> &Counter {
        &self.link_estimates
    }

    /// Counts every buffer through `pad` (frames and bytes) as media of
    /// `video` or audio going `direction`.
    pub fn count_buffers(&self, pad: &gst::Pad, direction: Direction, video: bool) {
        use gst::prelude::*;
        let label = FlowLabel {
            direction: match direction {
                Direction::In => "in",
                Direction::Out => "out",
            },
            media: if video { "video" } else { "audio" },
        };
        let frames = self.frames.get_or_create(&label).clone();
        let bytes = self.bytes.get_or_create(&label).clone();
        pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            if let Some(buffer) = info.buffer() {
                frames.inc();
                bytes.inc_by(buffer.size() as u64);
            }
            gst::PadProbeReturn::Ok
        });
    }

    /// The text for a scrape, with the gauges set from the sessions now,
    /// each as (kind, broadcast), and the egress pipelines they run on.
    pub fn encode<'a>(
        &self,
        sessions: impl IntoIterator<Item = (&'static str, &'a str)>,
        egress_pipelines: usize,
    ) -> String {
        self.egress_pipelines
            .set(i64::try_from(egress_pipelines).unwrap_or(i64::MAX));
        let mut kinds = std::collections::HashMap::<&'static str, i64>::new();
        let mut broadcasts = std::collections::HashSet::new();
        let mut viewers = std::collections::HashMap::<&str, i64>::new();
        for (kind, broadcast) in sessions {
            *kinds.entry(kind).or_default() += 1;
            broadcasts.insert(broadcast);
            if kind == "whep" {
                *viewers.entry(broadcast).or_default() += 1;
            }
        }
        for kind in ["whip", "whep"] {
            let now = kinds.get(kind).copied().unwrap_or_default();
            self.sessions.get_or_create(&KindLabel { kind }).set(now);
        }
        self.broadcasts
            .set(i64::try_from(broadcasts.len()).unwrap_or(i64::MAX));
        // Broadcasts that ended leave the family rather than stay at 0.
        self.viewers.clear();
        for (broadcast, count) in viewers {
            let label = BroadcastLabel {
                broadcast: broadcast.to_owned(),
            };
            self.viewers.get_or_create(&label).set(count);
        }
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scrape_says_what_is_carried() {
        let metrics = Metrics::new();
        metrics.started("whip", Duration::from_millis(80));
        metrics.started("whep", Duration::from_millis(300));
        metrics.error("unauthorized");
        metrics.error("unauthorized");
        metrics.keyframe_requests().inc();
        let text = metrics.encode(
            [
                ("whip", "cam"),
                ("whep", "cam"),
                ("whep", "cam"),
                ("whep", "b"),
            ],
            2,
        );
        for line in [
            "moq_gateway_sessions{kind=\"whip\"} 1",
            "moq_gateway_sessions{kind=\"whep\"} 3",
            "moq_gateway_broadcasts 2",
            "moq_gateway_egress_pipelines 2",
            "moq_gateway_viewers{broadcast=\"cam\"} 2",
            "moq_gateway_viewers{broadcast=\"b\"} 1",
            "moq_gateway_sessions_started_total{kind=\"whep\"} 1",
            "moq_gateway_errors_total{cause=\"unauthorized\"} 2",
            "moq_gateway_keyframe_requests_total 1",
            "moq_gateway_session_setup_seconds_bucket{le=\"0.04\",kind=\"whip\"} 0",
            "moq_gateway_session_setup_seconds_bucket{le=\"0.08\",kind=\"whip\"} 1",
            "# EOF",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line} in\n{text}");
        }
        assert_eq!(metrics.errors("unauthorized"), 2);
        // A broadcast with no viewers left is gone, not 0.
        let text = metrics.encode([("whip", "cam")], 0);
        assert!(!text.contains("moq_gateway_viewers{"), "{text}");
        assert!(
            text.contains("moq_gateway_sessions{kind=\"whep\"} 0"),
            "{text}"
        );
    }

    #[test]
    fn buffers_through_a_pad_are_counted() {
        use gst::prelude::*;
        gst::init().unwrap();
        let metrics = Metrics::new();
        let pad = gst::Pad::builder(gst::PadDirection::Src)
            .name("src")
            .build();
        metrics.count_buffers(&pad, Direction::Out, true);
        pad.set_active(true).unwrap();
        let peer = gst::Pad::builder(gst::PadDirection::Sink)
            .chain_function(|_, _, _| Ok(gst::FlowSuccess::Ok))
            .build();
        peer.set_active(true).unwrap();
        pad.link(&peer).unwrap();
        pad.push_event(gst::event::StreamStart::new("s"));
        pad.push_event(gst::event::Segment::new(&gst::FormattedSegment::<
            gst::ClockTime,
        >::new()));
        for size in [100, 250] {
            pad.push(gst::Buffer::with_size(size).unwrap()).unwrap();
        }
        let text = metrics.encode([], 0);
        assert!(
            text.contains("moq_gateway_frames_total{direction=\"out\",media=\"video\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("moq_gateway_bytes_total{direction=\"out\",media=\"video\"} 350"),
            "{text}"
        );
    }
}
