// SPDX-License-Identifier: MIT OR Apache-2.0

//! moqsrc's side of the network, on the MoQ runtime: connect, wait for the
//! broadcast, follow its catalog (a pad per kind, or per rendition, through
//! the element) and run one reader per pad (see `feed`), which hands frames
//! to its pad's streaming thread over a channel; a lost broadcast is waited for and followed again
//! on the same pads. The element (imp.rs) is the GObject side: properties,
//! pads, pushing, state changes.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use tokio::sync::{mpsc, watch};

use super::CatalogFormat;
use super::abr;
use super::feed::{self, Feed, Item, PadEnd, Policy, Rendition, Wire};
use super::imp::CAT;
use super::rejoin::Rejoin;
use crate::catalog::{self, TrackKind};
use crate::connection::{self, Target};
use crate::log;

/// How long a failed broadcast waits for the connection to say it failed too.
const CONNECTION_VERDICT: Duration = Duration::from_millis(500);
/// How long a received group nobody reads stays in memory.
const RECEIVED_KEEP: Duration = Duration::from_secs(2);
/// How long a broadcast whose catalog failed may take to close before the
/// failure counts as the catalog's own.
const LOSS_SETTLE: Duration = Duration::from_secs(2);

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
    selection: Selection,
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
        followed = follow(&element, &consumer, &target, waits, &scope, Pads::new(selection, connection.recv_bandwidth())) => followed,
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

