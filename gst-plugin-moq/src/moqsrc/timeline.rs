// SPDX-License-Identifier: MIT OR Apache-2.0

//! Publisher timestamps onto our running time: one mapping for all pads, so
//! audio and video keep the spacing the publisher gave them. Pure code, no
//! I/O: the caller passes the running time of each frame's arrival.
//!
//! The mapping is running time = timestamp + offset, where the offset is the
//! smallest (arrival - timestamp) seen recently:
//!
//! - Why the smallest: a subscriber that joins mid-group first gets the
//!   group's older frames in a burst (decoders need them from the keyframe).
//!   Anchoring on the first of them would stamp every later frame as far in
//!   the future as that frame was old, and the stream would play that much
//!   behind live for good. The frame that arrived soonest after its
//!   timestamp is the best guess of the live edge; the burst then lands in
//!   the past (decoded, and dropped or hurried by a synchronising sink) and
//!   live frames play on time. A faster frame lowers the offset at once.
//! - Why recently: the publisher's clock is not ours. When it runs slow (tens
//!   of ppm are common, seconds a day), every frame arrives a little later
//!   than the last minimum; a minimum kept forever would make frames late
//!   beyond any latency budget after hours. So when every frame of the last
//!   two windows arrived later than the mapping, the offset rises towards
//!   their minimum, slewed at `SLEW_PPM` (far above clock drift, far below
//!   anything a sink would notice). Rising only delays timestamps, so a
//!   track's timestamps still only grow; a drop can make one track's next
//!   timestamp go below its last, which the pad clamps.

use std::sync::Mutex;

/// How long one window of the recent minimum lasts, in µs.
const WINDOW_US: i64 = 5_000_000;
/// How fast the offset may rise: µs per second of running time.
const SLEW_PPM: i64 = 1_000;

/// A running time in µs, as a signed number for differences.
fn signed_us(t: gst::ClockTime) -> i64 {
    i64::try_from(t.useconds()).unwrap_or(i64::MAX)
}

#[derive(Debug, Clone, Copy)]
struct Mapping {
    /// Running time minus publisher timestamp, in µs.
    offset: i64,
    /// When the current window started, and the smallest offset seen in it.
    window_start: i64,
    window_min: i64,
    /// The smallest offset of the window before, once one has ended.
    previous_min: Option<i64>,
    /// Running time of the last measurement, for the slew.
    last_now: i64,
}

impl Mapping {
    fn new(now: i64, seen: i64) -> Self {
        Self {
            offset: seen,
            window_start: now,
            window_min: seen,
            previous_min: None,
            last_now: now,
        }
    }

    fn measure(&mut self, now: i64, seen: i64) {
        if now.saturating_sub(self.window_start) >= WINDOW_US {
            self.previous_min = Some(self.window_min);
            self.window_start = now;
            self.window_min = seen;
        } else {
            self.window_min = self.window_min.min(seen);
        }
        if seen < self.offset {
            self.offset = seen;
        } else if let Some(previous) = self.previous_min {
            let recent = previous.min(self.window_min);
            if recent > self.offset {
                let elapsed = now.saturating_sub(self.last_now).max(0);
                let step = elapsed.saturating_mul(SLEW_PPM) / 1_000_000;
                self.offset = recent.min(self.offset.saturating_add(step));
            }
        }
        self.last_now = now;
    }
}

#[derive(Default)]
pub struct Timeline {
    mapping: Mutex<Option<Mapping>>,
}

impl Timeline {
    /// The running time to play `timestamp_us` at, given the running time
    /// now (`None` without a clock: then it is not a measurement).
    pub fn running_time(&self, timestamp_us: u64, now: Option<gst::ClockTime>) -> gst::ClockTime {
        let ts = i64::try_from(timestamp_us).unwrap_or(i64::MAX);
        let mut mapping = self
            .mapping
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(now) = now.map(signed_us) {
            let seen = now.saturating_sub(ts);
            match mapping.as_mut() {
                Some(m) => m.measure(now, seen),
                None => *mapping = Some(Mapping::new(now, seen)),
            }
        }
        let offset = mapping.map_or(0, |m| m.offset);
        let at = ts.saturating_add(offset).max(0);
        gst::ClockTime::from_useconds(at as u64)
    }

