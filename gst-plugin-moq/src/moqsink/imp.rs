// SPDX-License-Identifier: MIT OR Apache-2.0

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;

use super::MoqSinkPad;
use super::catalogs;
use super::track::{Configured, Output, Refused, Report, Track, WriteContext};
use crate::catalog::{self, TrackKind};
use crate::connection::{self, Target};
use crate::log;
use crate::runtime::RUNTIME;

/// How long a published group nobody reads stays in memory.
const PUBLISHED_KEEP: Duration = Duration::from_secs(5);

pub static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "moqsink",
        gst::DebugColorFlags::empty(),
        Some("Media over QUIC sink"),
    )
});

/// A group older than this asks upstream for a keyframe.
const DEFAULT_MAX_GROUP_DURATION_MS: u32 = 2000;
/// The broadcast is announced once every pad's rendition is in the catalog, so
/// a subscriber's first catalog lists them all; a pad that stays without caps
/// holds the announcement back this long at most.
const ANNOUNCE_WAIT: Duration = Duration::from_secs(2);
/// How long stopping waits for the relay to take the data still queued.
const DRAIN_TIMEOUT: Duration = Duration::from_millis(1500);
#[derive(Debug, Clone)]
struct Settings {
    connection: connection::Settings,
    stats_interval_ms: u32,
    max_group_duration_ms: u32,
    container: super::Container,
    catalogs: super::Catalogs,
    on_demand: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            connection: connection::Settings::default(),
            stats_interval_ms: crate::stats::DEFAULT_STATS_INTERVAL_MS,
            max_group_duration_ms: DEFAULT_MAX_GROUP_DURATION_MS,
            container: super::Container::default(),
            catalogs: super::Catalogs::default(),
            on_demand: false,
        }
    }
}

/// The live session between READY->PAUSED and PAUSED->READY.
struct Session {
    target: Target,
    /// Keeps the broadcast announced on the origin the connection serves.
    _origin: moq_net::origin::Producer,
    broadcast: moq_net::broadcast::Producer,
    catalog: moq_mux::catalog::Producer,
    /// Carries the catalogs onto the broadcast (see `catalogs`).
    catalogs: catalogs::Publishing,
    connection: moq_tokio::Connection,
    watcher: tokio::task::JoinHandle<()>,
    ticker: Option<tokio::task::JoinHandle<()>>,
    announce_timer: tokio::task::JoinHandle<()>,
    /// Set before the session is torn down on purpose, so the watcher does not
    /// report the end of the connection as a failure.
    stopping: Arc<AtomicBool>,
    catalog_finished: bool,
    eos_posted: bool,
    /// Every pad had EOS while the relay was not connected: EOS is held
    /// until it is, so "EOS" keeps meaning "handed to the relay".
    eos_wait: Option<tokio::task::JoinHandle<()>>,
}

#[derive(Default)]
pub struct MoqSink {
    settings: Mutex<Settings>,
    status: Arc<connection::StatusCell>,
    session: Mutex<Option<Session>>,
    /// Pads in creation order; the index names their tracks.
    next_index: Mutex<u32>,
    /// Where the MoQ libraries' lines logged for this element go.
    log: OnceLock<log::Scope>,
    /// The broadcast of the current session is announced (see `maybe_announce`).
    announced: AtomicBool,
    /// How far behind its running time the last frame was published, in µs:
    /// the latency upstream of moqsink (capture, encoder, queues).
    delay_us: AtomicI64,
}

impl MoqSink {
    fn settings(&self) -> MutexGuard<'_, Settings> {
        self.settings
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn session(&self) -> MutexGuard<'_, Option<Session>> {
        self.session
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn log(&self) -> log::Scope {
        self.log
            .get_or_init(|| log::Scope::new(*CAT, &*self.obj()))
            .clone()
    }

    fn sink_pads(&self) -> Vec<MoqSinkPad> {
        self.obj()
            .sink_pads()
            .into_iter()
            .filter_map(|p| p.downcast::<MoqSinkPad>().ok())
            .collect()
    }

