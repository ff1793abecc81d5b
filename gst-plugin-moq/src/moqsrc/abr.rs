// SPDX-License-Identifier: MIT OR Apache-2.0

//! Which video rendition a pad plays, and when to move to another: pure
//! bookkeeping over what the track reader sees (each frame's arrival, size
//! and timestamp), so it can be tested without a network.
//!
//! Going down is driven by lateness, not by a bandwidth figure: a live
//! stream that fits its link arrives as fast as it is made, so what it
//! measures is its own bitrate, not the link's. A link that is too narrow
//! shows as frames arriving later and later against their timestamps, and
//! then the bytes received per second are what the link carries. So a group
//! that ends late (its last frame still late when the next group starts: a
//! keyframe burst alone drains within its group) or a skipped group means
//! down, to the best rendition that fits 80 % of the measured throughput.
//!
//! Going up has no such signal until it is tried. After a calm spell the
//! next rendition up is tried, unless the relay's estimate of what it can
//! send (the PROBE of moq-lite, when it has one) says it does not fit; a
//! rendition that fails again soon after is tried again only after twice
//! the wait, up to a minute.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// A group whose last frame arrives this much later than the fastest frame
/// of recent seconds completed late.
const GROUP_LATE: Duration = Duration::from_millis(150);
/// Late groups in a row that mean the link does not carry the rendition.
const LATE_GROUPS: u32 = 2;
/// A frame this late means down at once, without waiting for its group to
/// end (moqsrc's readers skip groups at 500 ms).
const FRAME_LATE: Duration = Duration::from_millis(350);
/// Lateness under which the link counts as calm.
const CALM: Duration = Duration::from_millis(60);
/// Calm needed before the first try up, and after a switch down.
const UP_HOLD: Duration = Duration::from_secs(4);
const MAX_UP_HOLD: Duration = Duration::from_secs(60);
/// A switch down this soon after a switch up means the try failed.
const FAILED_UP: Duration = Duration::from_secs(10);
/// The share of measured throughput a rendition's bitrate may be (the
/// catalog's bitrate is the peak over a second, already above the average).
const HEADROOM: f64 = 1.0;
/// How much more than a rendition's bitrate the relay's estimate must be.
const ESTIMATE_MARGIN: f64 = 1.25;
/// A rendition that arrives at less than this share of its frame rate
/// (from the catalog) does not fit: the relay is dropping its groups. Frames,
/// not bits: the catalog's bitrate is a peak, and the average under it
/// varies with the picture.
const SHORT: f64 = 0.9;
/// Arrivals needed before a rendition's rate is judged.
const SHORT_SPAN: Duration = Duration::from_millis(1500);
/// Throughput is measured over this window of late arrivals.
const RATE_WINDOW: Duration = Duration::from_secs(2);
/// A throughput figure needs late arrivals over at least this long.
const RATE_MIN_SPAN: Duration = Duration::from_millis(300);
/// Lateness is measured against the fastest frame of this window.
const BASELINE_WINDOW: Duration = Duration::from_secs(10);

/// One video rendition as the catalog describes it.
#[derive(Clone, Debug, PartialEq)]
pub struct Rung {
    pub name: String,
    /// Coded height; 0 when the catalog does not say.
    pub height: u32,
    /// Bits per second (the peak over a second), when the catalog says.
    pub bitrate: Option<u64>,
    /// Frames per second, when the catalog says.
    pub framerate: Option<f64>,
}

/// What the application allows (`max-video-height`, `max-bitrate`); 0 is
/// no limit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Limits {
    pub max_height: u32,
    pub max_bitrate: u64,
}

impl Limits {
    fn allow(&self, rung: &Rung) -> bool {
        (self.max_height == 0 || rung.height <= self.max_height)
            && (self.max_bitrate == 0 || rung.bitrate.is_none_or(|b| b <= self.max_bitrate))
    }
}

