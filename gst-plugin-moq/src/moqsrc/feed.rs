// SPDX-License-Identifier: MIT OR Apache-2.0

//! One pad's reader: it plays one track of the pad's feed (the renditions
//! the pad may play, from the catalog), hands its frames in order to the
//! pad's streaming thread, and moves to another rendition of the feed when
//! the adaptive choice (`abr`) says so, or when the one played leaves the
//! catalog.
//!
//! A switch never cuts a group: the new rendition is subscribed beside the
//! old one and taken at its first keyframe later than the last frame
//! played, so the pad goes on at a group boundary with no gap and no
//! repeat. When the publisher's keyframes are aligned across renditions
//! (moqsink's ladder), that is the next group boundary; when they are not,
//! the old rendition plays until the new one's next keyframe.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use gst::glib;
use tokio::sync::{mpsc, watch};

use super::abr::{self, Why};
use super::imp::CAT;
use super::rejoin::Rejoin;
pub(super) use super::wire::Wire;
use super::wire::WireReader;
use crate::catalog::TrackKind;

/// How far a group may fall behind the newest before the reader skips it.
const MAX_GROUP_AGE: Duration = Duration::from_millis(500);
/// How long a broadcast whose track failed may take to close before the
/// failure counts as the track's own.
const LOSS_SETTLE: Duration = Duration::from_secs(2);
/// How often the adaptive choice is looked at.
/// A track that fails while its broadcast goes on is subscribed again this
/// many times, after `RETRY_WAIT` each, before its pad ends: a relay may
/// refuse one subscription in passing (moq-relay re-subscribing upstream
/// while an IETF publisher still holds its previous subscription, say).
pub(super) const TRACK_RETRIES: u32 = 3;
pub(super) const RETRY_WAIT: Duration = Duration::from_millis(250);
const DECIDE_EVERY: Duration = Duration::from_millis(200);
/// How long the rendition played may wait at a group boundary for the one
/// being switched to to reach it (it is late by its larger keyframe).
const HOLD_AT_BOUNDARY: Duration = Duration::from_millis(300);
/// How long a switch down waits for the lower rendition to reach a group
/// boundary beside the played one. Past it the played one, which the link
/// does not carry, is dropped to make room, and the pad waits for the lower
/// one's next keyframe.
const DOWN_PATIENCE: Duration = Duration::from_millis(1500);
/// Subscriber priority of a rendition switched down to: ahead of the one it
/// replaces, whose backlog is what made the link late.
const DOWN_PRIORITY: u8 = 1;

/// What a track reader hands its pad's streaming thread.
pub(super) enum Item {
    Frame(Frame),
    Caps(gst::Caps),
    /// The frames that follow are from another rendition.
    Switch(Switch),
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

/// A move to another rendition, for the pad's `track`, the bus and `stats`.
pub(super) struct Switch {
    pub(super) from: String,
    pub(super) to: String,
    pub(super) why: Why,
    /// What the reader measured of the link, bits/s, when it measured it.
    pub(super) throughput: Option<u64>,
}

/// One rendition of a feed: how to read its track and what caps it has.
#[derive(Clone)]
pub(super) struct Rendition {
    pub(super) name: String,
    pub(super) kind: TrackKind,
    pub(super) caps: gst::Caps,
    pub(super) rung: abr::Rung,
    pub(super) wire: Wire,
    /// Text: the BCP-47 language the catalog gives, for the pad's tags.
    pub(super) lang: Option<String>,
}

/// The renditions a pad may play, as the catalog lists them.
pub(super) type Feed = Vec<Rendition>;

/// Every rendition of the feed best first, with its caps: what the pad's
/// `renditions` lists.
pub(super) fn listing(feed: &Feed) -> Vec<(abr::Rung, gst::Caps)> {
    abr::ranked(&feed.iter().map(|r| r.rung.clone()).collect::<Vec<_>>())
        .into_iter()
        .filter_map(|rung| {
            let caps = feed.iter().find(|r| r.name == rung.name)?.caps.clone();
            Some((rung, caps))
        })
        .collect()
}

/// How a pad chooses among its feed.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Policy {
    pub(super) abr: bool,
    pub(super) limits: abr::Limits,
}