    fn start(&self) -> Result<(), gst::ErrorMessage> {
        let (target, stats_interval_ms, catalogs) = {
            let settings = self.settings();
            (
                settings.connection.validate()?,
                settings.stats_interval_ms,
                settings.catalogs,
            )
        };
        let _guard = RUNTIME.enter();
        // Groups the relay has taken are not needed here for long.
        let origin = connection::spawn_origin(PUBLISHED_KEEP);
        let (broadcast, catalog, catalogs) =
            create_broadcast(&origin, &target.broadcast, catalogs)?;
        let connection = connection::connect(&target, connection::Role::Publish(origin.consume()))?;
        let stopping = Arc::new(AtomicBool::new(false));
        let watcher = self.spawn_watcher(&connection, &target, stopping.clone());
        self.announced.store(false, Ordering::SeqCst);
        let announce_timer = self.spawn_announce_timer();
        gst::info!(
            CAT,
            imp = self,
            "publishing broadcast '{}' to {}",
            target.broadcast,
            target.display_url()
        );
        *self.session() = Some(Session {
            target,
            _origin: origin,
            broadcast,
            catalog,
            catalogs,
            connection,
            watcher,
            announce_timer,
            ticker: crate::stats::spawn_ticker(
                self.obj().upcast_ref::<gst::Element>().downgrade(),
                stats_interval_ms,
            ),
            stopping,
            catalog_finished: false,
            eos_posted: false,
            eos_wait: None,
        });
        Ok(())
    }

    /// Announces the broadcast after `ANNOUNCE_WAIT` even if some pad has
    /// not got its caps by then (see `maybe_announce`).
    fn spawn_announce_timer(&self) -> tokio::task::JoinHandle<()> {
        let element = self.obj().downgrade();
        RUNTIME.spawn(async move {
            tokio::time::sleep(ANNOUNCE_WAIT).await;
            if let Some(obj) = element.upgrade() {
                obj.imp().maybe_announce(true);
            }
        })
    }

    /// Follows the connection until it ends for good and then, unless the
    /// element is stopping, says why on the bus.
    fn spawn_watcher(
        &self,
        connection: &moq_tokio::Connection,
        target: &Target,
        stopping: Arc<AtomicBool>,
    ) -> tokio::task::JoinHandle<()> {
        let element = self.obj().downgrade();
        let monitored = connection::monitor(
            connection.clone(),
            self.status.clone(),
            element.clone(),
            *CAT,
            target.clone(),
        );
        let target = target.clone();
        RUNTIME.spawn(self.log().wrap(async move {
            let ended = monitored.await;
            if stopping.load(Ordering::SeqCst) {
                return;
            }
            let Some(obj) = element.upgrade() else {
                return;
            };
            let held = obj
                .imp()
                .session()
                .as_ref()
                .is_some_and(|s| s.eos_wait.is_some());
            obj.post_error_message(match ended {
                Some(err) if held => gst::error_msg!(
                    gst::ResourceError::OpenWrite,
                    (
                        "{}; the stream ended (EOS) while the relay was unreachable, and what \
                         was not sent by then is lost",
                        connection::failure_text(&target, &err)
                    )
                ),
                Some(err) => connection::failure_message(&target, &err, true),
                None => connection::lost_message(&target, true),
            });
        }))
    }

