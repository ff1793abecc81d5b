// SPDX-License-Identifier: MIT OR Apache-2.0

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use tokio::sync::mpsc;

use super::MoqSrcPad;
use super::timeline::Timeline;
use crate::catalog::{self, TrackKind};
use crate::connection::{self, Target};
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
/// How long a failed broadcast waits for the connection to say it failed too.
const CONNECTION_VERDICT: Duration = Duration::from_millis(500);
/// How far a group may fall behind the newest before the reader skips it.
const MAX_GROUP_AGE: Duration = Duration::from_millis(500);

#[derive(Debug, Clone)]
struct Settings {
    connection: connection::Settings,
    stats_interval_ms: u32,
    latency_ms: u32,
    waits: Waits,
}

/// How long moqsrc waits for what it cannot do without; 0 is forever.
#[derive(Clone, Copy, Debug)]
struct Waits {
    broadcast_ms: u32,
    catalog_ms: u32,
}

const DEFAULT_BROADCAST_TIMEOUT_MS: u32 = 30_000;
/// How long a received group nobody reads stays in memory.
const RECEIVED_KEEP: Duration = Duration::from_secs(2);
/// How long a broadcast whose catalog failed may take to close before the
/// failure counts as the catalog's own.
const LOSS_SETTLE: Duration = Duration::from_secs(2);
const DEFAULT_CATALOG_TIMEOUT_MS: u32 = 10_000;

impl Waits {
    fn broadcast(&self) -> Option<Duration> {
        (self.broadcast_ms > 0).then(|| Duration::from_millis(self.broadcast_ms.into()))
    }

    fn catalog(&self) -> Option<Duration> {
        (self.catalog_ms > 0).then(|| Duration::from_millis(self.catalog_ms.into()))
    }
}

/// `fut`, or `None` once `limit` (if any) has passed.
async fn within<T>(
    limit: Option<Duration>,
    fut: impl std::future::Future<Output = T>,
) -> Option<T> {
    match limit {
        Some(limit) => tokio::time::timeout(limit, fut).await.ok(),
        None => Some(fut.await),
    }
}

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
        }
    }
}

/// What a track reader hands its pad's streaming thread.
enum Item {
    Frame {
        payload: Bytes,
        timestamp_us: u64,
        keyframe: bool,
        discont: bool,
    },
    Caps(gst::Caps),
    Eos,
}

struct State {
    session: Option<tokio::task::JoinHandle<()>>,
    ticker: Option<tokio::task::JoinHandle<()>>,
    /// Between start and stop; a rendition that shows up outside gets no pad.
    running: bool,
    pads: Vec<MoqSrcPad>,
    flow_combiner: gst_base::UniqueFlowCombiner,
    group_id: gst::GroupId,
    next_video: u32,
    next_audio: u32,
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
            next_video: 0,
            next_audio: 0,
        }
    }
}

#[derive(Default)]
pub struct MoqSrc {
    settings: Mutex<Settings>,
    status: Arc<connection::StatusCell>,
    frames: AtomicU64,
    bytes: AtomicU64,
    /// Keyframes received: a group each (every audio frame is one).
    groups: AtomicU64,
    discontinuities: AtomicU64,
    /// Times the broadcast was lost and subscribed to again.
    resubscriptions: AtomicU64,
    /// How much later than its timestamp the last frame was pushed, in µs:
    /// its delay over the fastest frame so far (see `Timeline`).
    delay_us: AtomicI64,
    state: Mutex<State>,
    timeline: Arc<Timeline>,
}