impl Policy {
    /// The feed's rungs best first, within the limits.
    fn ladder(&self, feed: &Feed) -> Vec<abr::Rung> {
        abr::allowed(
            &feed.iter().map(|r| r.rung.clone()).collect::<Vec<_>>(),
            self.limits,
        )
    }

    /// The rendition a pad starts on: the best the limits allow, or with
    /// adaptive choice and an estimate from the relay, the best that fits it.
    pub(super) fn start<'a>(&self, feed: &'a Feed, estimate: Option<u64>) -> Option<&'a Rendition> {
        let ladder = self.ladder(feed);
        let fits = |r: &&abr::Rung| match (estimate, r.bitrate) {
            (Some(e), Some(b)) => (b as f64) <= e as f64 * 0.8,
            _ => false,
        };
        let pick = match self.abr {
            true => ladder.iter().find(fits).or(ladder.first()),
            false => ladder.first(),
        }?;
        feed.iter().find(|r| r.name == pick.name)
    }
}

/// A reader's end of its pad: the channel, the feed as the catalog keeps it,
/// the pad's rejoin requests and the relay's bandwidth estimate.
pub(super) struct PadEnd {
    pub(super) tx: mpsc::Sender<Item>,
    pub(super) feed: watch::Receiver<Feed>,
    pub(super) rejoin: Arc<Rejoin>,
    pub(super) estimate: Option<moq_net::bandwidth::Consumer>,
    pub(super) policy: Policy,
    /// The application's limits as they change while playing.
    pub(super) limits: watch::Receiver<abr::Limits>,
}

impl PadEnd {
    fn estimate(&self) -> Option<u64> {
        self.estimate
            .as_ref()
            .and_then(moq_net::bandwidth::Consumer::peek)
            .map(moq_net::bandwidth::Rate::as_bps)
    }
}

/// A subscription to one rendition's track.
struct Playing {
    rendition: Rendition,
    track: moq_mux::container::Consumer<WireReader>,
    discontinuity: u64,
    first: bool,
}

/// What the pad plays and what it sent last.
struct Reader {
    element: glib::WeakRef<super::MoqSrc>,
    broadcast: moq_net::broadcast::Consumer,
    pad: PadEnd,
    current: Playing,
    /// A rendition being switched to, waiting for its next keyframe.
    pending: Option<(Playing, Why)>,
    /// When a pending switch down gives up on the played rendition.
    abandon_at: Option<tokio::time::Instant>,
    /// A switch whose old rendition was dropped before the new one reached
    /// a keyframe: the rendition it came from and why.
    switching: Option<(String, Why)>,
    /// The keyframe that starts the played rendition's next group, held
    /// while a switch is pending: the other rendition's keyframe at the same
    /// time (aligned groups) replaces it if it comes within
    /// `HOLD_AT_BOUNDARY`.
    held: Option<Held>,
    sent_caps: Option<gst::Caps>,
    last_us: Option<u64>,
    restart: bool,
    /// Whether the adaptive choice moves this pad.
    adaptive: bool,
    /// Subscriptions of the played track made again after it failed.
    retries: u32,
    /// The limits changed: the rendition played is looked at again once no
    /// switch is under way.
    refit: bool,
    abr: abr::Controller,
}

struct Held {
    frame: moq_mux::container::Frame,
    skipped: bool,
    until: tokio::time::Instant,
}