    fn stop(&self) {
        // Stopped without EOS is not an end of stream: the tracks and the
        // catalog are dropped unfinished, so subscribers see the broadcast
        // lost (and wait for it to come back) rather than ended. Pads that
        // had EOS were finished then.
        let mut retired = Vec::new();
        for pad in self.sink_pads() {
            retired.append(&mut pad.imp().track().stop());
        }
        let Some(mut session) = self.session().take() else {
            return;
        };
        let target = session.target.clone();
        session.stopping.store(true, Ordering::SeqCst);
        session.watcher.abort();
        session.announce_timer.abort();
        if let Some(wait) = session.eos_wait.take() {
            wait.abort();
        }
        if let Some(ticker) = session.ticker.take() {
            ticker.abort();
        }
        self.status.set(connection::Status::Idle);
        // Deliver what the tracks still hold before the broadcast goes away: a
        // subscriber reading behind the live edge (or the relay forwarding to
        // one) gets the end of the stream. Bounded: close() gives up after
        // about a second, and this waits a little longer at most.
        let Session {
            connection,
            broadcast,
            catalog,
            catalogs,
            _origin: origin,
            ..
        } = session;
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        RUNTIME.spawn(async move {
            let _ = tokio::time::timeout(DRAIN_TIMEOUT, connection.close()).await;
            broadcast.close();
            drop((retired, catalog, catalogs, origin));
            let _ = done_tx.send(());
        });
        if done_rx
            .recv_timeout(DRAIN_TIMEOUT + Duration::from_millis(200))
            .is_err()
        {
            gst::warning!(
                CAT,
                imp = self,
                "the relay did not take the last data in time"
            );
        }
        gst::info!(CAT, imp = self, "stopped publishing '{}'", target.broadcast);
    }

    /// Announce the broadcast once every pad publishes a rendition that the
    /// catalog lists (or, with `force`, whatever it lists by then), so the
    /// first catalog a subscriber reads is complete and its `no-more-pads`
    /// comes after all pads. Lock order: session, then one pad at a time.
    fn maybe_announce(&self, force: bool) {
        if self.announced.load(Ordering::SeqCst) {
            return;
        }
        let session = self.session();
        let Some(session) = session.as_ref() else {
            return;
        };
        if !force {
            let pads = self.sink_pads();
            if pads.is_empty() || pads.iter().any(|p| !p.imp().track().is_publishing()) {
                return;
            }
            let catalog = session.catalog.snapshot();
            let listed = catalog.video.renditions.len()
                + catalog.audio.renditions.len()
                + catalog.text.renditions.len()
                + catalog.json.tracks.len()
                + catalog.binary.tracks.len();
            if listed < pads.len() {
                return;
            }
        }
        match session
            .broadcast
            .announce(moq_net::origin::Route::default())
        {
            Ok(()) => {
                self.announced.store(true, Ordering::SeqCst);
                gst::info!(
                    CAT,
                    imp = self,
                    "announced broadcast '{}'",
                    session.target.broadcast
                );
            }
            Err(err) => {
                gst::warning!(
                    CAT,
                    imp = self,
                    "cannot announce '{}': {err}",
                    session.target.broadcast
                );
            }
        }
    }

    fn handle_caps(&self, pad: &MoqSinkPad, caps: &gst::CapsRef) -> bool {
        let refuse = |why: &dyn std::fmt::Display| {
            gst::element_imp_error!(
                self,
                gst::CoreError::Negotiation,
                ("Caps on {} cannot be published: {}", pad.name(), why),
                ["caps: {}", caps]
            );
            false
        };
        let format = match catalog::sink_format(caps) {
            Ok(format) => format,
            Err(err) => return refuse(&err),
        };
        let mut hints = catalog::video_hints(caps);
        let bitrate = pad.imp().settings().bitrate;
        hints.bitrate = (bitrate > 0).then_some(bitrate);
        let Some((broadcast, catalog)) = self
            .session()
            .as_ref()
            .map(|s| (s.broadcast.clone(), s.catalog.clone()))
        else {
            return refuse(&"the element has not started");
        };
        let output = Output {
            broadcast: &broadcast,
            catalog: &catalog,
            container: self.settings().container.into(),
        };
        let track_name = pad.imp().settings().track_name;
        let configured = pad
            .imp()
            .track()
            .configure(format, &hints, track_name, &output);
        match configured {
            Ok(Configured::InPlace) => {
                gst::debug!(CAT, obj = pad, "caps changed in place: {caps}");
                true
            }
            Ok(Configured::NewTrack(name)) => {
                gst::info!(CAT, obj = pad, "publishing track '{name}' for {caps}");
                if self.settings().on_demand {
                    self.watch_demand(pad, name);
                }
                true
            }
            Err(why) => refuse(&why),
        }
    }