impl MoqSrc {
    fn settings(&self) -> MutexGuard<'_, Settings> {
        self.settings.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn start(&self) -> Result<(), gst::ErrorMessage> {
        let (target, stats_interval_ms, waits) = {
            let settings = self.settings();
            (
                settings.connection.validate()?,
                settings.stats_interval_ms,
                settings.waits,
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
        state.session = Some(RUNTIME.spawn(scope.wrap(contain_panics(
            self.obj().downgrade(),
            broadcast,
            scope.wrap(run_session(
                self.obj().downgrade(),
                target,
                waits,
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
            state.next_video = 0;
            state.next_audio = 0;
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
    fn add_rendition(
        &self,
        kind: TrackKind,
        track: &str,
        caps: gst::Caps,
    ) -> Option<mpsc::Sender<Item>> {
        let obj = self.obj();
        let (name, group_id) = {
            let mut state = self.state();
            if !state.running {
                return None;
            }
            let n = match kind {
                TrackKind::Video => &mut state.next_video,
                TrackKind::Audio => &mut state.next_audio,
            };
            let name = format!("{}_{}", kind.as_str(), *n);
            *n += 1;
            (name, state.group_id)
        };
        let templ = obj
            .element_class()
            .pad_template(&format!("{}_%u", kind.as_str()))?;
        let pad = gst::PadBuilder::<MoqSrcPad>::from_template(&templ)
            .name(name.as_str())
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
                        // to go to here (the publisher is across the relay).
                        if event.type_() == gst::EventType::CustomUpstream {
                            gst::debug!(CAT, obj = pad, "upstream event {event:?} not forwarded");
                            return true;
                        }
                        gst::Pad::event_default(pad, Some(&*src.obj()), event)
                    },
                )
            })
            .build();
        *pad.imp().track.lock().unwrap_or_else(|e| e.into_inner()) = Some(track.to_string());
        if pad.set_active(true).is_err() {
            gst::warning!(CAT, imp = self, "cannot activate pad {name}");
            return None;
        }
        let stream_id = pad.create_stream_id(&*obj, Some(track));
        let _ = pad.store_sticky_event(
            &gst::event::StreamStart::builder(stream_id.as_str())
                .group_id(group_id)
                .build(),
        );
        let _ = pad.store_sticky_event(&gst::event::Caps::new(&caps));
        let mut segment = gst::FormattedSegment::<gst::ClockTime>::new();
        segment.set_start(gst::ClockTime::ZERO);
        let _ = pad.store_sticky_event(&gst::event::Segment::new(&segment));

        let (tx, rx) = mpsc::channel(CHANNEL_FRAMES);
        let rx = Arc::new(Mutex::new(rx));
        let element = obj.downgrade();
        let task_pad = pad.downgrade();
        let started = pad.start_task(move || {
            let (Some(element), Some(pad)) = (element.upgrade(), task_pad.upgrade()) else {
                return;
            };
            // This is a GStreamer streaming thread, never a tokio one.
            let item = rx.lock().unwrap_or_else(|e| e.into_inner()).blocking_recv();
            element.imp().handle_item(&pad, item);
        });
        if started.is_err() {
            gst::warning!(CAT, imp = self, "cannot start the task of pad {name}");
            return None;
        }
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
        if obj.add_pad(&pad).is_err() {
            return None;
        }
        Some(tx)
    }

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
                gst::info!(CAT, obj = pad, "caps changed to {caps}");
                pad.push_event(gst::event::Caps::new(&caps));
            }
            Some(Item::Frame {
                payload,
                timestamp_us,
                keyframe,
                discont,
            }) => {
                self.frames.fetch_add(1, Ordering::Relaxed);
                self.bytes
                    .fetch_add(payload.len() as u64, Ordering::Relaxed);
                if discont {
                    self.discontinuities.fetch_add(1, Ordering::Relaxed);
                }
                let (played_us, jumped) = pad
                    .imp()
                    .continuity
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .next(timestamp_us);
                let discont = discont || jumped.is_some();
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
                if keyframe {
                    self.groups.fetch_add(1, Ordering::Relaxed);
                }
                let now = self.obj().current_running_time();
                let pts = pad
                    .imp()
                    .monotonic(self.timeline.running_time(played_us, now));
                if let Some(now) = now {
                    self.delay_us
                        .store(crate::stats::delay_us(now, pts), Ordering::Relaxed);
                }
                // Wraps the received bytes; no copy.
                let mut buffer = gst::Buffer::from_slice(payload);
                {
                    let buffer = buffer.get_mut().expect("a new buffer is writable");
                    buffer.set_pts(pts);
                    let mut flags = gst::BufferFlags::empty();
                    if !keyframe {
                        flags |= gst::BufferFlags::DELTA_UNIT;
                    }
                    if discont {
                        flags |= gst::BufferFlags::DISCONT;
                    }
                    buffer.set_flags(flags);
                    gst::ReferenceTimestampMeta::add(
                        buffer,
                        &TIMESTAMP_CAPS,
                        gst::ClockTime::from_useconds(timestamp_us),
                        gst::ClockTime::NONE,
                    );
                }
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
        }
    }

    /// The broadcast is back after a loss: its timestamps may start over
    /// (a restarted publisher), so the next frame anchors the timeline
    /// again; every track's first frame carries DISCONT.
    fn resubscribed(&self) {
        self.resubscriptions.fetch_add(1, Ordering::Relaxed);
        for pad in self.state().pads.iter() {
            pad.imp()
                .continuity
                .lock()
                .unwrap_or_else(|e| e.into_inner())
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

    fn post_error(&self, msg: gst::ErrorMessage) {
        self.post_error_message(msg);
    }
}

/// Runs `session` as a task of its own and turns a panic in it into an
/// ERROR. The MoQ libraries parse what the network sends on this task, and
/// some of them panic on hostile input (hang 0.21 on a non-ASCII H.264 codec
/// string, found by fuzzing): without this the session would just vanish
/// and moqsrc would wait forever. Aborting this future aborts the session.
async fn contain_panics(
    element: glib::WeakRef<super::MoqSrc>,
    broadcast: String,
    session: impl std::future::Future<Output = ()> + Send + 'static,
) {
    struct AbortOnDrop(tokio::task::AbortHandle);
    impl Drop for AbortOnDrop {
        fn drop(&mut self) {
            self.0.abort();
        }
    }
    let task = tokio::spawn(session);
    let _guard = AbortOnDrop(task.abort_handle());
    if let Err(err) = task.await
        && err.is_panic()
    {
        let panic = err.into_panic();
        let why = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown".into());
        if let Some(obj) = element.upgrade() {
            obj.imp().status.set(connection::Status::Failed);
            obj.imp().post_error(gst::error_msg!(
                gst::StreamError::Failed,
                (
                    "Reading broadcast '{}' failed: a MoQ library panicked on what the \
                     publisher sent: {}",
                    broadcast,
                    why
                )
            ));
        }
    }
}

/// The whole life of a subscription: connect, wait for the broadcast, follow
/// its catalog and run one reader per rendition until the broadcast ends.
async fn run_session(
    element: glib::WeakRef<super::MoqSrc>,
    target: Target,
    waits: Waits,
    status: Arc<connection::StatusCell>,
    scope: log::Scope,
) {
    // Frames go straight to the pads; nothing older than a group is wanted.
    let origin = connection::spawn_origin(RECEIVED_KEEP);
    let consumer = origin.consume();
    let connection = match connection::connect(&target, connection::Role::Subscribe(origin)) {
        Ok(connection) => connection,
        Err(msg) => {
            if let Some(obj) = element.upgrade() {
                obj.imp().post_error(msg);
            }
            return;
        }
    };
    let status_cell = status.clone();
    let result = tokio::select! {
        // A connection that gave up also ends the broadcast: its reason is the
        // one to report, so it is looked at first.
        biased;
        ended = connection::monitor(connection.clone(), status_cell, element.clone(), *CAT, target.clone()) => {
            Err(match ended {
                Some(err) => connection::failure_message(&target, &err, false),
                None => connection::lost_message(&target, false),
            })
        }
        followed = follow(&element, &consumer, &target, waits, &scope) => followed,
    };
    // A connection that gives up closes the origin a moment before it reports
    // why, so the broadcast can fail first: the connection's reason, if it
    // comes, is the one to report.
    let result = match result {
        Err(msg) => match tokio::time::timeout(CONNECTION_VERDICT, connection.closed()).await {
            Ok(Err(err)) => Err(connection::failure_message(&target, &err, false)),
            _ => Err(msg),
        },
        ok => ok,
    };
    match result {
        // The broadcast ended: so does the connection.
        Ok(()) => status.set(connection::Status::Idle),
        Err(msg) => {
            status.set(connection::Status::Failed);
            if let Some(obj) = element.upgrade() {
                obj.imp().post_error(msg);
            }
        }
    }
    if let Some(obj) = element.upgrade() {
        obj.notify("status");
    }
}

struct Rendition {
    kind: TrackKind,
    caps: gst::Caps,
    container: moq_mux::catalog::hang::Container,
}

/// The renditions of a catalog we can play, by track name. Those we cannot
/// are reported once each as a warning and left out.
fn renditions(
    element: &glib::WeakRef<super::MoqSrc>,
    catalog: &moq_mux::catalog::hang::Catalog,
    skipped: &mut HashSet<String>,
) -> Vec<(String, Rendition)> {
    let mut out = Vec::new();
    let video = catalog.video.renditions.iter().map(|(name, config)| {
        (
            name,
            TrackKind::Video,
            catalog::video_caps(config).map_err(|e| e.to_string()),
            &config.container,
        )
    });
    let audio = catalog.audio.renditions.iter().map(|(name, config)| {
        (
            name,
            TrackKind::Audio,
            catalog::audio_caps(config).map_err(|e| e.to_string()),
            &config.container,
        )
    });
    for (name, kind, caps, container) in video.chain(audio) {
        let mux_kind = match kind {
            TrackKind::Video => moq_mux::container::Kind::Video,
            TrackKind::Audio => moq_mux::container::Kind::Audio,
        };
        let container =
            moq_mux::catalog::hang::Container::new(container, mux_kind).map_err(|e| e.to_string());
        match (caps, container) {
            (Ok(caps), Ok(container)) => out.push((
                name.clone(),
                Rendition {
                    kind,
                    caps,
                    container,
                },
            )),
            (Err(err), _) | (_, Err(err)) => {
                if skipped.insert(name.clone())
                    && let Some(obj) = element.upgrade()
                {
                    gst::element_warning!(
                        obj,
                        gst::StreamError::CodecNotFound,
                        ("Skipping track '{}' of the broadcast: {}", name, err)
                    );
                }
            }
        }
    }
    out
}

/// How a broadcast stopped being followed.
enum Ended {
    /// Its catalog finished: the publisher ended it.
    Finished,
    /// It went away without finishing (relay restart, publisher crash or
    /// restart): it may come back.
    Lost(String),
}

/// Follows the broadcast for the element's whole run: pads from its
/// catalog, one reader per track. When the broadcast is lost rather than
/// finished, waits for it to come back and goes on on the same pads (a
/// DISCONT, the timeline re-anchored), unless `reconnect` is off.
async fn follow(
    element: &glib::WeakRef<super::MoqSrc>,
    consumer: &moq_net::origin::Consumer,
    target: &Target,
    waits: Waits,
    scope: &log::Scope,
) -> Result<(), gst::ErrorMessage> {
    let mut pads = Pads::default();
    let mut lost_once = false;
    loop {
        if let Some(obj) = element.upgrade() {
            gst::info!(
                CAT,
                obj = obj,
                "waiting for broadcast '{}' to be announced",
                target.broadcast
            );
        }
        let announced = within(
            waits.broadcast(),
            consumer.routed_broadcast(target.broadcast.as_str()),
        )
        .await
        .ok_or_else(|| {
            gst::error_msg!(
                gst::ResourceError::NotFound,
                (
                    "Broadcast '{}' did not {} at {} within {} ms (broadcast-timeout)",
                    target.broadcast,
                    if lost_once { "come back" } else { "appear" },
                    target.display_url(),
                    waits.broadcast_ms
                )
            )
        })?;
        let broadcast = announced.map_err(|err| {
            gst::error_msg!(
                gst::ResourceError::NotFound,
                (
                    "Broadcast '{}' is not available at {}: {}",
                    target.broadcast,
                    target.display_url(),
                    err
                )
            )
        })?;
        if lost_once && let Some(obj) = element.upgrade() {
            gst::info!(CAT, obj = obj, "broadcast '{}' is back", target.broadcast);
            obj.imp().resubscribed();
        }
        match follow_once(element, &broadcast, target, waits, scope, &mut pads).await? {
            Ended::Finished => {
                for (tx, _) in pads.senders.values() {
                    let _ = tx.send(Item::Eos).await;
                }
                return Ok(());
            }
            Ended::Lost(err) => {
                if pads.senders.is_empty() {
                    return Err(catalog_error(target, &err));
                }
                if !target.reconnect {
                    return Err(gst::error_msg!(
                        gst::ResourceError::Read,
                        (
                            "Lost broadcast '{}' at {}: {} (reconnect is off)",
                            target.broadcast,
                            target.display_url(),
                            err
                        )
                    ));
                }
                lost_once = true;
                // Let the origin forget the dead broadcast before asking
                // for it again. One that stays open was not lost: its
                // catalog itself failed (e.g. an update that is not JSON).
                if within(Some(LOSS_SETTLE), broadcast.closed())
                    .await
                    .is_none()
                {
                    return Err(catalog_error(target, &err));
                }
                if let Some(obj) = element.upgrade() {
                    gst::element_warning!(
                        obj,
                        gst::ResourceError::Read,
                        (
                            "Lost broadcast '{}' ({}); waiting for it to come back",
                            target.broadcast,
                            err
                        )
                    );
                }
            }
        }
    }
}

fn catalog_error(target: &Target, err: &dyn std::fmt::Display) -> gst::ErrorMessage {
    gst::error_msg!(
        gst::StreamError::Demux,
        (
            "Cannot read the catalog of broadcast '{}': {}",
            target.broadcast,
            err
        )
    )
}

/// The pads made so far, by track name, with their channel and caps; they
/// outlive one subscription to the broadcast.
#[derive(Default)]
struct Pads {
    senders: HashMap<String, (mpsc::Sender<Item>, gst::Caps)>,
    skipped: HashSet<String>,
    announced: bool,
}

/// One subscription to the broadcast, until it finishes or is lost.
async fn follow_once(
    element: &glib::WeakRef<super::MoqSrc>,
    broadcast: &moq_net::broadcast::Consumer,
    target: &Target,
    waits: Waits,
    scope: &log::Scope,
    pads: &mut Pads,
) -> Result<Ended, gst::ErrorMessage> {
    let catalog_track = match broadcast.track(hang::catalog::Catalog::DEFAULT_NAME) {
        Ok(track) => track,
        Err(err) => return Ok(Ended::Lost(err.to_string())),
    };
    let subscriber = match catalog_track
        .subscribe(hang::catalog::Catalog::default_subscription())
        .await
    {
        Ok(subscriber) => subscriber,
        Err(err) => return Ok(Ended::Lost(err.to_string())),
    };
    let mut catalog = moq_mux::catalog::hang::Consumer::<()>::new(subscriber);
    // The first catalog, within catalog-timeout: a broadcast without one
    // has nothing to play.
    let first = within(waits.catalog(), catalog.next())
        .await
        .ok_or_else(|| {
            gst::error_msg!(
                gst::StreamError::Demux,
                (
                    "No catalog for broadcast '{}' within {} ms (catalog-timeout)",
                    target.broadcast,
                    waits.catalog_ms
                )
            )
        })?;
    let mut first = Some(first);
    // Dropped (and so aborted) when the broadcast is lost: the pads stay.
    let mut readers = tokio::task::JoinSet::new();
    let mut reading = HashSet::new();
    loop {
        tokio::select! {
            next = async {
                match first.take() {
                    Some(first) => first,
                    None => catalog.next().await,
                }
            } => match next {
                Ok(Some(update)) => {
                    for (name, rendition) in renditions(element, &update, &mut pads.skipped) {
                        let tx = if let Some((tx, caps)) = pads.senders.get_mut(&name) {
                            if *caps != rendition.caps {
                                *caps = rendition.caps.clone();
                                let _ = tx.send(Item::Caps(rendition.caps)).await;
                            }
                            tx.clone()
                        } else {
                            let Some(obj) = element.upgrade() else { return Ok(Ended::Finished) };
                            let Some(tx) = obj.imp().add_rendition(rendition.kind, &name, rendition.caps.clone()) else {
                                continue;
                            };
                            pads.senders.insert(name.clone(), (tx.clone(), rendition.caps));
                            tx
                        };
                        if reading.insert(name.clone()) {
                            readers.spawn(scope.wrap(read_track(
                                element.clone(),
                                broadcast.clone(),
                                name,
                                rendition.container,
                                tx,
                            )));
                        }
                    }
                    if !pads.announced && !pads.senders.is_empty() {
                        pads.announced = true;
                        if let Some(obj) = element.upgrade() {
                            obj.no_more_pads();
                        }
                    }
                }
                Ok(None) => break,
                // Before any pad this is a bad catalog (follow reports it);
                // after, the broadcast went away under us.
                Err(err) => return Ok(Ended::Lost(err.to_string())),
            },
            Some(_) = readers.join_next(), if !readers.is_empty() => {}
        }
    }
    // The catalog is finished: each track reads to its own end.
    while readers.join_next().await.is_some() {}
    Ok(Ended::Finished)
}

/// Subscribe to one track and hand its frames, in order, to the pad task.
async fn read_track(
    element: glib::WeakRef<super::MoqSrc>,
    broadcast: moq_net::broadcast::Consumer,
    name: String,
    container: moq_mux::catalog::hang::Container,
    tx: mpsc::Sender<Item>,
) {
    let subscribed = match broadcast.track(&name) {
        Ok(track) => track
            .subscribe(moq_net::track::Subscription::default().with_max_age(MAX_GROUP_AGE))
            .await
            .map_err(|e| e.to_string()),
        Err(err) => Err(err.to_string()),
    };
    let subscriber = match subscribed {
        Ok(subscriber) => subscriber,
        Err(err) => {
            if let Some(obj) = element.upgrade() {
                gst::element_warning!(
                    obj,
                    gst::ResourceError::Read,
                    ("Cannot subscribe to track '{}': {}", name, err)
                );
            }
            return;
        }
    };
    let mut track = moq_mux::container::Consumer::new(subscriber, container);
    let mut discontinuity = track.discontinuity();
    let mut first = true;
    loop {
        match track.read().await {
            Ok(Some(frame)) => {
                let now = track.discontinuity();
                let discont = first || now != discontinuity;
                discontinuity = now;
                first = false;
                let item = Item::Frame {
                    timestamp_us: u64::try_from(frame.timestamp.as_micros()).unwrap_or(u64::MAX),
                    payload: frame.payload,
                    keyframe: frame.keyframe,
                    discont,
                };
                if tx.send(item).await.is_err() {
                    return;
                }
            }
            // The track is over: so is its pad.
            Ok(None) => {
                let _ = tx.send(Item::Eos).await;
                return;
            }
            // Aborted, most likely with its broadcast: the catalog's end
            // decides between waiting for it and EOS.
            Err(err) => {
                if within(Some(LOSS_SETTLE), broadcast.closed())
                    .await
                    .is_some()
                {
                    if let Some(obj) = element.upgrade() {
                        gst::info!(
                            CAT,
                            obj = obj,
                            "track '{}' ended with its broadcast: {}",
                            name,
                            err
                        );
                    }
                    return;
                }
                // The broadcast is fine, this track is not (e.g. a frame that
                // does not parse): skip it, the other tracks play on.
                if let Some(obj) = element.upgrade() {
                    gst::element_warning!(
                        obj,
                        gst::StreamError::Demux,
                        ("Track '{}' failed and is skipped: {}", name, err)
                    );
                }
                let _ = tx.send(Item::Eos).await;
                return;
            }
        }
    }
}

#[glib::object_subclass]
impl ObjectSubclass for MoqSrc {
    const NAME: &'static str = "GstMoqSrc";
    type Type = super::MoqSrc;
    type ParentType = gst::Element;
}

impl ObjectImpl for MoqSrc {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            let mut props = connection::properties();
            props.push(crate::stats::interval_property());
            props.push(
                glib::ParamSpecBoxed::builder::<gst::Structure>("stats")
                    .nick("Statistics")
                    .blurb("Frames, bytes, groups (keyframes) and discontinuities received, resubscriptions and reconnects since the element was made; delay-us: how much later than its timestamp the last frame was pushed, i.e. its delay over the fastest frame so far (more than `latency` makes synchronising sinks drop it); the negotiated version and the RTT")
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
            ]);
            props
        });
        PROPERTIES.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let mut settings = self.settings();
        if connection::set_property(&mut settings.connection, value, pspec) {
            return;
        }
        match pspec.name() {
            "latency" => settings.latency_ms = value.get().unwrap_or(DEFAULT_LATENCY_MS),
            "broadcast-timeout" => {
                settings.waits.broadcast_ms = value.get().unwrap_or(DEFAULT_BROADCAST_TIMEOUT_MS)
            }
            "catalog-timeout" => {
                settings.waits.catalog_ms = value.get().unwrap_or(DEFAULT_CATALOG_TIMEOUT_MS)
            }
            "stats-interval" => settings.stats_interval_ms = value.get().unwrap_or_default(),
            _ => {}
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let settings = self.settings();
        if let Some(value) = connection::property(&settings.connection, pspec) {
            return value;
        }
        match pspec.name() {
            "latency" => settings.latency_ms.to_value(),
            "broadcast-timeout" => settings.waits.broadcast_ms.to_value(),
            "catalog-timeout" => settings.waits.catalog_ms.to_value(),
            "stats-interval" => settings.stats_interval_ms.to_value(),
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

impl ElementImpl for MoqSrc {
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