/// Plays `start` from `pad`'s feed until its track ends, the pad goes away
/// or the track fails, switching renditions as the pad's policy says.
pub(super) async fn read_feed(
    element: glib::WeakRef<super::MoqSrc>,
    broadcast: moq_net::broadcast::Consumer,
    start: Rendition,
    pad: PadEnd,
) {
    let Some(current) = open(&element, &broadcast, start, 0).await else {
        return;
    };
    let mut reader = Reader::new(element, broadcast, pad, current);
    let rejoin = reader.pad.rejoin.clone();
    let mut decide = tokio::time::interval(DECIDE_EVERY);
    decide.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let hold_until = reader.held.as_ref().map(|h| h.until);
        let abandon_at = reader.abandon_at;
        let go_on = tokio::select! {
            read = reader.current.track.read(), if hold_until.is_none() => {
                reader.current_read(read.map_err(|e| e.to_string())).await
            }
            () = tokio::time::sleep_until(hold_until.unwrap_or_else(tokio::time::Instant::now)), if hold_until.is_some() => {
                reader.release().await
            }
            () = tokio::time::sleep_until(abandon_at.unwrap_or_else(tokio::time::Instant::now)), if abandon_at.is_some() => {
                reader.abandon();
                true
            }
            read = next_pending(&mut reader.pending) => reader.pending_read(read).await,
            () = rejoin.wanted() => reader.rejoin().await,
            changed = reader.pad.feed.changed() => match changed {
                // The pads are gone: so is the element's run.
                Err(_) => false,
                Ok(()) => reader.feed_changed().await,
            },
            changed = reader.pad.limits.changed() => match changed {
                // The element is gone.
                Err(_) => false,
                Ok(()) => reader.limits_changed().await,
            },
            _ = decide.tick() => reader.decide().await,
        };
        if !go_on {
            return;
        }
    }
}

/// The next frame of the rendition being switched to; never, if none is.
async fn next_pending(
    pending: &mut Option<(Playing, Why)>,
) -> Result<Option<moq_mux::container::Frame>, String> {
    match pending {
        Some((playing, _)) => playing.track.read().await.map_err(|e| e.to_string()),
        None => std::future::pending().await,
    }
}

impl Reader {
    /// A reader playing `current`, nothing sent yet.
    fn new(
        element: glib::WeakRef<super::MoqSrc>,
        broadcast: moq_net::broadcast::Consumer,
        pad: PadEnd,
        current: Playing,
    ) -> Self {
        let adaptive = pad.policy.abr && current.rendition.kind == TrackKind::Video;
        Reader {
            element,
            broadcast,
            pad,
            current,
            pending: None,
            abandon_at: None,
            switching: None,
            held: None,
            sent_caps: None,
            last_us: None,
            restart: false,
            adaptive,
            retries: 0,
            refit: false,
            abr: abr::Controller::new(Instant::now()),
        }
    }

    /// A frame (or the end) of the rendition played; false once the pad
    /// has nothing more to play.
    async fn current_read(
        &mut self,
        read: Result<Option<moq_mux::container::Frame>, String>,
    ) -> bool {
        match read {
            Ok(Some(frame)) => {
                let now = self.current.track.discontinuity();
                let skipped = !self.current.first && now != self.current.discontinuity;
                self.current.discontinuity = now;
                if skipped {
                    self.abr.on_skip(Instant::now());
                }
                if let Some((from, why)) = self.switching.take() {
                    let ts = timestamp_us(&frame);
                    if !frame.keyframe || self.last_us.is_some_and(|last| ts <= last) {
                        self.switching = Some((from, why));
                        return true;
                    }
                    if !self.announce(from, why).await {
                        return false;
                    }
                    return self.send(frame, true).await;
                }
                if frame.keyframe && self.pending.is_some() {
                    self.held = Some(Held {
                        frame,
                        skipped,
                        until: tokio::time::Instant::now() + HOLD_AT_BOUNDARY,
                    });
                    return true;
                }
                self.send(frame, skipped).await
            }
            // The track is over: so is its pad.
            Ok(None) => {
                let _ = self.pad.tx.send(Item::Eos).await;
                false
            }
            Err(err) => {
                if self.resubscribe(&err).await {
                    return true;
                }
                let name = self.current.rendition.name.clone();
                track_failed(&self.element, &self.broadcast, &name, &self.pad.tx, err).await;
                false
            }
        }
    }