/// `ladder` best first: tallest, then highest bitrate; unknown ranks low,
/// ties keep their order.
pub fn ranked(ladder: &[Rung]) -> Vec<Rung> {
    let mut ranked = ladder.to_vec();
    ranked.sort_by_key(|r| std::cmp::Reverse((r.height, r.bitrate.unwrap_or(0))));
    ranked
}

/// `ladder` best first (see `ranked`), then only the rungs `limits` allow; when none
/// does, the lowest alone, so the pad still plays.
pub fn allowed(ladder: &[Rung], limits: Limits) -> Vec<Rung> {
    let ranked = ranked(ladder);
    let fit: Vec<Rung> = ranked.iter().filter(|r| limits.allow(r)).cloned().collect();
    if fit.is_empty() {
        ranked.last().cloned().into_iter().collect()
    } else {
        fit
    }
}

/// Why a pad moved to another rendition.
#[derive(Clone, Debug, PartialEq)]
pub enum Why {
    /// Groups completed this late (ms).
    Late(u64),
    /// A group was skipped: it came too late to play.
    Skipped,
    /// The rendition's frames arrived short of its frame rate: the relay
    /// drops what the link does not carry, measured at this rate (bits/s).
    Short(u64),
    /// Calm for a while and the relay's estimate (bits/s) leaves room.
    Room(u64),
    /// Calm for a while, no estimate: trying.
    Probe,
    /// The rendition played is no longer allowed or in the catalog.
    Gone,
    /// The application changed `max-video-height` or `max-bitrate`: down
    /// (true) out of what it no longer allows, or up to the best it now
    /// allows (without the adaptive choice).
    Limit(bool),
}

impl Why {
    /// The word in the switch message's `reason` field.
    pub fn as_str(&self) -> &'static str {
        match self {
            Why::Late(_) => "late",
            Why::Skipped => "skipped",
            Why::Short(_) => "short",
            Why::Room(_) => "room",
            Why::Probe => "probe",
            Why::Gone => "gone",
            Why::Limit(_) => "limit",
        }
    }

    pub fn is_down(&self) -> bool {
        self.is_link_down() || matches!(self, Why::Limit(true))
    }

    /// Down because the link did not carry the rendition.
    fn is_link_down(&self) -> bool {
        matches!(self, Why::Late(_) | Why::Skipped | Why::Short(_))
    }
}

/// The smallest value over a sliding time window, kept as per-second minima.
#[derive(Default)]
struct WindowMin {
    buckets: VecDeque<(Instant, i64)>,
}

impl WindowMin {
    fn push(&mut self, now: Instant, value: i64) {
        while self
            .buckets
            .front()
            .is_some_and(|(at, _)| now.duration_since(*at) > BASELINE_WINDOW)
        {
            self.buckets.pop_front();
        }
        match self.buckets.back_mut() {
            Some((at, min)) if now.duration_since(*at) < Duration::from_secs(1) => {
                *min = (*min).min(value);
            }
            _ => self.buckets.push_back((now, value)),
        }
    }

    fn min(&self) -> Option<i64> {
        self.buckets.iter().map(|(_, v)| *v).min()
    }
}

/// Bytes received over the last `RATE_WINDOW`, counted only while frames
/// arrive late: only then is their pace the link's rather than the
/// encoder's.
#[derive(Default)]
struct Throughput {
    arrivals: VecDeque<(Instant, usize)>,
    bytes: usize,
}

impl Throughput {
    fn push(&mut self, now: Instant, bytes: usize) {
        self.arrivals.push_back((now, bytes));
        self.bytes += bytes;
        while let Some((at, n)) = self.arrivals.front().copied()
            && now.duration_since(at) > RATE_WINDOW
        {
            self.arrivals.pop_front();
            self.bytes -= n;
        }
    }

    /// The time the window spans, once it spans `min_span`.
    fn span(&self, min_span: Duration) -> Option<Duration> {
        let (first, _) = self.arrivals.front()?;
        let (last, _) = self.arrivals.back()?;
        let span = last.duration_since(*first);
        (span >= min_span).then_some(span)
    }

