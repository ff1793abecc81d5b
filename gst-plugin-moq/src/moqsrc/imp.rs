// SPDX-License-Identifier: MIT OR Apache-2.0

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard};

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use tokio::sync::mpsc;

use super::MoqSrcPad;
use super::abr::Limits;
use super::feed::{Frame, Item, Policy, Switch};
use super::rejoin::Rejoin;
use super::session::{self, Selection, Waits};
use super::timeline::Timeline;
use crate::catalog::{self, TrackKind};
use crate::connection;
use crate::log;
use crate::runtime::RUNTIME;

pub static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "moqsrc",
        gst::DebugColorFlags::empty(),
        Some("Media over QUIC source"),
    )
});

const DEFAULT_LATENCY_MS: u32 = 100;

/// Caps of the reference timestamp meta on every buffer: the publisher's own
/// media timestamp (for moqsink, the running time the frame entered it), so
/// applications can measure end-to-end latency or align with the publisher.
pub static TIMESTAMP_CAPS: LazyLock<gst::Caps> =
    LazyLock::new(|| gst::Caps::new_empty_simple("timestamp/x-moq"));
/// Frames in flight between a track reader and its pad's streaming thread.
/// Small: a reader that gets ahead waits instead of queueing stale media.
const CHANNEL_FRAMES: usize = 32;

#[derive(Debug, Clone)]
struct Settings {
    connection: connection::Settings,
    stats_interval_ms: u32,
    latency_ms: u32,
    waits: Waits,
    rejoin_for_keyframes: bool,
    selection: Selection,
}

const DEFAULT_BROADCAST_TIMEOUT_MS: u32 = 30_000;
const DEFAULT_CATALOG_TIMEOUT_MS: u32 = 10_000;

impl Default for Settings {
    fn default() -> Self {
        Self {
            connection: connection::Settings::default(),
            stats_interval_ms: crate::stats::DEFAULT_STATS_INTERVAL_MS,
            latency_ms: DEFAULT_LATENCY_MS,
            waits: Waits {
                broadcast_ms: DEFAULT_BROADCAST_TIMEOUT_MS,
                catalog_ms: DEFAULT_CATALOG_TIMEOUT_MS,
            },
            rejoin_for_keyframes: false,
            selection: Selection {
                catalog: super::CatalogFormat::default(),
                per_rendition: false,
                rendition: None,
                policy: Policy {
                    abr: true,
                    limits: Limits::default(),
                },
                live: tokio::sync::watch::Sender::new(Limits::default()),
            },
        }
    }
}

struct State {
    session: Option<tokio::task::JoinHandle<()>>,
    ticker: Option<tokio::task::JoinHandle<()>>,
    /// Between start and stop; a rendition that shows up outside gets no pad.
    running: bool,
    pads: Vec<MoqSrcPad>,
    flow_combiner: gst_base::UniqueFlowCombiner,
    group_id: gst::GroupId,
    /// The number of the next pad of each kind (`video_0`, `text_1`).
    next_pad: HashMap<TrackKind, u32>,
}

impl Default for State {
    fn default() -> Self {
        Self {
            session: None,
            ticker: None,
            running: false,
            pads: Vec::new(),
            flow_combiner: gst_base::UniqueFlowCombiner::new(),
            group_id: gst::GroupId::next(),
            next_pad: HashMap::new(),
        }
    }
}

#[derive(Default)]
pub struct MoqSrc {
    settings: Mutex<Settings>,
    pub(super) status: Arc<connection::StatusCell>,
    frames: AtomicU64,
    bytes: AtomicU64,
    /// Keyframes received: a group each (every audio frame is one).
    groups: AtomicU64,
    discontinuities: AtomicU64,
    /// Times the broadcast was lost and subscribed to again.
    resubscriptions: AtomicU64,
    /// Tracks subscribed to again for a keyframe (`rejoin-for-keyframes`).
    rejoins: AtomicU64,
    /// Moves of a pad to another rendition, down and up.
    switches_down: AtomicU64,
    switches_up: AtomicU64,
    /// How much later than its timestamp the last frame was pushed, in µs:
    /// its delay over the fastest frame so far (see `Timeline`).
    delay_us: AtomicI64,
    state: Mutex<State>,
    timeline: Arc<Timeline>,
}