    /// The played track failed (`err`): while the broadcast goes on and
    /// retries are left, subscribe to it again; true if that worked.
    async fn resubscribe(&mut self, err: &str) -> bool {
        if self.retries >= TRACK_RETRIES
            || tokio::time::timeout(RETRY_WAIT, self.broadcast.closed())
                .await
                .is_ok()
        {
            return false;
        }
        self.retries += 1;
        let rendition = self.current.rendition.clone();
        if let Some(obj) = self.element.upgrade() {
            gst::info!(
                CAT,
                obj = obj,
                "track '{}' failed ({}): subscribing again ({} of {})",
                rendition.name,
                err,
                self.retries,
                TRACK_RETRIES
            );
        }
        match open(&self.element, &self.broadcast, rendition, 0).await {
            Some(playing) => {
                self.current = playing;
                true
            }
            None => false,
        }
    }

    /// A frame of the rendition being switched to: the switch happens at
    /// its first keyframe past what was played; frames before are dropped.
    async fn pending_read(
        &mut self,
        read: Result<Option<moq_mux::container::Frame>, String>,
    ) -> bool {
        match read {
            Ok(Some(frame)) => {
                let ts = timestamp_us(&frame);
                // At a held boundary the keyframe for the same time will do;
                // otherwise only one past what was played.
                let late = match &self.held {
                    Some(held) => ts < timestamp_us(&held.frame),
                    None => self.last_us.is_some_and(|last| ts <= last),
                };
                if !frame.keyframe || late {
                    if let Some(obj) = self.element.upgrade() {
                        gst::trace!(
                            CAT,
                            obj = obj,
                            "waiting to switch: a frame at {ts} µs (keyframe: {}), played up to {:?}",
                            frame.keyframe,
                            self.last_us
                        );
                    }
                    return true;
                }
                let Some((next, why)) = self.pending.take() else {
                    return true;
                };
                let old = std::mem::replace(&mut self.current, next);
                // The old subscription ends here, and its held keyframe
                // with it.
                let from = old.rendition.name.clone();
                drop(old);
                self.held = None;
                self.abandon_at = None;
                if !self.announce(from, why).await {
                    return false;
                }
                self.current.first = false;
                self.current.discontinuity = self.current.track.discontinuity();
                self.send(frame, false).await
            }
            Ok(None) | Err(_) => {
                if let Some((playing, _)) = self.pending.take()
                    && let Some(obj) = self.element.upgrade()
                {
                    gst::info!(
                        CAT,
                        obj = obj,
                        "rendition '{}' ended before it could be switched to",
                        playing.rendition.name
                    );
                }
                true
            }
        }
    }

    /// Tells the pad its frames now come from another rendition.
    async fn announce(&mut self, from: String, why: Why) -> bool {
        let switch = Switch {
            from,
            to: self.current.rendition.name.clone(),
            throughput: self.abr.throughput(),
            why,
        };
        self.abr.switched(Instant::now(), &switch.why);
        self.pad.tx.send(Item::Switch(switch)).await.is_ok()
    }

    /// A switch down that the link did not let through beside the played
    /// rendition: that one is dropped, and the lower one plays from its
    /// next keyframe.
    fn abandon(&mut self) {
        self.abandon_at = None;
        self.held = None;
        if let Some((next, why)) = self.pending.take() {
            let old = std::mem::replace(&mut self.current, next);
            if let Some(obj) = self.element.upgrade() {
                gst::info!(
                    CAT,
                    obj = obj,
                    "'{}' is stuck: dropped for '{}' before its keyframe",
                    old.rendition.name,
                    self.current.rendition.name
                );
            }
            self.switching = Some((old.rendition.name.clone(), why));
        }
    }