    fn bps(&self) -> Option<u64> {
        let span = self.span(RATE_MIN_SPAN)?;
        // The first arrival opens the span: its bytes came before it.
        let bytes = self.bytes - self.arrivals.front().map_or(0, |(_, n)| *n);
        Some((bytes as f64 * 8.0 / span.as_secs_f64()) as u64)
    }

    /// Frames per second, once the window spans `SHORT_SPAN`.
    fn fps(&self) -> Option<f64> {
        let span = self.span(SHORT_SPAN)?;
        Some((self.arrivals.len() - 1) as f64 / span.as_secs_f64())
    }
}

/// What the link does to the rendition played.
enum Trouble {
    None,
    /// Late, and what the link carries is not measured yet.
    Measuring,
    /// Go down, for this reason; the link carries this many bits/s, if
    /// measured.
    Down(Why, Option<u64>),
}

/// The adaptive choice for one pad.
pub struct Controller {
    epoch: Instant,
    baseline: WindowMin,
    /// What arrived while late.
    throughput: Throughput,
    /// Everything that arrived.
    received: Throughput,
    /// Lateness of the newest frame, µs.
    excess_us: i64,
    /// The newest frame's timestamp and arrival delay (µs): with the
    /// baseline, how late the next one is while it has not come.
    last_frame: Option<(u64, i64)>,
    late_groups: u32,
    /// The worst lateness of the late groups in a row, µs.
    worst_us: i64,
    skipped: bool,
    /// When lateness or a skip was last seen.
    troubled_at: Instant,
    switched_at: Instant,
    /// When the last switch up happened, to judge whether it held.
    up_at: Option<Instant>,
    up_hold: Duration,
}

impl Controller {
    pub fn new(now: Instant) -> Self {
        Self {
            epoch: now,
            baseline: WindowMin::default(),
            throughput: Throughput::default(),
            received: Throughput::default(),
            excess_us: 0,
            last_frame: None,
            late_groups: 0,
            worst_us: 0,
            skipped: false,
            troubled_at: now,
            switched_at: now,
            up_at: None,
            up_hold: UP_HOLD,
        }
    }

    /// A frame of the rendition played arrived at `now`; `keyframe` starts a
    /// group, so the one before it is complete.
    pub fn on_frame(&mut self, now: Instant, timestamp_us: u64, bytes: usize, keyframe: bool) {
        let arrival_us =
            i64::try_from(now.duration_since(self.epoch).as_micros()).unwrap_or(i64::MAX);
        let delay = arrival_us.saturating_sub(i64::try_from(timestamp_us).unwrap_or(i64::MAX));
        self.baseline.push(now, delay);
        self.received.push(now, bytes);
        if keyframe {
            // The group before ended with the last frame seen.
            if self.excess_us > micros(GROUP_LATE) {
                self.late_groups += 1;
                self.worst_us = self.worst_us.max(self.excess_us);
            } else {
                self.late_groups = 0;
                self.worst_us = 0;
            }
        }
        self.excess_us = delay - self.baseline.min().unwrap_or(delay);
        self.last_frame = Some((timestamp_us, delay));
        if self.excess_us > micros(CALM) {
            self.troubled_at = now;
            self.throughput.push(now, bytes);
        } else {
            self.throughput = Throughput::default();
        }
    }

    /// The reader skipped a group of the rendition played.
    pub fn on_skip(&mut self, now: Instant) {
        self.skipped = true;
        self.troubled_at = now;
    }

    /// Lateness of the newest frame against the fastest of recent seconds,
    /// and late groups in a row, for the debug log.
    pub fn lateness(&self) -> (Duration, u32) {
        (
            Duration::from_micros(u64::try_from(self.excess_us).unwrap_or(0)),
            self.late_groups,
        )
    }

    /// Bits per second received while frames arrived late: what the link
    /// carries.
    pub fn throughput(&self) -> Option<u64> {
        self.throughput.bps()
    }

