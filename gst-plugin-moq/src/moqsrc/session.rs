// SPDX-License-Identifier: MIT OR Apache-2.0

//! moqsrc's side of the network, on the MoQ runtime: connect, wait for the
//! broadcast, follow its catalog (a pad per rendition, through the element)
//! and run one reader per track, which hands frames to its pad's streaming
//! thread over a channel; a lost broadcast is waited for and followed again
//! on the same pads. The element (imp.rs) is the GObject side: properties,
//! pads, pushing, state changes.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use tokio::sync::{mpsc, watch};

use super::imp::CAT;
use super::rejoin::Rejoin;
use crate::catalog::{self, TrackKind};
use crate::connection::{self, Target};
use crate::log;

/// How long a failed broadcast waits for the connection to say it failed too.
const CONNECTION_VERDICT: Duration = Duration::from_millis(500);
/// How far a group may fall behind the newest before the reader skips it.
const MAX_GROUP_AGE: Duration = Duration::from_millis(500);
/// How long a received group nobody reads stays in memory.
const RECEIVED_KEEP: Duration = Duration::from_secs(2);
/// How long a broadcast whose catalog failed may take to close before the
/// failure counts as the catalog's own.
const LOSS_SETTLE: Duration = Duration::from_secs(2);

/// What a track reader hands its pad's streaming thread.
pub(super) enum Item {
    Frame(Frame),
    Caps(gst::Caps),
    Eos,
}

/// One received frame.
pub(super) struct Frame {
    pub(super) payload: Bytes,
    pub(super) timestamp_us: u64,
    pub(super) keyframe: bool,
    pub(super) discont: bool,
    /// The first frame of a rejoin: the track starts over from it.
    pub(super) restart: bool,
}

/// How long moqsrc waits for what it cannot do without; 0 is forever.
#[derive(Clone, Copy, Debug)]
pub(super) struct Waits {
    pub(super) broadcast_ms: u32,
    pub(super) catalog_ms: u32,
}

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