    /// The rendition switched to did not reach the held boundary in time:
    /// the played one goes on, and the switch waits for the next group.
    async fn release(&mut self) -> bool {
        match self.held.take() {
            Some(held) => self.send(held.frame, held.skipped).await,
            None => true,
        }
    }

    /// Hands a frame of the rendition played to the pad, after its caps if
    /// they are not the ones sent last; false once the pad is gone.
    async fn send(&mut self, frame: moq_mux::container::Frame, discont: bool) -> bool {
        let caps = self.current.rendition.caps.clone();
        if self.sent_caps.as_ref() != Some(&caps) {
            if self.pad.tx.send(Item::Caps(caps.clone())).await.is_err() {
                return false;
            }
            self.sent_caps = Some(caps);
        }
        let timestamp_us = timestamp_us(&frame);
        self.abr.on_frame(
            Instant::now(),
            timestamp_us,
            frame.payload.len(),
            frame.keyframe,
        );
        self.last_us = Some(timestamp_us);
        let item = Item::Frame(Frame {
            timestamp_us,
            payload: frame.payload,
            keyframe: frame.keyframe,
            discont: discont || std::mem::take(&mut self.current.first),
            restart: std::mem::take(&mut self.restart),
        });
        self.pad.tx.send(item).await.is_ok()
    }

    /// A keyframe request from downstream: the rendition played is
    /// subscribed again and starts over from its group's keyframe. The new
    /// subscription is made while the old one still holds the track: the
    /// current group is then served from what was received, from its first
    /// frame, and the subscription to the relay goes on undisturbed.
    async fn rejoin(&mut self) -> bool {
        // A switch under way brings a keyframe of its own, soon; the group
        // again would only crowd a link that may be why it is switching.
        if self.pending.is_some() || self.switching.is_some() {
            return true;
        }
        let rendition = self.current.rendition.clone();
        if let Some(again) = open(&self.element, &self.broadcast, rendition, 0).await {
            self.current = again;
            self.restart = true;
            self.last_us = None;
        }
        true
    }

    /// The catalog changed: new caps for the rendition played (sent before
    /// its next frame), and if it left the feed, a switch to the best left.
    async fn feed_changed(&mut self) -> bool {
        let feed = self.pad.feed.borrow_and_update().clone();
        match feed.iter().find(|r| r.name == self.current.rendition.name) {
            Some(now) => {
                self.current.rendition.caps = now.caps.clone();
                self.current.rendition.rung = now.rung.clone();
                true
            }
            None if self.pending.is_none() && self.switching.is_none() => {
                match self.pad.policy.start(&feed, None) {
                    Some(best) => self.switch_to(best.clone(), Why::Gone).await,
                    None => true,
                }
            }
            None => true,
        }
    }

    /// The application changed its limits: the rendition played moves now,
    /// replacing a switch that is waiting for its keyframe, or once a
    /// switch whose old rendition was dropped is through.
    async fn limits_changed(&mut self) -> bool {
        self.pad.policy.limits = *self.pad.limits.borrow_and_update();
        self.refit = true;
        if self.switching.is_none() && self.pending.take().is_some() {
            self.abandon_at = None;
            if !self.release().await {
                return false;
            }
        }
        self.decide().await
    }

    /// Out of a rendition the limits no longer allow to the best they do;
    /// without the adaptive choice, also up to the best they now allow.
    async fn fit(&mut self) -> bool {
        let feed = self.pad.feed.borrow().clone();
        let ladder = self.pad.policy.ladder(&feed);
        let current = &self.current.rendition;
        let Some(best) = ladder.first() else {
            return true;
        };
        let allowed = ladder.iter().any(|r| r.name == current.name);
        if best.name == current.name || (allowed && self.adaptive) {
            return true;
        }
        let down = (best.height, best.bitrate) < (current.rung.height, current.rung.bitrate);
        match feed.into_iter().find(|r| r.name == best.name) {
            Some(rendition) => self.switch_to(rendition, Why::Limit(down)).await,
            None => true,
        }
    }