    /// How late the frame after the newest is by `now`, µs, when it has not
    /// come: a link that stopped delivering sends no late frames to measure.
    fn overdue_us(&self, now: Instant, interval: Duration) -> i64 {
        let (Some((timestamp_us, _)), Some(baseline)) = (self.last_frame, self.baseline.min())
        else {
            return 0;
        };
        let now_us = i64::try_from(now.duration_since(self.epoch).as_micros()).unwrap_or(i64::MAX);
        let next_us = i64::try_from(timestamp_us).unwrap_or(i64::MAX) + micros(interval);
        now_us.saturating_sub(next_us).saturating_sub(baseline)
    }

    /// Where to go from `current` (a rung of `ladder`, best first), if
    /// anywhere; `estimate` is the relay's estimate of what it can send.
    pub fn decide(
        &mut self,
        now: Instant,
        ladder: &[Rung],
        current: &str,
        estimate: Option<u64>,
    ) -> Option<(Rung, Why)> {
        let Some(at) = ladder.iter().position(|r| r.name == current) else {
            return ladder.first().map(|r| (r.clone(), Why::Gone));
        };
        match self.trouble(now, &ladder[at]) {
            Trouble::None => self.up(now, ladder, at, estimate),
            Trouble::Measuring => None,
            Trouble::Down(why, carried) => {
                self.skipped = false;
                let lower = &ladder[at + 1..];
                let fits = |r: &&Rung| match (r.bitrate, carried) {
                    (Some(b), Some(t)) => (b as f64) <= t as f64 * HEADROOM,
                    _ => false,
                };
                let to = lower.iter().find(fits).or(lower.first())?;
                Some((to.clone(), why))
            }
        }
    }

    /// Whether the rendition played does not fit the link, and then why and
    /// what the link was measured to carry.
    fn trouble(&mut self, now: Instant, playing: &Rung) -> Trouble {
        let short = match (self.received.fps(), playing.framerate) {
            (Some(got), Some(made)) => got < made * SHORT,
            _ => false,
        };
        if short {
            self.troubled_at = now;
            if self.excess_us > micros(CALM) && self.throughput().is_none() {
                // Short because frames come late: what the link carries is
                // measured from them in a moment.
                return Trouble::Measuring;
            }
        }
        // What the link carries: what arrived while late, or in all when the
        // rendition came short.
        let received = self.received.span(SHORT_SPAN).and(self.received.bps());
        let carried = self.throughput().or(received.filter(|_| short));
        let interval = playing
            .framerate
            .filter(|f| *f > 0.0)
            .map_or(Duration::from_millis(33), |f| {
                Duration::from_secs_f64(1.0 / f)
            });
        let late_us = self.excess_us.max(self.overdue_us(now, interval));
        let why = if self.skipped {
            Why::Skipped
        } else if short {
            Why::Short(carried.unwrap_or(0))
        } else if self.late_groups >= LATE_GROUPS || late_us > micros(FRAME_LATE) {
            Why::Late(u64::try_from(self.worst_us.max(late_us) / 1000).unwrap_or(0))
        } else {
            return Trouble::None;
        };
        Trouble::Down(why, carried)
    }

    /// One step up after a calm spell, unless the relay's estimate says the
    /// rendition above does not fit.
    fn up(
        &mut self,
        now: Instant,
        ladder: &[Rung],
        at: usize,
        estimate: Option<u64>,
    ) -> Option<(Rung, Why)> {
        if now.duration_since(self.troubled_at) > MAX_UP_HOLD {
            // Calm for long after a failed try: try at the first pace again.
            self.up_hold = UP_HOLD;
        }
        let calm = now.duration_since(self.troubled_at) >= self.up_hold
            && now.duration_since(self.switched_at) >= self.up_hold;
        if at == 0 || !calm {
            return None;
        }
        let up = &ladder[at - 1];
        match (estimate, up.bitrate) {
            (Some(e), Some(b)) if (e as f64) < b as f64 * ESTIMATE_MARGIN => None,
            (Some(e), Some(_)) => Some((up.clone(), Why::Room(e))),
            _ => Some((up.clone(), Why::Probe)),
        }
    }