    fn sink_event(&self, pad: &MoqSinkPad, event: gst::Event) -> bool {
        use gst::EventView;
        gst::log!(CAT, obj = pad, "event {event:?}");
        match event.view() {
            EventView::Caps(c) => {
                let accepted = self.handle_caps(pad, c.caps());
                if accepted {
                    self.maybe_announce(false);
                }
                accepted
            }
            EventView::Segment(s) => match s.segment().downcast_ref::<gst::ClockTime>() {
                Some(segment) => {
                    pad.imp().track().set_segment(segment.clone());
                    true
                }
                None => {
                    gst::element_imp_error!(
                        self,
                        gst::StreamError::Format,
                        (
                            "{} needs a TIME segment, got {:?}",
                            pad.name(),
                            s.segment().format()
                        )
                    );
                    false
                }
            },
            EventView::Eos(_) => {
                let reports = pad.imp().track().finish();
                self.post_reports(pad, reports);
                self.check_all_eos();
                true
            }
            EventView::FlushStop(_) => {
                pad.imp().track().flush_stop();
                true
            }
            EventView::Tag(tag) => {
                if let Some(lang) = tag.tag().get::<gst::tags::LanguageCode>()
                    && let Err(err) = pad.imp().track().set_language(lang.get())
                {
                    gst::warning!(CAT, obj = pad, "language {}: {err}", lang.get());
                }
                true
            }
            // Sink pads own the serialized events: nothing goes further.
            _ => true,
        }
    }

    /// Once every pad has seen EOS: finish the catalog, then tell the
    /// application with an EOS message (we are the sink).
    fn check_all_eos(&self) {
        let pads = self.sink_pads();
        if pads.is_empty() || !pads.iter().all(|p| p.imp().track().eos()) {
            return;
        }
        let mut guard = self.session();
        let Some(session) = guard.as_mut() else {
            return;
        };
        if session.eos_posted {
            return;
        }
        if !session.catalog_finished {
            if let Err(err) = session.catalog.finish() {
                gst::debug!(CAT, imp = self, "finishing the catalog: {err}");
            }
            session.catalog_finished = true;
        }
        if self.status.get() != connection::Status::Connected {
            // Nothing reaches the relay before the connection does: posting
            // EOS now would let the application stop and lose the stream
            // without a word. Hold it; if the connection gives up, the
            // watcher posts the ERROR instead.
            if session.eos_wait.is_some() {
                return;
            }
            let (status, element) = (self.status.clone(), self.obj().downgrade());
            session.eos_wait = Some(RUNTIME.spawn(async move {
                status.wait_connected().await;
                if let Some(obj) = element.upgrade() {
                    obj.imp().check_all_eos();
                }
            }));
            let url = session.target.display_url();
            drop(guard);
            gst::element_imp_warning!(
                self,
                gst::ResourceError::OpenWrite,
                (
                    "End of stream before MoQ relay {} was reached: EOS waits for the \
                     connection (connect-timeout)",
                    url
                )
            );
            return;
        }
        session.eos_posted = true;
        gst::info!(CAT, imp = self, "all tracks finished, posting EOS");
        let obj = self.obj();
        let msg = gst::message::Eos::builder().src(&*obj).build();
        drop(guard);
        let _ = obj.post_message(msg);
    }

    /// Playing: running time zero (every track's timestamp zero) is now a
    /// moment on the wall clock, which the catalog's `clock` advertises.
    fn anchor_clock(&self) {
        let Some(running) = self.obj().current_running_time() else {
            return;
        };
        let Some(zero) = catalogs::wall_of_zero(std::time::SystemTime::now(), running) else {
            return;
        };
        if let Some(session) = self.session().as_mut()
            && let Err(err) = catalogs::anchor(&mut session.catalog, zero)
        {
            gst::warning!(CAT, imp = self, "no wall clock in the catalog: {err}");
        }
    }