/// Runs `session` as a task of its own and turns a panic in it into an
/// ERROR. The MoQ libraries parse what the network sends on this task, and
/// some of them panic on hostile input (hang 0.21 on a non-ASCII H.264 codec
/// string, found by fuzzing): without this the session would just vanish
/// and moqsrc would wait forever. Aborting this future aborts the session.
pub(super) async fn contain_panics(
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
            .map(std::string::ToString::to_string)
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
pub(super) async fn run_session(
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
    wire: Wire,
}

/// How a track's frames are packed: its reader is made from it once per
/// subscription.
#[derive(Clone)]
struct Wire {
    container: hang::catalog::Container,
    kind: moq_mux::container::Kind,
}

impl Wire {
    fn reader(&self) -> Result<moq_mux::catalog::hang::Container, String> {
        moq_mux::catalog::hang::Container::new(&self.container, self.kind)
            .map_err(|e| e.to_string())
    }
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
        let wire = Wire {
            container: container.clone(),
            kind: mux_kind,
        };
        match (caps, wire.reader()) {
            (Ok(caps), Ok(_)) => out.push((name.clone(), Rendition { kind, caps, wire })),
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
        let broadcast = announced(consumer, target, waits, lost_once).await?;
        if lost_once && let Some(obj) = element.upgrade() {
            gst::info!(CAT, obj = obj, "broadcast '{}' is back", target.broadcast);
            obj.imp().resubscribed();
        }
        match follow_once(element, &broadcast, target, waits, scope, &mut pads).await? {
            Ended::Finished => {
                for link in pads.senders.values() {
                    let _ = link.tx.send(Item::Eos).await;
                }
                return Ok(());
            }
            Ended::Lost(err) => {
                survive_loss(element, target, &pads, &broadcast, &err).await?;
                lost_once = true;
            }
        }
    }
}

/// Whether following goes on after the broadcast was lost: an error when
/// nothing was ever played, `reconnect` is off, or the broadcast did not
/// really go away; otherwise a WARNING and waiting for it to come back.
async fn survive_loss(
    element: &glib::WeakRef<super::MoqSrc>,
    target: &Target,
    pads: &Pads,
    broadcast: &moq_net::broadcast::Consumer,
    err: &str,
) -> Result<(), gst::ErrorMessage> {
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
    // Let the origin forget the dead broadcast before asking for it again.
    // One that stays open was not lost: its catalog itself failed (e.g. an
    // update that is not JSON).
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
    Ok(())
}

/// The broadcast once the relay announces it, within `broadcast-timeout`.
async fn announced(
    consumer: &moq_net::origin::Consumer,
    target: &Target,
    waits: Waits,
    lost_once: bool,
) -> Result<moq_net::broadcast::Consumer, gst::ErrorMessage> {
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
    announced.map_err(|err| {
        gst::error_msg!(
            gst::ResourceError::NotFound,
            (
                "Broadcast '{}' is not available at {}: {}",
                target.broadcast,
                target.display_url(),
                err
            )
        )
    })
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
    senders: HashMap<String, PadLink>,
    skipped: HashSet<String>,
    announced: bool,
}

/// A pad's link to the readers of its track, for the pad's whole life.
struct PadLink {
    tx: mpsc::Sender<Item>,
    /// The caps the catalog gives the track: set here without waiting (a
    /// full channel to one pad must not hold up the catalog for all), and
    /// handed to the pad by its reader, in order with the frames.
    caps: watch::Sender<gst::Caps>,
    rejoin: Arc<Rejoin>,
}

impl PadLink {
    fn new(tx: mpsc::Sender<Item>, caps: gst::Caps, rejoin: Arc<Rejoin>) -> Self {
        Self {
            tx,
            caps: watch::Sender::new(caps),
            rejoin,
        }
    }

    /// A new reader's end. It hands the pad the current caps first, in case
    /// a change reached the last reader too late to be passed on (the pad
    /// ignores caps it already has).
    fn reader_end(&self) -> PadEnd {
        let mut caps = self.caps.subscribe();
        caps.mark_changed();
        PadEnd {
            tx: self.tx.clone(),
            caps,
            rejoin: self.rejoin.clone(),
        }
    }
}

/// A track reader's end of its pad's link.
struct PadEnd {
    tx: mpsc::Sender<Item>,
    caps: watch::Receiver<gst::Caps>,
    rejoin: Arc<Rejoin>,
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
    let mut catalog = match subscribe_catalog(broadcast).await {
        Ok(catalog) => catalog,
        Err(err) => return Ok(Ended::Lost(err)),
    };
    let first = first_catalog(&mut catalog, target, waits).await?;
    let mut first = Some(first);
    // Dropped (and so aborted) when the broadcast is lost: the pads stay.
    let mut readers = Readers {
        element,
        broadcast,
        scope,
        pads,
        tasks: tokio::task::JoinSet::new(),
        reading: HashSet::new(),
    };
    loop {
        tokio::select! {
            next = async {
                match first.take() {
                    Some(first) => first,
                    None => catalog.next().await,
                }
            } => match next {
                Ok(Some(update)) => {
                    if !readers.apply(&update) {
                        return Ok(Ended::Finished);
                    }
                }
                Ok(None) => break,
                // Before any pad this is a bad catalog (follow reports it);
                // after, the broadcast went away under us.
                Err(err) => return Ok(Ended::Lost(err.to_string())),
            },
            Some(_) = readers.tasks.join_next(), if !readers.tasks.is_empty() => {}
        }
    }
    // The catalog is finished: each track reads to its own end.
    while readers.tasks.join_next().await.is_some() {}
    Ok(Ended::Finished)
}

/// What a catalog consumer yields: an update, its end, or why it failed.
type CatalogNext = moq_mux::Result<Option<moq_mux::catalog::hang::Catalog>>;

/// The first catalog, within catalog-timeout: a broadcast without one has
/// nothing to play.
async fn first_catalog(
    catalog: &mut moq_mux::catalog::hang::Consumer<()>,
    target: &Target,
    waits: Waits,
) -> Result<CatalogNext, gst::ErrorMessage> {
    within(waits.catalog(), catalog.next())
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
        })
}

async fn subscribe_catalog(
    broadcast: &moq_net::broadcast::Consumer,
) -> Result<moq_mux::catalog::hang::Consumer<()>, String> {
    let track = broadcast
        .track(hang::catalog::Catalog::DEFAULT_NAME)
        .map_err(|e| e.to_string())?;
    let subscriber = track
        .subscribe(hang::catalog::Catalog::default_subscription())
        .await
        .map_err(|e| e.to_string())?;
    Ok(moq_mux::catalog::hang::Consumer::<()>::new(subscriber))
}

/// The track readers of one subscription to the broadcast, and the pads
/// (kept over subscriptions) they feed.
struct Readers<'a> {
    element: &'a glib::WeakRef<super::MoqSrc>,
    broadcast: &'a moq_net::broadcast::Consumer,
    scope: &'a log::Scope,
    pads: &'a mut Pads,
    tasks: tokio::task::JoinSet<()>,
    reading: HashSet<String>,
}

impl Readers<'_> {
    /// A catalog update: new caps for known pads (never waiting on a pad),
    /// a pad and a reader for each new rendition, `no-more-pads` after the
    /// first. False once the element is gone.
    fn apply(&mut self, update: &moq_mux::catalog::hang::Catalog) -> bool {
        for (name, rendition) in renditions(self.element, update, &mut self.pads.skipped) {
            let link = if let Some(link) = self.pads.senders.get(&name) {
                link.caps.send_if_modified(|caps| {
                    let changed = *caps != rendition.caps;
                    if changed {
                        *caps = rendition.caps.clone();
                    }
                    changed
                });
                link
            } else {
                let Some(obj) = self.element.upgrade() else {
                    return false;
                };
                let Some((tx, rejoin)) =
                    obj.imp()
                        .add_rendition(rendition.kind, &name, rendition.caps.clone())
                else {
                    continue;
                };
                self.pads
                    .senders
                    .entry(name.clone())
                    .or_insert(PadLink::new(tx, rendition.caps, rejoin))
            };
            if self.reading.insert(name.clone()) {
                self.tasks.spawn(self.scope.wrap(read_track(
                    self.element.clone(),
                    self.broadcast.clone(),
                    name,
                    rendition.wire,
                    link.reader_end(),
                )));
            }
        }
        if !self.pads.announced && !self.pads.senders.is_empty() {
            self.pads.announced = true;
            if let Some(obj) = self.element.upgrade() {
                obj.no_more_pads();
            }
        }
        true
    }
}