    /// The pad moved to another rendition at `now`.
    pub fn switched(&mut self, now: Instant, why: &Why) {
        if why.is_link_down() {
            if self
                .up_at
                .is_some_and(|up| now.duration_since(up) < FAILED_UP)
            {
                self.up_hold = (self.up_hold * 2).min(MAX_UP_HOLD);
            }
            self.up_at = None;
        } else if matches!(why, Why::Room(_) | Why::Probe) {
            self.up_at = Some(now);
        }
        self.switched_at = now;
        // The new rendition's lateness is its own.
        self.excess_us = 0;
        self.last_frame = None;
        self.late_groups = 0;
        self.worst_us = 0;
        self.skipped = false;
        self.throughput = Throughput::default();
        self.received = Throughput::default();
    }
}

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rung(name: &str, height: u32, kbps: u64) -> Rung {
        Rung {
            name: name.into(),
            height,
            bitrate: Some(kbps * 1000),
            framerate: Some(30.0),
        }
    }

    fn ladder() -> Vec<Rung> {
        allowed(
            &[
                rung("180", 180, 250),
                rung("720", 720, 2500),
                rung("360", 360, 800),
            ],
            Limits::default(),
        )
    }

    #[test]
    fn ladder_is_best_first_and_limited() {
        let names = |l: Vec<Rung>| l.into_iter().map(|r| r.name).collect::<Vec<_>>();
        assert_eq!(names(ladder()), ["720", "360", "180"]);
        let limited = Limits {
            max_height: 400,
            max_bitrate: 0,
        };
        assert_eq!(names(allowed(&ladder(), limited)), ["360", "180"]);
        let limited = Limits {
            max_height: 0,
            max_bitrate: 300_000,
        };
        assert_eq!(names(allowed(&ladder(), limited)), ["180"]);
        // Nothing fits: the lowest still plays.
        let limited = Limits {
            max_height: 100,
            max_bitrate: 0,
        };
        assert_eq!(names(allowed(&ladder(), limited)), ["180"]);
    }

    /// Feeds the `seconds` of 30 fps video (a group a second) whose frames
    /// arrive `lag(t)` µs after they were made; returns the decisions.
    fn run(
        c: &mut Controller,
        start: Instant,
        seconds: std::ops::Range<u64>,
        kbps: u64,
        lag: impl Fn(u64) -> u64,
        current: &str,
        estimate: Option<u64>,
    ) -> Vec<(Rung, Why)> {
        let mut out = Vec::new();
        let frame_bytes = (kbps * 1000 / 8 / 30) as usize;
        for n in seconds.start * 30..seconds.end * 30 {
            let ts = n * 33_333;
            let now = start + Duration::from_micros(ts + lag(ts));
            c.on_frame(now, ts, frame_bytes, n % 30 == 0);
            if let Some(d) = c.decide(now, &ladder(), current, estimate) {
                out.push(d);
            }
        }
        out
    }

    #[test]
    fn a_link_that_keeps_up_stays() {
        let start = Instant::now();
        let mut c = Controller::new(start);
        // Keyframe bursts that drain within their group: 100 ms late at
        // each group's start, on time at its end.
        let burst = |ts: u64| 100_000u64.saturating_sub(ts % 1_000_000);
        assert!(run(&mut c, start, 0..20, 800, burst, "360", Some(900_000)).is_empty());
    }

    #[test]
    fn a_narrower_link_goes_down_to_what_fits() {
        let start = Instant::now();
        let mut c = Controller::new(start);
        // 2.5 Mbit/s on time for 5 s, then through a 700 kbit/s link: each
        // frame waits for everything before it.
        let drop = 5_000_000;
        let queue =
            |ts: u64| 2_000 + ts.saturating_sub(drop) * 2500 / 700 - ts.saturating_sub(drop);
        let decisions = run(&mut c, start, 0..7, 2500, queue, "720", None);
        let (to, why) = decisions.first().expect("no switch down");
        // 80 % of 700 kbit/s: 250 kbit/s fits, 800 does not.
        assert_eq!(to.name, "180", "{decisions:?}");
        assert!(why.is_down(), "{why:?}");
        let rate = c.throughput().unwrap();
        assert!((600_000..800_000).contains(&rate), "{rate}");
    }

    #[test]
    fn frames_dropped_on_the_way_go_down_to_what_arrives() {
        let start = Instant::now();
        let mut c = Controller::new(start);
        // The relay drops every third frame's worth (whole groups, in
        // truth) of a 2.5 Mbit/s rendition; what arrives comes on time.
        let mut decisions = Vec::new();
        for n in 0..90u64 {
            if n % 3 == 2 {
                continue;
            }
            let ts = n * 33_333;
            let now = start + Duration::from_micros(ts + 2_000);
            c.on_frame(now, ts, 2_500_000 / 8 / 30, n % 30 == 0);
            decisions.extend(c.decide(now, &ladder(), "720", None));
        }
        let (to, why) = decisions.first().expect("no switch down");
        // About 1.7 Mbit/s arrives: 800 kbit/s fits.
        assert_eq!(to.name, "360");
        assert!(
            matches!(why, Why::Short(bps) if (1_500_000..1_900_000).contains(bps)),
            "{why:?}"
        );
    }

    #[test]
    fn frames_that_stop_coming_go_down() {
        let start = Instant::now();
        let mut c = Controller::new(start);
        assert!(run(&mut c, start, 0..3, 2500, |_| 2_000, "720", None).is_empty());
        // Nothing more arrives: 400 ms on, the next frame is overdue.
        let later = start + Duration::from_millis(3_400);
        let (to, why) = c
            .decide(later, &ladder(), "720", None)
            .expect("no switch down");
        assert_eq!(to.name, "360");
        assert!(
            matches!(why, Why::Late(ms) if (300..400).contains(&ms)),
            "{why:?}"
        );
    }

    #[test]
    fn a_skip_goes_down_one_without_a_figure() {
        let start = Instant::now();
        let mut c = Controller::new(start);
        c.on_skip(start);
        let (to, why) = c.decide(start, &ladder(), "720", None).unwrap();
        assert_eq!((to.name.as_str(), why), ("360", Why::Skipped));
        // The lowest has nowhere to go.
        c.on_skip(start);
        assert!(c.decide(start, &ladder(), "180", None).is_none());
    }

    #[test]
    fn up_after_calm_unless_the_estimate_says_no() {
        let start = Instant::now();
        let on_time = |_| 2_000;
        let mut c = Controller::new(start);
        // Not before the hold.
        assert!(run(&mut c, start, 0..3, 800, on_time, "360", None).is_empty());
        let d = run(&mut c, start, 3..6, 800, on_time, "360", None);
        assert_eq!(
            d.first().map(|(r, w)| (r.name.as_str(), w)),
            Some(("720", &Why::Probe))
        );
        // An estimate too low for 2.5 Mbit/s keeps it where it is.
        let mut c = Controller::new(start);
        assert!(run(&mut c, start, 0..10, 800, on_time, "360", Some(2_000_000)).is_empty());
        let mut c = Controller::new(start);
        let d = run(&mut c, start, 0..10, 800, on_time, "360", Some(4_000_000));
        assert_eq!(d.first().map(|(r, _)| r.name.as_str()), Some("720"));
    }

    #[test]
    fn a_failed_try_waits_twice_as_long() {
        let start = Instant::now();
        let mut c = Controller::new(start);
        let t = start + Duration::from_secs(5);
        c.switched(t, &Why::Probe);
        c.switched(t + Duration::from_secs(2), &Why::Late(400));
        assert_eq!(c.up_hold, UP_HOLD * 2);
        // A gone rendition goes to the best.
        let (to, why) = c.decide(t, &ladder(), "1080", None).unwrap();
        assert_eq!((to.name.as_str(), why), ("720", Why::Gone));
    }
}