    fn sink_chain(
        &self,
        pad: &MoqSinkPad,
        buffer: gst::Buffer,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        let (max_group_ms, on_demand) = {
            let settings = self.settings();
            (settings.max_group_duration_ms, settings.on_demand)
        };
        let ctx = WriteContext {
            // 0 turns the periodic keyframe request off.
            max_group: (max_group_ms > 0)
                .then(|| gst::ClockTime::from_mseconds(max_group_ms.into())),
            // Read before the pad's lock is taken (it takes the object lock).
            now: self.obj().current_running_time(),
            on_demand,
        };
        let written = pad.imp().track().write(buffer, ctx);
        if let Some(delay) = written.delay_us {
            self.delay_us.store(delay, Ordering::Relaxed);
        }
        // Renditions whose codec only the first keyframe tells (VP9, AV1,
        // H.265) enter the catalog here.
        if !self.announced.load(Ordering::Relaxed) {
            self.maybe_announce(false);
        }
        // Messages and upstream events go out with no lock held.
        self.post_reports(pad, written.reports);
        if written.request_keyframe {
            self.request_keyframes(pad);
        }
        match written.result {
            Ok(()) => Ok(gst::FlowSuccess::Ok),
            Err(Refused::Eos) => Err(gst::FlowError::Eos),
            Err(Refused::NotNegotiated) => Err(gst::FlowError::NotNegotiated),
            Err(Refused::Error) => Err(gst::FlowError::Error),
        }
    }

    /// Asks upstream of `pad` for a keyframe, and of every other video pad
    /// too: the video tracks of a broadcast are renditions of one source,
    /// and players switch between them at group starts, so a group that
    /// starts in one rendition starts in all (with encoders fed the same
    /// frames, as a ladder's are).
    fn request_keyframes(&self, pad: &MoqSinkPad) {
        gst::debug!(CAT, obj = pad, "requesting a keyframe upstream");
        let event = gst_video::UpstreamForceKeyUnitEvent::builder()
            .all_headers(true)
            .build();
        let video = pad.imp().track().kind() == TrackKind::Video;
        for other in self.obj().sink_pads() {
            let aligned = video
                && other != *pad.upcast_ref::<gst::Pad>()
                && TrackKind::of_pad_name(&other.name()) == TrackKind::Video;
            if aligned {
                other.push_event(event.clone());
            }
        }
        pad.push_event(event);
    }

    /// `on-demand`: follows whether anyone subscribes to the track of `pad`,
    /// and tells the application with a `moq-demand` element message each
    /// time it changes (it may pause the encoder meanwhile). When a
    /// subscriber comes, a keyframe is asked for at once, so its first frame
    /// does not wait for a buffer or the next group.
    fn watch_demand(&self, pad: &MoqSinkPad, track: String) {
        let Some(demand) = pad.imp().track().demand() else {
            return;
        };
        let (element, weak_pad) = (self.obj().downgrade(), pad.downgrade());
        let watch = RUNTIME.spawn(async move {
            let mut subscribed = demand.is_used();
            loop {
                let (Some(element), Some(pad)) = (element.upgrade(), weak_pad.upgrade()) else {
                    return;
                };
                element.imp().demand_changed(&pad, &track, subscribed);
                drop((element, pad));
                let changed = if subscribed {
                    demand.unused().await
                } else {
                    demand.used().await
                };
                // The track ended.
                if changed.is_err() {
                    return;
                }
                subscribed = !subscribed;
            }
        });
        pad.imp().track().set_demand_watch(watch);
    }

    fn demand_changed(&self, pad: &MoqSinkPad, track: &str, subscribed: bool) {
        gst::info!(
            CAT,
            obj = pad,
            "track '{track}': {}",
            if subscribed {
                "subscribed"
            } else {
                "no subscriber"
            }
        );
        let structure = gst::Structure::builder("moq-demand")
            .field("pad", pad.name())
            .field("track", track)
            .field("subscribed", subscribed)
            .build();
        let obj = self.obj();
        let _ = obj.post_message(gst::message::Element::builder(structure).src(&*obj).build());
        if subscribed {
            self.request_keyframes(pad);
        }
    }