impl MoqSrc {
    fn settings(&self) -> MutexGuard<'_, Settings> {
        self.settings
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn start(&self) -> Result<(), gst::ErrorMessage> {
        let (target, stats_interval_ms, waits, selection) = {
            let settings = self.settings();
            (
                settings.connection.validate()?,
                settings.stats_interval_ms,
                settings.waits,
                settings.selection.clone(),
            )
        };
        gst::info!(
            CAT,
            imp = self,
            "subscribing to broadcast '{}' at {}",
            target.broadcast,
            target.display_url()
        );
        self.timeline.reset();
        let mut state = self.state();
        state.group_id = gst::GroupId::next();
        state.flow_combiner.reset();
        state.running = true;
        state.ticker = crate::stats::spawn_ticker(
            self.obj().upcast_ref::<gst::Element>().downgrade(),
            stats_interval_ms,
        );
        let scope = log::Scope::new(*CAT, &*self.obj());
        let broadcast = target.broadcast.clone();
        state.session = Some(RUNTIME.spawn(scope.wrap(session::contain_panics(
            self.obj().downgrade(),
            broadcast,
            scope.wrap(session::run_session(
                self.obj().downgrade(),
                target,
                waits,
                selection,
                self.status.clone(),
                scope.clone(),
            )),
        ))));
        Ok(())
    }

    fn stop(&self) {
        let (session, pads) = {
            let mut state = self.state();
            state.running = false;
            if let Some(ticker) = state.ticker.take() {
                ticker.abort();
            }
            state.next_pad.clear();
            (state.session.take(), std::mem::take(&mut state.pads))
        };
        // Aborting the session drops every track reader and with them the
        // senders the pad tasks wait on, so the tasks wake up and stop.
        if let Some(session) = session {
            session.abort();
        }
        self.status.set(connection::Status::Idle);
        let obj = self.obj();
        for pad in pads {
            // Deactivating flushes the pad and joins its task.
            let _ = pad.set_active(false);
            let _ = obj.remove_pad(&pad);
        }
    }

    /// Add a pad for a new rendition, its sticky events stored before anyone
    /// can link it, and start the streaming thread that pushes its frames.
    pub(super) fn add_rendition(
        &self,
        start: &super::feed::Rendition,
        renditions: Vec<(super::abr::Rung, gst::Caps)>,
    ) -> Option<(mpsc::Sender<Item>, Arc<Rejoin>, MoqSrcPad)> {
        let (kind, track, caps) = (start.kind, start.name.as_str(), &start.caps);
        let (name, group_id) = self.next_pad_name(kind)?;
        let pad = self.make_pad(kind, &name, track)?;
        pad.imp().set_renditions(renditions);
        let vtt = caps
            .structure(0)
            .is_some_and(|s| s.name() == "application/x-subtitle-vtt");
        pad.imp().vtt.store(vtt, Ordering::Relaxed);
        if pad.set_active(true).is_err() {
            gst::warning!(CAT, imp = self, "cannot activate pad {name}");
            return None;
        }
        self.store_first_events(&pad, track, group_id, start);
        let Some(tx) = self.start_pad_task(&pad) else {
            gst::warning!(CAT, imp = self, "cannot start the task of pad {name}");
            return None;
        };
        *pad.imp()
            .items
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(tx.downgrade());
        {
            let mut state = self.state();
            if !state.running {
                // Stopped while this pad was being made: it never appears.
                drop(state);
                let _ = pad.set_active(false);
                return None;
            }
            state.flow_combiner.add_pad(&pad);
            state.pads.push(pad.clone());
        }
        gst::info!(
            CAT,
            imp = self,
            "adding pad {name} for track '{track}' with {caps}"
        );
        if self.obj().add_pad(&pad).is_err() {
            return None;
        }
        Some((tx, pad.imp().rejoin.clone(), pad))
    }

    /// The next free pad name of `kind` and the stream group, unless the
    /// element stopped.
    fn next_pad_name(&self, kind: TrackKind) -> Option<(String, gst::GroupId)> {
        let mut state = self.state();
        if !state.running {
            return None;
        }
        let n = state.next_pad.entry(kind).or_default();
        let name = format!("{}_{}", kind.as_str(), *n);
        *n += 1;
        Some((name, state.group_id))
    }