/// The renditions of a catalog we can play: video, audio, text, then data,
/// each in catalog order (`ietf`: of an MSF catalog). Those we cannot are
/// reported once each as a warning and left out.
fn renditions(
    element: &glib::WeakRef<super::MoqSrc>,
    catalog: &moq_mux::catalog::hang::Catalog,
    ietf: bool,
    skipped: &mut HashSet<String>,
) -> Vec<Rendition> {
    let mut out = Vec::new();
    for (name, kind, caps, wire, rung, lang) in candidates(catalog, ietf) {
        let caps = caps.map_err(|e| e.to_string());
        match (caps, wire.reader()) {
            (Ok(caps), Ok(_)) => out.push(Rendition {
                name: name.clone(),
                kind,
                caps,
                rung,
                wire,
                lang,
            }),
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

/// A catalog entry as moqsrc would play it: its name, kind, caps (or why
/// none), how it is framed, its rung and its language.
type Candidate<'a> = (
    &'a String,
    TrackKind,
    Result<gst::Caps, catalog::CapsError>,
    Wire,
    abr::Rung,
    Option<String>,
);

/// Every rendition and data track of a catalog: video, audio, text, then
/// binary and JSON, each in catalog order.
fn candidates(catalog: &moq_mux::catalog::hang::Catalog, ietf: bool) -> Vec<Candidate<'_>> {
    use moq_mux::container::Kind;
    let rung = |name: &String, height: Option<u32>, bitrate, framerate| abr::Rung {
        name: name.clone(),
        height: height.unwrap_or(0),
        bitrate,
        framerate,
    };
    let framed = |container: &hang::catalog::Container, kind| Wire {
        container: container.clone(),
        kind,
        ietf,
        raw: false,
    };
    let raw = Wire {
        container: hang::catalog::Container::default(),
        kind: Kind::Data,
        ietf,
        raw: true,
    };
    let video = catalog.video.renditions.iter().map(|(name, config)| {
        let rung = rung(name, config.coded_height, config.bitrate, config.framerate);
        let caps = catalog::video_caps(config);
        let wire = framed(&config.container, Kind::Video);
        (name, TrackKind::Video, caps, wire, rung, None)
    });
    let audio = catalog.audio.renditions.iter().map(|(name, config)| {
        let rung = rung(name, None, config.bitrate, None);
        let caps = catalog::audio_caps(config);
        let wire = framed(&config.container, Kind::Audio);
        (name, TrackKind::Audio, caps, wire, rung, None)
    });
    let text = catalog.text.renditions.iter().map(|(name, config)| {
        let caps = catalog::text_caps(config);
        let wire = framed(&config.container, Kind::Data);
        let rung = rung(name, None, None, None);
        (name, TrackKind::Text, caps, wire, rung, config.lang.clone())
    });
    let binary = catalog.binary.tracks.iter().map(|(name, config)| {
        let caps = catalog::binary_caps(config);
        let rung = rung(name, None, config.bitrate, None);
        (name, TrackKind::Data, caps, raw.clone(), rung, None)
    });
    let json = catalog.json.tracks.iter().map(|(name, config)| {
        let caps = catalog::json_caps(config);
        let rung = rung(name, None, config.bitrate, None);
        (name, TrackKind::Data, caps, raw.clone(), rung, None)
    });
    video
        .chain(audio)
        .chain(text)
        .chain(binary)
        .chain(json)
        .collect()
}

/// Which pads a broadcast gets (`renditions-per-pad`, `rendition`) and how
/// each chooses among its renditions.
#[derive(Clone, Debug, Default)]
pub(super) struct Selection {
    /// Which catalog to follow.
    pub(super) catalog: CatalogFormat,
    pub(super) per_rendition: bool,
    pub(super) rendition: Option<String>,
    pub(super) policy: Policy,
    /// `policy.limits` as they change while playing: every clone of the
    /// selection (the running session's) shares it, and each pad's reader
    /// follows it.
    pub(super) live: watch::Sender<abr::Limits>,
}

impl Selection {
    /// moqsrc's properties for choosing renditions.
    pub(super) fn properties() -> Vec<glib::ParamSpec> {
        vec![
            glib::ParamSpecEnum::builder::<CatalogFormat>("catalog")
                .nick("Catalog")
                .blurb(
                    "Which catalog to follow: auto (hang's catalog.json, else the IETF MSF \
                     catalog), hang or msf",
                )
                .mutable_ready()
                .build(),
            glib::ParamSpecBoolean::builder("abr")
                .nick("Adaptive bitrate")
                .blurb(
                    "Move the video pad between the broadcast's renditions to fit the link: \
                 down when groups arrive late, up after a calm spell (at group boundaries)",
                )
                .default_value(true)
                .mutable_ready()
                .build(),
            glib::ParamSpecUInt::builder("max-video-height")
                .nick("Maximum video height")
                .blurb(
                    "Play no video rendition taller than this (pixels); 0 is no limit. \
                 Set while playing, the video pad moves at its next group boundary",
                )
                .mutable_playing()
                .build(),
            glib::ParamSpecUInt64::builder("max-bitrate")
                .nick("Maximum bitrate")
                .blurb(
                    "Play no video rendition above this bitrate (bits/s); 0 is no limit. \
                 Set while playing, the video pad moves at its next group boundary",
                )
                .mutable_playing()
                .build(),
            glib::ParamSpecString::builder("rendition")
                .nick("Rendition")
                .blurb(
                    "Play this track of the catalog on its kind's pad, and no other \
                 (no adaptive choice); an error if the catalog has no such track",
                )
                .mutable_ready()
                .build(),
            glib::ParamSpecBoolean::builder("renditions-per-pad")
                .nick("A pad per rendition")
                .blurb(
                    "Give every rendition of the catalog a pad of its own, for \
                 applications that choose, instead of one pad per kind",
                )
                .default_value(false)
                .mutable_ready()
                .build(),
        ]
    }

    /// Takes one of `properties`; false for any other.
    pub(super) fn set_property(&mut self, value: &glib::Value, pspec: &glib::ParamSpec) -> bool {
        match pspec.name() {
            "catalog" => self.catalog = value.get().unwrap_or_default(),
            "abr" => self.policy.abr = value.get().unwrap_or(true),
            "max-video-height" => {
                self.policy.limits.max_height = value.get().unwrap_or_default();
                self.live.send_replace(self.policy.limits);
            }
            "max-bitrate" => {
                self.policy.limits.max_bitrate = value.get().unwrap_or_default();
                self.live.send_replace(self.policy.limits);
            }
            "rendition" => {
                self.rendition = value
                    .get::<Option<String>>()
                    .unwrap_or_default()
                    .filter(|name| !name.is_empty());
            }
            "renditions-per-pad" => self.per_rendition = value.get().unwrap_or(false),
            _ => return false,
        }
        true
    }

    /// The value of one of `properties`.
    pub(super) fn property(&self, pspec: &glib::ParamSpec) -> Option<glib::Value> {
        Some(match pspec.name() {
            "catalog" => self.catalog.to_value(),
            "abr" => self.policy.abr.to_value(),
            "max-video-height" => self.policy.limits.max_height.to_value(),
            "max-bitrate" => self.policy.limits.max_bitrate.to_value(),
            "rendition" => self.rendition.to_value(),
            "renditions-per-pad" => self.per_rendition.to_value(),
            _ => return None,
        })
    }
    /// The pads' feeds, by pad key (the track name with a pad per
    /// rendition, else the kind): every rendition of a kind on one pad, or
    /// only the `rendition` asked for on its kind's pad. Errs when that
    /// rendition is not in the catalog.
    fn feeds(&self, all: Vec<Rendition>) -> Result<Vec<(String, Feed)>, String> {
        if self.per_rendition {
            return Ok(all.into_iter().map(|r| (r.name.clone(), vec![r])).collect());
        }
        if let Some(wanted) = &self.rendition
            && !all.iter().any(|r| &r.name == wanted)
        {
            let names: Vec<&str> = all.iter().map(|r| r.name.as_str()).collect();
            return Err(format!(
                "rendition '{wanted}' is not in the catalog (it has: {})",
                names.join(", ")
            ));
        }
        let mut feeds: Vec<(String, Feed)> = Vec::new();
        for kind in [TrackKind::Video, TrackKind::Audio] {
            let mut feed: Feed = all.iter().filter(|r| r.kind == kind).cloned().collect();
            if let Some(wanted) = &self.rendition
                && feed.iter().any(|r| &r.name == wanted)
            {
                feed.retain(|r| &r.name == wanted);
            }
            if !feed.is_empty() {
                feeds.push((kind.as_str().to_owned(), feed));
            }
        }
        // Text and data tracks are not alternatives of one another (two
        // languages, two sensors): each gets a pad of its own.
        let sparse = all.into_iter().filter(|r| r.kind.is_sparse());
        feeds.extend(sparse.map(|r| (r.name.clone(), vec![r])));
        Ok(feeds)
    }
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
    mut pads: Pads,
) -> Result<(), gst::ErrorMessage> {
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

/// The pads made so far, by pad key (see `Selection::feeds`), with their
/// channel and feed; they outlive one subscription to the broadcast.
struct Pads {
    senders: HashMap<String, PadLink>,
    skipped: HashSet<String>,
    announced: bool,
    selection: Selection,
    /// The application's limits as they are now.
    limits: watch::Receiver<abr::Limits>,
    /// The relay's estimate of what it can send us (moq-lite's PROBE):
    /// holding it is what asks the relay for it.
    estimate: Option<moq_net::bandwidth::Consumer>,
}

impl Pads {
    fn new(selection: Selection, estimate: moq_net::bandwidth::Consumer) -> Self {
        Self {
            senders: HashMap::new(),
            skipped: HashSet::new(),
            announced: false,
            // Only an adaptive choice reads it (and holding it opens a
            // PROBE stream with the relay).
            estimate: selection.policy.abr.then_some(estimate),
            limits: selection.live.subscribe(),
            selection,
        }
    }

    /// How a pad chooses now: the selection's, with the limits of now.
    fn policy(&self) -> Policy {
        Policy {
            limits: *self.limits.borrow(),
            ..self.selection.policy
        }
    }
}

/// A pad's link to the readers of its feed, for the pad's whole life.
struct PadLink {
    tx: mpsc::Sender<Item>,
    /// The renditions the catalog gives the pad: set here without waiting (a
    /// full channel to one pad must not hold up the catalog for all), and
    /// followed by the pad's reader, which hands caps to the pad in order
    /// with the frames.
    feed: watch::Sender<Feed>,
    rejoin: Arc<Rejoin>,
    /// The pad, for its `renditions`.
    pad: glib::WeakRef<super::MoqSrcPad>,
}

/// Whether two feeds differ in anything a reader acts on.
fn same_feed(a: &Feed, b: &Feed) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(a, b)| a.name == b.name && a.caps == b.caps && a.rung == b.rung)
}