    /// A request pad whose functions lead to this element.
    fn make_pad(templ: &gst::PadTemplate, name: &str) -> MoqSinkPad {
        gst::PadBuilder::<MoqSinkPad>::from_template(templ)
            .name(name)
            .chain_function(|pad, parent, buffer| {
                MoqSink::catch_panic_pad_function(
                    parent,
                    || Err(gst::FlowError::Error),
                    |sink| {
                        let log = sink.log.get().cloned();
                        match log {
                            Some(log) => log.enter(|| sink.sink_chain(pad, buffer)),
                            None => sink.sink_chain(pad, buffer),
                        }
                    },
                )
            })
            .event_function(|pad, parent, event| {
                MoqSink::catch_panic_pad_function(
                    parent,
                    || false,
                    |sink| sink.log().enter(|| sink.sink_event(pad, event)),
                )
            })
            .query_function(|pad, parent, query| {
                MoqSink::catch_panic_pad_function(
                    parent,
                    || false,
                    |sink| {
                        if let gst::QueryViewMut::AcceptCaps(q) = query.view_mut() {
                            q.set_result(sink.accept_caps(pad, q.caps()));
                            return true;
                        }
                        gst::Pad::query_default(pad, Some(&*sink.obj()), query)
                    },
                )
            })
            .flags(gst::PadFlags::ACCEPT_TEMPLATE)
            .build()
    }

    /// Tells upstream the truth about caps. Refusing makes upstream fail
    /// with a bare not-negotiated, so the reason goes on the bus first as a
    /// WARNING (once per pad and caps).
    fn accept_caps(&self, pad: &MoqSinkPad, caps: &gst::CapsRef) -> bool {
        let Err(why) = pad.imp().track().accepts(caps) else {
            return true;
        };
        gst::debug!(CAT, obj = pad, "refusing {caps}: {why}");
        if caps.is_fixed() && pad.imp().first_refusal(caps) {
            gst::element_imp_warning!(
                self,
                gst::CoreError::Negotiation,
                ("Caps on {} cannot be published: {}", pad.name(), why),
                ["caps: {}", caps]
            );
        }
        false
    }

    fn post_reports(&self, pad: &MoqSinkPad, reports: Vec<Report>) {
        for report in reports {
            match report {
                Report::NoParameterSets(names) => gst::element_imp_warning!(
                    self,
                    gst::StreamError::Format,
                    (
                        "Keyframe on {} without {}: video is dropped until a keyframe is complete",
                        pad.name(),
                        names
                    ),
                    [
                        "the stream never carried them in band: h264parse/h265parse config-interval=-1 adds parameter sets to every keyframe if they are known upstream; an AV1 encoder must send a sequence header"
                    ]
                ),
                Report::Failed { track, error } => gst::element_imp_error!(
                    self,
                    gst::StreamError::Format,
                    ("Cannot publish a frame on track '{}': {}", track, error)
                ),
                Report::BeforeCaps => gst::element_imp_error!(
                    self,
                    gst::CoreError::Negotiation,
                    ("Buffer on {} before caps", pad.name())
                ),
                Report::Unmappable => gst::element_imp_error!(
                    self,
                    gst::ResourceError::Read,
                    ("Cannot map a buffer on {}", pad.name())
                ),
            }
        }
    }

    fn stats(&self) -> gst::Structure {
        let mut s = gst::Structure::builder("application/x-moqsink-stats");
        let (mut frames, mut bytes, mut groups, mut dropped) = (0u64, 0u64, 0u64, 0u64);
        let (mut unwatched, mut subscribed) = (0u64, false);
        for pad in self.sink_pads() {
            let track = pad.imp().track();
            let counters = track.counters();
            frames += counters.frames;
            bytes += counters.bytes;
            groups += counters.groups;
            dropped += counters.dropped;
            unwatched += counters.unwatched;
            subscribed |= track.is_used();
        }
        let connected = self.status.get() == connection::Status::Connected;
        s = s
            .field("connected", connected)
            .field("frames", frames)
            .field("bytes", bytes)
            .field("groups", groups)
            .field("dropped", dropped)
            .field("subscribed", subscribed)
            .field("unwatched", unwatched)
            .field("delay-us", self.delay_us.load(Ordering::Relaxed))
            .field("reconnects", self.status.reconnects())
            .field_if_some("version", self.status.version())
            .field_if_some("rtt-us", self.status.rtt().map(|d| d.as_micros() as u64))
            .field_if_some("bytes-sent", self.status.bytes_sent());
        s.build()
    }
}