    /// Stream start, caps and segment, stored before the pad is added so
    /// whoever links it first sees them.
    fn store_first_events(
        &self,
        pad: &MoqSrcPad,
        track: &str,
        group_id: gst::GroupId,
        start: &super::feed::Rendition,
    ) {
        let stream_id = pad.create_stream_id(&*self.obj(), Some(track));
        // Text and data come now and then: downstream that waits on every
        // pad (an aggregator, a muxer) must not wait for them.
        let flags = if start.kind.is_sparse() {
            gst::StreamFlags::SPARSE
        } else {
            gst::StreamFlags::empty()
        };
        let _ = pad.store_sticky_event(
            &gst::event::StreamStart::builder(stream_id.as_str())
                .group_id(group_id)
                .flags(flags)
                .build(),
        );
        let _ = pad.store_sticky_event(&gst::event::Caps::new(&start.caps));
        let mut segment = gst::FormattedSegment::<gst::ClockTime>::new();
        segment.set_start(gst::ClockTime::ZERO);
        let _ = pad.store_sticky_event(&gst::event::Segment::new(&segment));
        if let Some(lang) = &start.lang {
            // What playbin and subtitle pickers name a text stream by.
            let mut tags = gst::TagList::new();
            tags.make_mut()
                .add::<gst::tags::LanguageCode>(&lang.as_str(), gst::TagMergeMode::Replace);
            tags.make_mut().set_scope(gst::TagScope::Stream);
            let _ = pad.store_sticky_event(&gst::event::Tag::new(tags));
        }
    }

    /// The pad itself: its caps are fixed (they come from the catalog), and
    /// upstream events from its peer come here.
    fn make_pad(&self, kind: TrackKind, name: &str, track: &str) -> Option<MoqSrcPad> {
        let templ = self
            .obj()
            .element_class()
            .pad_template(&format!("{}_%u", kind.as_str()))?;
        let pad = gst::PadBuilder::<MoqSrcPad>::from_template(&templ)
            .name(name)
            // Caps come from the catalog: queries answer with them, not the template.
            .flags(gst::PadFlags::FIXED_CAPS)
            .query_function(|pad, parent, query| {
                MoqSrc::catch_panic_pad_function(parent, || false, |src| src.src_query(pad, query))
            })
            .event_function(|pad, parent, event| {
                MoqSrc::catch_panic_pad_function(
                    parent,
                    || false,
                    |src| {
                        // Keyframe requests and QoS from downstream have no one
                        // to go to here (the publisher is across the relay);
                        // the relay can re-send the current group, if asked to.
                        if event.type_() == gst::EventType::CustomUpstream {
                            src.upstream_custom(pad, &event);
                            return true;
                        }
                        gst::Pad::event_default(pad, Some(&*src.obj()), event)
                    },
                )
            })
            .build();
        *pad.imp()
            .track
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(track.to_string());
        Some(pad)
    }

    /// Starts `pad`'s streaming thread, which takes its track reader's items
    /// from the channel returned, one at a time.
    fn start_pad_task(&self, pad: &MoqSrcPad) -> Option<mpsc::Sender<Item>> {
        let (tx, rx) = mpsc::channel(CHANNEL_FRAMES);
        let rx = Arc::new(Mutex::new(rx));
        let element = self.obj().downgrade();
        let task_pad = pad.downgrade();
        pad.start_task(move || {
            let (Some(element), Some(pad)) = (element.upgrade(), task_pad.upgrade()) else {
                return;
            };
            // This is a GStreamer streaming thread, never a tokio one.
            let item = rx
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .blocking_recv();
            element.imp().handle_item(&pad, item);
        })
        .ok()?;
        Some(tx)
    }