impl PadLink {
    /// A new reader's end.
    fn reader_end(&self, pads: &Pads) -> PadEnd {
        PadEnd {
            tx: self.tx.clone(),
            feed: self.feed.subscribe(),
            rejoin: self.rejoin.clone(),
            estimate: pads.estimate.clone(),
            policy: pads.policy(),
            limits: pads.limits.clone(),
        }
    }
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
    let (mut catalog, first) =
        match open_catalog(element, broadcast, target, waits, pads.selection.catalog).await? {
            Ok(opened) => opened,
            Err(err) => return Ok(Ended::Lost(err)),
        };
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
                    if !readers.apply(&update, catalog.ietf())? {
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

/// The catalog a subscription follows: hang's `catalog.json`, or the IETF
/// MSF `catalog`, whose tracks moq-mux lists as hang renditions and whose
/// `loc` tracks are IETF LOC.
enum CatalogReader {
    Hang(moq_mux::catalog::hang::Consumer<()>),
    Msf(moq_mux::catalog::msf::Consumer<()>),
}

impl CatalogReader {
    async fn next(&mut self) -> CatalogNext {
        match self {
            Self::Hang(hang) => hang.next().await,
            Self::Msf(msf) => Ok(msf.next().await?.map(crate::msf::with_cmaf_descriptions)),
        }
    }

    fn ietf(&self) -> bool {
        matches!(self, Self::Msf(_))
    }
}

/// The catalog and its first update, subscribing again (as a track reader
/// does) while the broadcast stays open: a relay may refuse a subscription
/// in passing, as moq-relay does when it re-subscribes upstream to an IETF
/// publisher that still holds the previous one.
async fn open_catalog(
    element: &glib::WeakRef<super::MoqSrc>,
    broadcast: &moq_net::broadcast::Consumer,
    target: &Target,
    waits: Waits,
    format: CatalogFormat,
) -> Result<Result<(CatalogReader, CatalogNext), String>, gst::ErrorMessage> {
    let mut retries = 0;
    loop {
        let err = match subscribe_catalog(broadcast, format).await {
            Ok(mut catalog) => match first_catalog(&mut catalog, target, waits).await? {
                Err(err) => err.to_string(),
                first => return Ok(Ok((catalog, first))),
            },
            Err(err) => err,
        };
        if retries >= feed::TRACK_RETRIES
            || within(Some(feed::RETRY_WAIT), broadcast.closed())
                .await
                .is_some()
        {
            return Ok(Err(err));
        }
        retries += 1;
        if let Some(obj) = element.upgrade() {
            gst::info!(
                CAT,
                obj = obj,
                "catalog of '{}' failed ({}): subscribing again ({} of {})",
                target.broadcast,
                err,
                retries,
                feed::TRACK_RETRIES
            );
        }
    }
}

/// The first catalog, within catalog-timeout: a broadcast without one has
/// nothing to play.
async fn first_catalog(
    catalog: &mut CatalogReader,
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

/// The catalog `format` asks for; `Auto` is hang's where the broadcast has
/// one (the relay answers for a track the publisher lacks), else MSF.
async fn subscribe_catalog(
    broadcast: &moq_net::broadcast::Consumer,
    format: CatalogFormat,
) -> Result<CatalogReader, String> {
    let subscribe = |name: &'static str| async move {
        broadcast
            .track(name)
            .map_err(|e| e.to_string())?
            .subscribe(hang::catalog::Catalog::default_subscription())
            .await
            .map_err(|e| format!("{name}: {e}"))
    };
    let hang = || async {
        let track = subscribe(hang::catalog::Catalog::DEFAULT_NAME).await?;
        Ok::<_, String>(CatalogReader::Hang(moq_mux::catalog::hang::Consumer::new(
            track,
        )))
    };
    let msf = || async {
        let track = subscribe(crate::msf::CATALOG_TRACK).await?;
        Ok::<_, String>(CatalogReader::Msf(moq_mux::catalog::msf::Consumer::new(
            track,
        )))
    };
    match format {
        CatalogFormat::Hang => hang().await,
        CatalogFormat::Msf => msf().await,
        CatalogFormat::Auto => match hang().await {
            Ok(reader) => Ok(reader),
            Err(no_hang) => msf()
                .await
                .map_err(|no_msf| format!("no catalog: {no_hang}; {no_msf}")),
        },
    }
}

/// Whether a new feed got its pad.
enum Added {
    Yes,
    /// Not now (stopping, or nothing to play): the next update tries again.
    No,
    ElementGone,
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
    /// A pad for a new feed, on the rendition its policy starts on.
    fn add_pad(&mut self, key: &str, feed: Feed, estimate: Option<u64>) -> Added {
        let Some(start) = self.pads.policy().start(&feed, estimate).cloned() else {
            return Added::No;
        };
        let Some(obj) = self.element.upgrade() else {
            return Added::ElementGone;
        };
        let rungs = feed::listing(&feed);
        let Some((tx, rejoin, pad)) = obj.imp().add_rendition(&start, rungs) else {
            return Added::No;
        };
        let link = PadLink {
            tx,
            feed: watch::Sender::new(feed),
            rejoin,
            pad: pad.downgrade(),
        };
        self.pads.senders.insert(key.to_owned(), link);
        Added::Yes
    }

    /// The reader of the pad `key` for this subscription. A reader of a
    /// broadcast that came back starts on what its policy picks now.
    fn start_reader(&mut self, key: &str, estimate: Option<u64>) {
        let Some(link) = self.pads.senders.get(key) else {
            return;
        };
        let end = link.reader_end(self.pads);
        let Some(start) = end.policy.start(&end.feed.borrow(), estimate).cloned() else {
            return;
        };
        self.tasks.spawn(self.scope.wrap(feed::read_feed(
            self.element.clone(),
            self.broadcast.clone(),
            start,
            end,
        )));
    }

    /// A catalog update: new feeds for known pads (never waiting on a pad),
    /// a pad and a reader for each new one, `no-more-pads` after the first.
    /// False once the element is gone; an error when the catalog lacks the
    /// rendition asked for.
    fn apply(
        &mut self,
        update: &moq_mux::catalog::hang::Catalog,
        ietf: bool,
    ) -> Result<bool, gst::ErrorMessage> {
        let all = renditions(self.element, update, ietf, &mut self.pads.skipped);
        let feeds = self.pads.selection.feeds(all).map_err(|err| {
            gst::error_msg!(
                gst::ResourceError::NotFound,
                ("Cannot play the broadcast: {}", err)
            )
        })?;
        let estimate = self
            .pads
            .estimate
            .as_ref()
            .and_then(moq_net::bandwidth::Consumer::peek)
            .map(moq_net::bandwidth::Rate::as_bps);
        for (key, feed) in feeds {
            if let Some(link) = self.pads.senders.get(&key) {
                let changed = link.feed.send_if_modified(|old| {
                    let changed = !same_feed(old, &feed);
                    if changed {
                        *old = feed.clone();
                    }
                    changed
                });
                if changed && let Some(pad) = link.pad.upgrade() {
                    pad.imp().set_renditions(feed::listing(&feed));
                }
            } else {
                match self.add_pad(&key, feed, estimate) {
                    Added::Yes => {}
                    Added::No => continue,
                    Added::ElementGone => return Ok(false),
                }
            }
            if self.reading.insert(key.clone()) {
                self.start_reader(&key, estimate);
            }
        }
        if !self.pads.announced && !self.pads.senders.is_empty() {
            self.pads.announced = true;
            if let Some(obj) = self.element.upgrade() {
                obj.no_more_pads();
            }
        }
        Ok(true)
    }
}