/// What moqsink publishes besides the media: its catalogs, their framing,
/// and whether it publishes while no one watches.
fn publishing_properties() -> Vec<glib::ParamSpec> {
    vec![
        glib::ParamSpecEnum::builder::<super::Container>("container")
            .nick("Container")
            .blurb(
                "How the hang catalog's tracks package frames: legacy (hang's own, \
                         every hang reader) or loc (the MoQ project's LOC framing)",
            )
            .mutable_ready()
            .build(),
        glib::ParamSpecEnum::builder::<super::Catalogs>("catalogs")
            .nick("Catalogs")
            .blurb(
                "Which catalogs to publish: both, hang (catalog.json, for the MoQ \
                         project's players) or msf (the IETF catalog with LOC tracks)",
            )
            .mutable_ready()
            .build(),
        glib::ParamSpecBoolean::builder("on-demand")
            .nick("On demand")
            .blurb(
                "Publish a track only while someone subscribes to it: otherwise drop its \
                         buffers unread, and ask upstream for a keyframe when a subscriber comes",
            )
            .default_value(false)
            .mutable_ready()
            .build(),
    ]
}

#[glib::object_subclass]
impl ObjectSubclass for MoqSink {
    const NAME: &'static str = "GstMoqSink";
    type Type = super::MoqSink;
    type ParentType = gst::Element;
    type Interfaces = (gst::ChildProxy, gst::URIHandler);
}

impl ObjectImpl for MoqSink {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            let mut props = connection::properties();
            props.push(crate::stats::interval_property());
            props.push(
                glib::ParamSpecUInt::builder("max-group-duration")
                    .nick("Maximum group duration")
                    .blurb(
                        "Milliseconds after which a video group asks upstream for a keyframe \
                         (GstForceKeyUnit), so late joiners wait at most this long; 0 never asks",
                    )
                    .default_value(DEFAULT_MAX_GROUP_DURATION_MS)
                    .mutable_playing()
                    .build(),
            );
            props.extend(publishing_properties());
            props.push(
                glib::ParamSpecBoxed::builder::<gst::Structure>("stats")
                    .nick("Statistics")
                    .blurb(
                        "What was published since the element was made (frames, bytes, groups, \
                         drops, reconnects), whether anyone subscribes, the current delay-us, the \
                         version and the RTT; see the README",
                    )
                    .read_only()
                    .build(),
            );
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
            "max-group-duration" => {
                settings.max_group_duration_ms =
                    value.get().unwrap_or(DEFAULT_MAX_GROUP_DURATION_MS);
            }
            "stats-interval" => settings.stats_interval_ms = value.get().unwrap_or_default(),
            "container" => settings.container = value.get().unwrap_or_default(),
            "catalogs" => settings.catalogs = value.get().unwrap_or_default(),
            "on-demand" => settings.on_demand = value.get().unwrap_or_default(),
            _ => {}
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        if let Some(value) = connection::property(&self.settings().connection, pspec) {
            return value;
        }
        match pspec.name() {
            "max-group-duration" => self.settings().max_group_duration_ms.to_value(),
            "stats" => self.stats().to_value(),
            "stats-interval" => self.settings().stats_interval_ms.to_value(),
            "container" => self.settings().container.to_value(),
            "catalogs" => self.settings().catalogs.to_value(),
            "on-demand" => self.settings().on_demand.to_value(),
            "status" => self.status.get().to_value(),
            _ => None::<String>.to_value(),
        }
    }

    fn constructed(&self) {
        self.parent_constructed();
        self.obj().set_element_flags(gst::ElementFlags::SINK);
    }
}