    /// What the pad's streaming thread does with the next item of its
    /// track's reader.
    fn handle_item(&self, pad: &MoqSrcPad, item: Option<Item>) {
        match item {
            // The reader went away without an end: the element is stopping.
            None => {
                let _ = pad.pause_task();
            }
            Some(Item::Eos) => {
                gst::debug!(CAT, obj = pad, "track ended");
                pad.push_event(gst::event::Eos::new());
                let _ = pad.pause_task();
            }
            Some(Item::Caps(caps)) => {
                if pad.current_caps().as_ref() != Some(&caps) {
                    gst::info!(CAT, obj = pad, "caps changed to {caps}");
                    pad.push_event(gst::event::Caps::new(&caps));
                }
            }
            Some(Item::Frame(frame)) if pad.imp().vtt.load(Ordering::Relaxed) => {
                self.push_vtt(pad, frame);
            }
            Some(Item::Frame(frame)) => {
                let buffer = self.buffer(pad, frame);
                self.push(pad, buffer);
            }
            Some(Item::Switch(switch)) => self.switched(pad, switch),
        }
    }

    /// `pad` plays another rendition from its next frame on: its `track`
    /// says which, `stats` counts it, and an element message tells the
    /// application from what to what and why.
    fn switched(&self, pad: &MoqSrcPad, switch: Switch) {
        let counter = if switch.why.is_down() {
            &self.switches_down
        } else {
            &self.switches_up
        };
        counter.fetch_add(1, Ordering::Relaxed);
        gst::info!(
            CAT,
            obj = pad,
            "rendition '{}' -> '{}' ({:?})",
            switch.from,
            switch.to,
            switch.why
        );
        *pad.imp()
            .track
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(switch.to.clone());
        pad.notify("track");
        let mut s = gst::Structure::builder("moqsrc-switch")
            .field("pad", pad.name().as_str())
            .field("from", switch.from.as_str())
            .field("to", switch.to.as_str())
            .field("reason", switch.why.as_str())
            .field_if_some("throughput", switch.throughput);
        s = match switch.why {
            super::abr::Why::Late(ms) => s.field("late-ms", ms),
            super::abr::Why::Room(bps) => s.field("estimated-bitrate", bps),
            super::abr::Why::Short(bps) => s.field("received-bitrate", bps),
            _ => s,
        };
        let s = s.build();
        let _ = self
            .obj()
            .post_message(gst::message::Element::builder(s).src(&*self.obj()).build());
    }