    /// The adaptive choice, looked at regularly (and the limits, after they
    /// changed).
    async fn decide(&mut self) -> bool {
        if self.pending.is_some() || self.switching.is_some() {
            return true;
        }
        if std::mem::take(&mut self.refit) {
            return self.fit().await;
        }
        if !self.adaptive {
            return true;
        }
        let feed = self.pad.feed.borrow().clone();
        let ladder = self.pad.policy.ladder(&feed);
        let estimate = self.pad.estimate();
        if let Some(obj) = self.element.upgrade() {
            let (late, late_groups) = self.abr.lateness();
            gst::log!(
                CAT,
                obj = obj,
                "'{}' ({:?} bit/s): {late:?} late, {late_groups} late groups, {:?} bit/s while late, estimate {estimate:?}",
                self.current.rendition.name,
                self.current.rendition.rung.bitrate,
                self.abr.throughput()
            );
        }
        let Some((to, why)) = self.abr.decide(
            Instant::now(),
            &ladder,
            &self.current.rendition.name,
            estimate,
        ) else {
            return true;
        };
        match feed.into_iter().find(|r| r.name == to.name) {
            Some(rendition) => self.switch_to(rendition, why).await,
            None => true,
        }
    }

    /// Subscribes to `rendition` beside the one played, to switch at its
    /// next keyframe.
    async fn switch_to(&mut self, rendition: Rendition, why: Why) -> bool {
        if let Some(obj) = self.element.upgrade() {
            gst::info!(
                CAT,
                obj = obj,
                "switching from '{}' to '{}' ({:?})",
                self.current.rendition.name,
                rendition.name,
                why
            );
        }
        let priority = if why.is_down() { DOWN_PRIORITY } else { 0 };
        if let Some(playing) = open(&self.element, &self.broadcast, rendition, priority).await {
            if why.is_down() {
                self.abandon_at = Some(tokio::time::Instant::now() + DOWN_PATIENCE);
            }
            self.pending = Some((playing, why));
        }
        true
    }
}

fn timestamp_us(frame: &moq_mux::container::Frame) -> u64 {
    u64::try_from(frame.timestamp.as_micros()).unwrap_or(u64::MAX)
}

/// A subscription to `rendition`'s track, or a WARNING saying why not.
async fn open(
    element: &glib::WeakRef<super::MoqSrc>,
    broadcast: &moq_net::broadcast::Consumer,
    rendition: Rendition,
    priority: u8,
) -> Option<Playing> {
    let subscription = moq_net::track::Subscription::default()
        .with_max_age(MAX_GROUP_AGE)
        .with_priority(priority);
    let subscribed = match broadcast.track(&rendition.name) {
        Ok(track) => track
            .subscribe(subscription)
            .await
            .map_err(|e| e.to_string()),
        Err(err) => Err(err.to_string()),
    };
    let reader = subscribed.and_then(|s| rendition.wire.reader().map(|r| (s, r)));
    match reader {
        Ok((subscriber, reader)) => {
            let track = moq_mux::container::Consumer::new(subscriber, reader);
            Some(Playing {
                discontinuity: track.discontinuity(),
                rendition,
                track,
                first: true,
            })
        }
        Err(err) => {
            if let Some(obj) = element.upgrade() {
                gst::element_warning!(
                    obj,
                    gst::ResourceError::Read,
                    ("Cannot subscribe to track '{}': {}", rendition.name, err)
                );
            }
            None
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
    if tokio::time::timeout(LOSS_SETTLE, broadcast.closed())
        .await
        .is_ok()
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