impl GstObjectImpl for MoqSink {}

impl URIHandlerImpl for MoqSink {
    const URI_TYPE: gst::URIType = gst::URIType::Sink;

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

impl ElementImpl for MoqSink {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static METADATA: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "MoQ Sink",
                "Sink/Network/Audio/Video",
                "Publishes encoded audio and video as a Media over QUIC broadcast",
                "gst-plugin-moq developers",
            )
        });
        Some(&*METADATA)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static TEMPLATES: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
            catalog::pad_templates(
                gst::PadDirection::Sink,
                gst::PadPresence::Request,
                MoqSinkPad::static_type(),
            )
        });
        TEMPLATES.as_ref()
    }

    fn request_new_pad(
        &self,
        templ: &gst::PadTemplate,
        name: Option<&str>,
        _caps: Option<&gst::Caps>,
    ) -> Option<gst::Pad> {
        let prefix = templ.name_template().trim_end_matches("%u").to_string();
        let obj = self.obj();
        let name = match name {
            Some(name) => {
                if obj.static_pad(name).is_some() {
                    gst::warning!(CAT, imp = self, "pad {name} already exists");
                    return None;
                }
                name.to_string()
            }
            None => (0..)
                .map(|i| format!("{prefix}{i}"))
                .find(|n| obj.static_pad(n).is_none())?,
        };
        let pad = Self::make_pad(templ, &name);
        {
            let mut next = self
                .next_index
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            *pad.imp().track() = Track::new(*next, TrackKind::of_pad_name(&prefix));
            *next += 1;
        }
        if pad
            .set_active(obj.current_state() > gst::State::Ready)
            .is_err()
        {
            gst::warning!(CAT, imp = self, "cannot activate {name}");
        }
        obj.add_pad(&pad).ok()?;
        obj.child_added(&pad, &pad.name());
        Some(pad.upcast())
    }

    fn release_pad(&self, pad: &gst::Pad) {
        if let Some(sink_pad) = pad.downcast_ref::<MoqSinkPad>() {
            let reports = sink_pad.imp().track().finish();
            self.post_reports(sink_pad, reports);
        }
        let obj = self.obj();
        let _ = pad.set_active(false);
        let _ = obj.remove_pad(pad);
        obj.child_removed(pad, &pad.name());
        // A pad leaving may leave only finished pads behind.
        self.check_all_eos();
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
        let result = self.parent_change_state(transition);
        if transition == gst::StateChange::PausedToReady {
            self.stop();
        }
        if transition == gst::StateChange::PausedToPlaying && result.is_ok() {
            self.anchor_clock();
        }
        result
    }
}

impl ChildProxyImpl for MoqSink {
    fn child_by_index(&self, index: u32) -> Option<glib::Object> {
        self.obj()
            .sink_pads()
            .into_iter()
            .nth(index as usize)
            .map(Cast::upcast)
    }

    fn children_count(&self) -> u32 {
        u32::from(self.obj().num_sink_pads())
    }

    fn child_by_name(&self, name: &str) -> Option<glib::Object> {
        self.obj().static_pad(name).map(Cast::upcast)
    }
}

/// The broadcast with its catalog tracks, created unannounced (see
/// `maybe_announce`).
fn create_broadcast(
    origin: &moq_net::origin::Producer,
    name: &str,
    which: super::Catalogs,
) -> Result<
    (
        moq_net::broadcast::Producer,
        moq_mux::catalog::Producer,
        catalogs::Publishing,
    ),
    gst::ErrorMessage,
> {
    let broadcast = origin.create_broadcast(name).map_err(|err| {
        gst::error_msg!(
            gst::ResourceError::Settings,
            ("Cannot publish broadcast '{}': {}", name, err)
        )
    })?;
    let (catalog, publishing) = catalogs::publish(&broadcast, which).map_err(|err| {
        gst::error_msg!(
            gst::ResourceError::Failed,
            ("Cannot create the catalog tracks: {}", err)
        )
    })?;
    Ok((broadcast, catalog, publishing))
}