    /// Counts a frame in `stats`; a rejoin's first frame starts the pad over.
    fn count(&self, pad: &MoqSrcPad, frame: &Frame) {
        if frame.restart {
            self.rejoins.fetch_add(1, Ordering::Relaxed);
            pad.imp().start_over();
        }
        self.frames.fetch_add(1, Ordering::Relaxed);
        self.bytes
            .fetch_add(frame.payload.len() as u64, Ordering::Relaxed);
        if frame.discont {
            self.discontinuities.fetch_add(1, Ordering::Relaxed);
        }
        if frame.keyframe {
            self.groups.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The running time a frame with the publisher's `timestamp_us` plays
    /// at on `pad`, and by how much its timestamps jumped if they did (a
    /// WARNING says so).
    fn play_time(&self, pad: &MoqSrcPad, timestamp_us: u64) -> (gst::ClockTime, Option<i128>) {
        let (played_us, jumped) = pad
            .imp()
            .continuity
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .next(timestamp_us);
        if let Some(jump) = jumped {
            gst::element_imp_warning!(
                self,
                gst::StreamError::Format,
                (
                    "Timestamps of {} jumped by {:.1} s; playing on from the previous frame",
                    pad.name(),
                    jump as f64 / 1e6
                )
            );
        }
        let now = self.obj().current_running_time();
        let pts = pad
            .imp()
            .monotonic(self.timeline.running_time(played_us, now));
        if let Some(now) = now {
            self.delay_us
                .store(crate::stats::delay_us(now, pts), Ordering::Relaxed);
        }
        (pts, jumped)
    }

    /// A frame as a buffer of `pad`: its running time on the shared
    /// timeline, its flags and the publisher's timestamp as a meta; counted.
    fn buffer(&self, pad: &MoqSrcPad, frame: Frame) -> gst::Buffer {
        self.count(pad, &frame);
        let (pts, jumped) = self.play_time(pad, frame.timestamp_us);
        let mut flags = gst::BufferFlags::empty();
        if !frame.keyframe {
            flags |= gst::BufferFlags::DELTA_UNIT;
        }
        if frame.discont || jumped.is_some() {
            flags |= gst::BufferFlags::DISCONT;
        }
        // Wraps the received bytes; no copy.
        let mut buffer = gst::Buffer::from_slice(frame.payload);
        {
            let buffer = buffer.get_mut().expect("a new buffer is writable");
            buffer.set_pts(pts);
            buffer.set_flags(flags);
            gst::ReferenceTimestampMeta::add(
                buffer,
                &TIMESTAMP_CAPS,
                gst::ClockTime::from_useconds(frame.timestamp_us),
                gst::ClockTime::NONE,
            );
        }
        buffer
    }

    /// A hang `vtt` frame (a whole WebVTT segment) as GStreamer streams
    /// WebVTT: the header once, in a buffer of its own, then cue blocks.
    fn push_vtt(&self, pad: &MoqSrcPad, mut frame: Frame) {
        let (header, cues) = crate::vtt::split(&frame.payload);
        frame.payload = cues;
        let published = gst::ClockTime::from_useconds(frame.timestamp_us);
        let buffer = self.buffer(pad, frame);
        if let Some(header) = header
            && !pad.imp().vtt_header_sent.swap(true, Ordering::Relaxed)
        {
            let mut first = gst::Buffer::from_slice(header);
            {
                let first = first.get_mut().expect("a new buffer is writable");
                first.set_pts(buffer.pts());
                first.set_flags(gst::BufferFlags::HEADER);
                gst::ReferenceTimestampMeta::add(
                    first,
                    &TIMESTAMP_CAPS,
                    published,
                    gst::ClockTime::NONE,
                );
            }
            self.push(pad, first);
        }
        self.push(pad, buffer);
    }

    /// Pushes `buffer` and acts on the combined flow of all pads: a flushing
    /// or finished pad stops its task, an error is posted.
    fn push(&self, pad: &MoqSrcPad, buffer: gst::Buffer) {
        let result = pad.push(buffer);
        let combined = self.state().flow_combiner.update_pad_flow(pad, result);
        match combined {
            Ok(_) => {}
            Err(gst::FlowError::Flushing) => {
                let _ = pad.pause_task();
            }
            Err(gst::FlowError::Eos) => {
                pad.push_event(gst::event::Eos::new());
                let _ = pad.pause_task();
            }
            Err(err) => {
                gst::element_imp_error!(
                    self,
                    gst::StreamError::Failed,
                    ("Internal data stream error."),
                    ["streaming stopped on {}, reason {:?}", pad.name(), err]
                );
                pad.push_event(gst::event::Eos::new());
                let _ = pad.pause_task();
            }
        }
    }

    /// A custom upstream event from `pad`'s peer: a keyframe request makes
    /// the track's reader subscribe again when `rejoin-for-keyframes` is on
    /// (see `rejoin`); nothing else has anywhere to go.
    fn upstream_custom(&self, pad: &MoqSrcPad, event: &gst::Event) {
        let keyframe = gst_video::UpstreamForceKeyUnitEvent::parse(event).is_ok();
        if keyframe && self.settings().rejoin_for_keyframes {
            if pad.imp().rejoin.ask(std::time::Instant::now()) {
                gst::info!(CAT, obj = pad, "keyframe asked for: subscribing again");
            }
            return;
        }
        gst::debug!(CAT, obj = pad, "upstream event {event:?} not forwarded");
    }

    /// The broadcast is back after a loss: its timestamps may start over
    /// (a restarted publisher), so the next frame anchors the timeline
    /// again; every track's first frame carries DISCONT.
    pub(super) fn resubscribed(&self) {
        self.resubscriptions.fetch_add(1, Ordering::Relaxed);
        for pad in &self.state().pads {
            pad.imp()
                .continuity
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .reset();
        }
        self.timeline.reset();
    }

    fn src_query(&self, pad: &MoqSrcPad, query: &mut gst::QueryRef) -> bool {
        match query.view_mut() {
            gst::QueryViewMut::Latency(q) => {
                let latency = gst::ClockTime::from_mseconds(self.settings().latency_ms.into());
                q.set(true, latency, Some(latency));
                true
            }
            _ => gst::Pad::query_default(pad, Some(&*self.obj()), query),
        }
    }

    pub(super) fn post_error(&self, msg: gst::ErrorMessage) {
        self.post_error_message(msg);
    }
}

#[glib::object_subclass]
impl ObjectSubclass for MoqSrc {
    const NAME: &'static str = "GstMoqSrc";
    type Type = super::MoqSrc;
    type ParentType = gst::Element;
    type Interfaces = (gst::URIHandler,);
}

impl ObjectImpl for MoqSrc {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            let mut props = connection::properties();
            props.push(crate::stats::interval_property());
            props.push(
                glib::ParamSpecBoxed::builder::<gst::Structure>("stats")
                    .nick("Statistics")
                    .blurb(
                        "What was received since the element was made (frames, bytes, groups, \
                         switches, reconnects), the current delay-us, the version and the RTT; \
                         see the README",
                    )
                    .read_only()
                    .build(),
            );
            props.extend([
                glib::ParamSpecUInt::builder("broadcast-timeout")
                    .nick("Broadcast timeout")
                    .blurb(
                        "Milliseconds to wait for the broadcast to be announced (at start, and \
                         to come back after it was lost) before failing with an error; 0 waits forever",
                    )
                    .default_value(DEFAULT_BROADCAST_TIMEOUT_MS)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("catalog-timeout")
                    .nick("Catalog timeout")
                    .blurb(
                        "Milliseconds to wait for the broadcast's catalog once it is announced \
                         before failing with an error; 0 waits forever",
                    )
                    .default_value(DEFAULT_CATALOG_TIMEOUT_MS)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("latency")
                    .nick("Latency")
                    .blurb(
                        "Milliseconds of latency reported to the pipeline: how much later than \
                         the first frame's arrival each frame is rendered, to absorb network jitter",
                    )
                    .default_value(DEFAULT_LATENCY_MS)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoolean::builder("rejoin-for-keyframes")
                    .nick("Rejoin for keyframes")
                    .blurb(
                "Answer a keyframe request from downstream by subscribing to the video track \
                 again, so the relay re-sends its current group (at most once a second)",
            )
                    .default_value(false)
                    .mutable_playing()
                    .build(),
            ]);
            props.extend(Selection::properties());
            props
        });
        PROPERTIES.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let mut settings = self.settings();
        if connection::set_property(&mut settings.connection, value, pspec)
            || settings.selection.set_property(value, pspec)
        {
            return;
        }
        match pspec.name() {
            "latency" => settings.latency_ms = value.get().unwrap_or(DEFAULT_LATENCY_MS),
            "broadcast-timeout" => {
                settings.waits.broadcast_ms = value.get().unwrap_or(DEFAULT_BROADCAST_TIMEOUT_MS);
            }
            "catalog-timeout" => {
                settings.waits.catalog_ms = value.get().unwrap_or(DEFAULT_CATALOG_TIMEOUT_MS);
            }
            "stats-interval" => settings.stats_interval_ms = value.get().unwrap_or_default(),
            "rejoin-for-keyframes" => settings.rejoin_for_keyframes = value.get().unwrap_or(false),
            _ => {}
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let settings = self.settings();
        if let Some(value) = connection::property(&settings.connection, pspec)
            .or_else(|| settings.selection.property(pspec))
        {
            return value;
        }
        match pspec.name() {
            "latency" => settings.latency_ms.to_value(),
            "broadcast-timeout" => settings.waits.broadcast_ms.to_value(),
            "catalog-timeout" => settings.waits.catalog_ms.to_value(),
            "stats-interval" => settings.stats_interval_ms.to_value(),
            "rejoin-for-keyframes" => settings.rejoin_for_keyframes.to_value(),
            "status" => self.status.get().to_value(),
            "stats" => gst::Structure::builder("application/x-moqsrc-stats")
                .field(
                    "connected",
                    self.status.get() == connection::Status::Connected,
                )
                .field("frames", self.frames.load(Ordering::Relaxed))
                .field("bytes", self.bytes.load(Ordering::Relaxed))
                .field("groups", self.groups.load(Ordering::Relaxed))
                .field("delay-us", self.delay_us.load(Ordering::Relaxed))
                .field("reconnects", self.status.reconnects())
                .field(
                    "discontinuities",
                    self.discontinuities.load(Ordering::Relaxed),
                )
                .field(
                    "resubscriptions",
                    self.resubscriptions.load(Ordering::Relaxed),
                )
                .field("rejoins", self.rejoins.load(Ordering::Relaxed))
                .field("switches-down", self.switches_down.load(Ordering::Relaxed))
                .field("switches-up", self.switches_up.load(Ordering::Relaxed))
                .field_if_some(
                    "estimated-bitrate",
                    self.status
                        .recv_rate()
                        .map(moq_net::bandwidth::Rate::as_bps),
                )
                .field_if_some("version", self.status.version())
                .field_if_some("rtt-us", self.status.rtt().map(|d| d.as_micros() as u64))
                .build()
                .to_value(),
            _ => None::<String>.to_value(),
        }
    }