/// Subscribe to one track and hand its frames, in order, to the pad task;
/// subscribe again each time its pad asks for a rejoin.
async fn read_track(
    element: glib::WeakRef<super::MoqSrc>,
    broadcast: moq_net::broadcast::Consumer,
    name: String,
    wire: Wire,
    mut pad: PadEnd,
) {
    let tx = pad.tx.clone();
    let rejoin = pad.rejoin.clone();
    let mut next = subscribe_track(&element, &broadcast, &name).await;
    let mut restart = false;
    while let Some(subscriber) = next.take() {
        let reader = match wire.reader() {
            Ok(reader) => reader,
            Err(err) => return track_failed(&element, &broadcast, &name, &tx, err).await,
        };
        let track = moq_mux::container::Consumer::new(subscriber, reader);
        let frames = read_frames(track, &mut pad, restart);
        tokio::pin!(frames);
        tokio::select! {
            ended = &mut frames => {
                if let Err(err) = ended {
                    track_failed(&element, &broadcast, &name, &tx, err).await;
                }
                return;
            }
            () = rejoin.wanted() => restart = true,
        }
        // The new subscription is made while the old one (inside `frames`)
        // still holds the track: the current group is then served from what
        // was received, from its first frame, and the subscription to the
        // relay goes on undisturbed. Dropping the old one first would end
        // that subscription and race a new one against its teardown.
        next = subscribe_track(&element, &broadcast, &name).await;
    }
}

async fn subscribe_track(
    element: &glib::WeakRef<super::MoqSrc>,
    broadcast: &moq_net::broadcast::Consumer,
    name: &str,
) -> Option<moq_net::track::Subscriber> {
    let subscribed = match broadcast.track(name) {
        Ok(track) => track
            .subscribe(moq_net::track::Subscription::default().with_max_age(MAX_GROUP_AGE))
            .await
            .map_err(|e| e.to_string()),
        Err(err) => Err(err.to_string()),
    };
    match subscribed {
        Ok(subscriber) => Some(subscriber),
        Err(err) => {
            if let Some(obj) = element.upgrade() {
                gst::element_warning!(
                    obj,
                    gst::ResourceError::Read,
                    ("Cannot subscribe to track '{}': {}", name, err)
                );
            }
            None
        }
    }
}

/// The frames of one subscription (each after any caps change the catalog
/// made before it), until the track ends (an EOS item is sent) or the pad is
/// gone (Ok) or reading fails (Err).
async fn read_frames(
    mut track: moq_mux::container::Consumer<moq_mux::catalog::hang::Container>,
    pad: &mut PadEnd,
    mut restart: bool,
) -> Result<(), String> {
    let tx = pad.tx.clone();
    let mut discontinuity = track.discontinuity();
    let mut first = true;
    loop {
        match track.read().await.map_err(|e| e.to_string())? {
            Some(frame) => {
                if pad.caps.has_changed().unwrap_or(false) {
                    let caps = pad.caps.borrow_and_update().clone();
                    if tx.send(Item::Caps(caps)).await.is_err() {
                        return Ok(());
                    }
                }
                let now = track.discontinuity();
                let discont = first || now != discontinuity;
                discontinuity = now;
                first = false;
                let item = Item::Frame(Frame {
                    timestamp_us: u64::try_from(frame.timestamp.as_micros()).unwrap_or(u64::MAX),
                    payload: frame.payload,
                    keyframe: frame.keyframe,
                    discont,
                    restart: std::mem::take(&mut restart),
                });
                if tx.send(item).await.is_err() {
                    return Ok(());
                }
            }
            // The track is over: so is its pad.
            None => {
                let _ = tx.send(Item::Eos).await;
                return Ok(());
            }
        }
    }
}

/// A track's subscription failed: most likely with its broadcast (then the
/// catalog's end decides between waiting for it and EOS), else the track
/// alone is skipped and the others play on.
async fn track_failed(
    element: &glib::WeakRef<super::MoqSrc>,
    broadcast: &moq_net::broadcast::Consumer,
    name: &str,
    tx: &mpsc::Sender<Item>,
    err: String,
) {
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
    // The broadcast is fine, this track is not (e.g. a frame that does not
    // parse).
    if let Some(obj) = element.upgrade() {
        gst::element_warning!(
            obj,
            gst::StreamError::Demux,
            ("Track '{}' failed and is skipped: {}", name, err)
        );
    }
    let _ = tx.send(Item::Eos).await;
}