    /// The next frame anchors the mapping again.
    pub fn reset(&self) {
        *self
            .mapping
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> gst::ClockTime {
        gst::ClockTime::from_mseconds(v)
    }

    #[test]
    fn a_burst_of_old_frames_does_not_push_live_frames_back() {
        let t = Timeline::default();
        // Joined 2 s into a group: frames 0..2000 ms arrive at once, at 5 s.
        assert_eq!(t.running_time(0, Some(ms(5000))), ms(5000));
        assert_eq!(t.running_time(1_000_000, Some(ms(5001))), ms(5001));
        assert_eq!(t.running_time(2_000_000, Some(ms(5002))), ms(5002));
        // Live from here: a frame 33 ms later arrives 33 ms later and plays
        // then, not 2 s in the future.
        assert_eq!(t.running_time(2_033_000, Some(ms(5035))), ms(5035));
        // A frame that is late (jitter) keeps the mapping: it is late.
        assert_eq!(t.running_time(2_066_000, Some(ms(5090))), ms(5068));
        // Without a clock the mapping is used, not changed.
        assert_eq!(t.running_time(2_100_000, None), ms(5102));
        t.reset();
        assert_eq!(t.running_time(10, Some(ms(7))), ms(7));
    }

    /// Frames every 20 ms for `seconds`, each arriving at `arrival(i, ts)`
    /// (µs of our running time); returns how late each one was played (µs),
    /// checking that timestamps never went back.
    fn lateness(seconds: i64, arrival: impl Fn(i64, i64) -> i64) -> Vec<i64> {
        let t = Timeline::default();
        let mut last = 0u64;
        (0..seconds * 50)
            .map(|i| {
                let ts = i * 20_000;
                let now = arrival(i, ts);
                let pts =
                    t.running_time(ts as u64, Some(gst::ClockTime::from_useconds(now as u64)));
                assert!(pts.useconds() >= last, "went back at frame {i}");
                last = pts.useconds();
                now - pts.useconds() as i64
            })
            .collect()
    }

    /// A publisher clock `ppm` slower (negative: faster) than ours, each
    /// frame `jitter(i)` µs after the fastest path: how late the last
    /// second's frames were (min, max).
    fn drift(seconds: i64, ppm: i64, jitter: impl Fn(i64) -> i64) -> (i64, i64) {
        // Our clock runs (1 + ppm) as fast as the publisher's.
        let late = lateness(seconds, |i, ts| {
            ts + ts * ppm / 1_000_000 + 50_000 + jitter(i)
        });
        let last = &late[late.len() - 50..];
        (*last.iter().min().unwrap(), *last.iter().max().unwrap())
    }

    #[test]
    fn a_slow_publisher_clock_is_followed() {
        // 200 ppm slow for an hour: 720 ms of drift. Frames stay on time
        // (within the jitter), they do not end up 720 ms late.
        let (min, max) = drift(3600, 200, |i| (i * 7919) % 5_000);
        assert!(min >= 0 && max < 10_000, "late by {min}..{max} µs");
    }

    #[test]
    fn a_fast_publisher_clock_is_followed() {
        let (min, max) = drift(600, -200, |i| (i * 7919) % 5_000);
        assert!(min >= 0 && max < 10_000, "late by {min}..{max} µs");
    }

    #[test]
    fn jitter_alone_does_not_move_the_mapping() {
        // No drift, up to 30 ms jitter: each frame is late by its own
        // jitter over the fastest one, no more.
        let (min, max) = drift(120, 0, |i| (i * 7919) % 30_000);
        assert!(min >= 0 && max < 30_000, "late by {min}..{max} µs");
    }

    #[test]
    fn a_lasting_extra_delay_is_absorbed_slowly() {
        // The path gets 100 ms slower after 10 s and stays so: frames are
        // late at first, then the mapping rises at 1 ms/s (slewed).
        let late_at = lateness(200, |i, ts| {
            let extra = if i >= 10 * 50 { 100_000 } else { 0 };
            ts + 50_000 + extra
        });
        // Right after the change: 100 ms late; 20 s on, less; at 200 s, on time.
        assert_eq!(late_at[10 * 50], 100_000);
        assert!(late_at[40 * 50] < 90_000, "{}", late_at[40 * 50]);
        assert!(late_at[200 * 50 - 1] < 1_000, "{}", late_at[200 * 50 - 1]);
    }
}