    fn constructed(&self) {
        self.parent_constructed();
        self.obj().set_element_flags(gst::ElementFlags::SOURCE);
    }
}

impl GstObjectImpl for MoqSrc {}

impl URIHandlerImpl for MoqSrc {
    const URI_TYPE: gst::URIType = gst::URIType::Src;

    fn protocols() -> &'static [&'static str] {
        crate::uri::PROTOCOLS
    }

    fn uri(&self) -> Option<String> {
        crate::uri::of(&self.settings().connection)
    }

    fn set_uri(&self, uri: &str) -> Result<(), glib::Error> {
        let location = crate::uri::location(self.obj().upcast_ref(), uri)?;
        location.apply(&mut self.settings().connection);
        self.obj().notify("url");
        self.obj().notify("broadcast");
        Ok(())
    }
}

impl ElementImpl for MoqSrc {
    /// EOS sent to the element ends every pad after the frames it already
    /// has, through the pad's own streaming thread (which alone pushes on
    /// it): what `gst-launch-1.0 -e` sends on Ctrl-C.
    fn send_event(&self, event: gst::Event) -> bool {
        if event.type_() != gst::EventType::Eos {
            return self.parent_send_event(event);
        }
        gst::info!(CAT, imp = self, "EOS sent to the element: ending every pad");
        let pads = self.state().pads.clone();
        for pad in pads {
            let items = pad
                .imp()
                .items
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .as_ref()
                .and_then(tokio::sync::mpsc::WeakSender::upgrade);
            // Queued behind what the reader already handed over (waiting
            // while the channel is full); no channel means the pad has
            // already ended.
            if let Some(items) = items {
                RUNTIME.spawn(async move {
                    let _ = items.send(Item::Eos).await;
                });
            }
        }
        true
    }

    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static METADATA: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "MoQ Source",
                "Source/Network/Audio/Video",
                "Plays a Media over QUIC broadcast: one pad per rendition of its catalog",
                "gst-plugin-moq developers",
            )
        });
        Some(&*METADATA)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static TEMPLATES: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
            catalog::pad_templates(
                gst::PadDirection::Src,
                gst::PadPresence::Sometimes,
                MoqSrcPad::static_type(),
            )
        });
        TEMPLATES.as_ref()
    }

    fn change_state(
        &self,
        transition: gst::StateChange,
    ) -> Result<gst::StateChangeSuccess, gst::StateChangeError> {
        gst::debug!(CAT, imp = self, "changing state: {transition:?}");
        if transition == gst::StateChange::ReadyToPaused
            && let Err(err) = self.start()
        {
            self.post_error_message(err);
            return Err(gst::StateChangeError);
        }
        if transition == gst::StateChange::PausedToReady {
            // Before the parent deactivates the pads: deactivating joins the
            // pad tasks, which wait for frames until the session (holding the
            // senders) is gone; a publisher gone quiet would block it forever.
            self.stop();
        }
        let result = self.parent_change_state(transition)?;
        // A live source: nothing to preroll.
        if matches!(
            transition,
            gst::StateChange::ReadyToPaused | gst::StateChange::PlayingToPaused
        ) {
            return Ok(gst::StateChangeSuccess::NoPreroll);
        }
        Ok(result)
    }
}
