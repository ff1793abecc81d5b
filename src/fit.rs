// SPDX-License-Identifier: MIT OR Apache-2.0

//! Which rendition a WHEP viewer's link fits, from what the gateway's
//! congestion control (whepserversink's Google congestion control, the
//! `rtpgccbwe` estimator fed by the viewer's transport-wide feedback)
//! estimates the link carries. The answer is a `max-bitrate` for the
//! viewer's moqsrc, which then plays the best rendition under it and moves
//! at a group boundary.
//!
//! Down is at once: an estimate under what the rendition played needs means
//! the link is queueing or losing. Up waits for the estimate to hold room
//! for the next rendition a while (the estimator probes with padding, so it
//! can rise above what is sent), so a passing spike does not flap.

use std::time::{Duration, Instant};

/// What a viewer's audio (Opus) and the RTP, SRTP and feedback around both
/// streams take from the link besides the video's own bitrate.
pub const AUDIO_AND_OVERHEAD: u64 = 120_000;
/// How much more than a rendition's bitrate the video's share of the
/// estimate must be to go up to it.
const UP_HEADROOM: f64 = 1.15;
/// How far under a rendition's bitrate the video's share of the estimate
/// may dip before going down: the estimate wanders a little around what is
/// sent; a link that does not carry it brings it much lower (the estimator
/// drops to 85 % of what arrives when delay builds up).
const DOWN_MARGIN: f64 = 0.9;
/// How long the estimate must leave that room before going up.
const UP_HOLD: Duration = Duration::from_secs(3);
/// A down this soon after an up means the up was wrong: the next one
/// waits twice as long, up to `MAX_UP_HOLD`.
const FAILED_UP: Duration = Duration::from_secs(10);
const MAX_UP_HOLD: Duration = Duration::from_secs(48);

/// One viewer's rendition choice.
#[derive(Debug)]
pub struct Fit {
    /// The video renditions' bitrates, highest first.
    ladder: Vec<u64>,
    /// The rung played (an index into `ladder`).
    at: usize,
    /// Since when the estimate has left room for the rung above.
    room_since: Option<Instant>,
    /// How long that room must last.
    up_hold: Duration,
    /// When the last up was.
    up_at: Option<Instant>,
}

impl Fit {
    /// A choice among `bitrates` (any order), starting on the highest: a
    /// viewer is given the best until its link says otherwise. None when
    /// there is nothing to choose between.
    pub fn new(bitrates: &[u64]) -> Option<Self> {
        let mut ladder = bitrates.to_vec();
        ladder.sort_unstable_by(|a, b| b.cmp(a));
        ladder.dedup();
        (ladder.len() > 1).then_some(Self {
            ladder,
            at: 0,
            room_since: None,
            up_hold: UP_HOLD,
            up_at: None,
        })
    }

    /// The bitrate of the rendition played now.
    pub fn current(&self) -> u64 {
        self.ladder[self.at]
    }

    /// What the whole viewer stream may need: the best rendition with the
    /// room to go up to it, its audio and overhead (the estimator's
    /// ceiling, so its probing padding stays within what could be used).
    pub fn ceiling(&self) -> u64 {
        (self.ladder[0] as f64 * UP_HEADROOM) as u64 + AUDIO_AND_OVERHEAD
    }

    /// A new estimate of the link (bits/s) at `now`: the bitrate to play up
    /// to, when the rendition should change.
    pub fn estimate(&mut self, now: Instant, bps: u64) -> Option<u64> {
        let video = bps.saturating_sub(AUDIO_AND_OVERHEAD);
        if (video as f64) < self.current() as f64 * DOWN_MARGIN {
            self.room_since = None;
            // The best rung the estimate carries, or the lowest.
            let to = self
                .ladder
                .iter()
                .position(|&b| b <= video)
                .unwrap_or(self.ladder.len() - 1);
            if self
                .up_at
                .take()
                .is_some_and(|up| now.duration_since(up) < FAILED_UP)
            {
                self.up_hold = (self.up_hold * 2).min(MAX_UP_HOLD);
            }
            return self.go(to);
        }
        let up = self.at.checked_sub(1)?;
        if (video as f64) < self.ladder[up] as f64 * UP_HEADROOM {
            self.room_since = None;
            return None;
        }
        let since = *self.room_since.get_or_insert(now);
        if now.duration_since(since) < self.up_hold {
            return None;
        }
        self.room_since = None;
        self.up_at = Some(now);
        self.go(up)
    }

    fn go(&mut self, to: usize) -> Option<u64> {
        (to != self.at).then(|| {
            self.at = to;
            self.current()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LADDER: [u64; 3] = [250_000, 2_500_000, 800_000];

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    #[test]
    fn one_rendition_is_no_choice() {
        assert!(Fit::new(&[800_000]).is_none());
        assert!(Fit::new(&[800_000, 800_000]).is_none());
    }

    #[test]
    fn starts_on_the_best_and_stays_while_the_link_carries_it() {
        let t = Instant::now();
        let mut fit = Fit::new(&LADDER).unwrap();
        assert_eq!(fit.current(), 2_500_000);
        assert_eq!(fit.ceiling(), 2_995_000);
        for i in 0..20 {
            assert_eq!(fit.estimate(t + secs(i as f64), 3_000_000), None);
        }
        // Wandering a little under what is sent is no reason to go down.
        assert_eq!(fit.estimate(t + secs(21.0), 2_500_000), None);
        assert_eq!(fit.estimate(t + secs(22.0), 2_000_000), Some(800_000));
    }

    #[test]
    fn down_at_once_to_what_the_estimate_carries() {
        let t = Instant::now();
        let mut fit = Fit::new(&LADDER).unwrap();
        // 1.2 Mbit/s: 800 kbit/s fits, in one step.
        assert_eq!(fit.estimate(t, 1_200_000), Some(800_000));
        // Under everything: the lowest.
        assert_eq!(fit.estimate(t + secs(0.1), 200_000), Some(250_000));
        assert_eq!(fit.estimate(t + secs(0.2), 100_000), None);
    }

    #[test]
    fn up_one_step_after_the_room_held() {
        let t = Instant::now();
        let mut fit = Fit::new(&LADDER).unwrap();
        assert_eq!(fit.estimate(t, 300_000), Some(250_000));
        // Room for 800k (x1.15 + audio) but not for long enough.
        assert_eq!(fit.estimate(t + secs(1.0), 1_200_000), None);
        assert_eq!(fit.estimate(t + secs(2.0), 1_200_000), None);
        // A dip restarts the wait.
        assert_eq!(fit.estimate(t + secs(2.5), 900_000), None);
        assert_eq!(fit.estimate(t + secs(3.0), 1_200_000), None);
        assert_eq!(fit.estimate(t + secs(5.9), 1_200_000), None);
        assert_eq!(fit.estimate(t + secs(6.1), 5_000_000), Some(800_000));
        // One step at a time, each after its own wait.
        assert_eq!(fit.estimate(t + secs(6.2), 5_000_000), None);
        assert_eq!(fit.estimate(t + secs(9.3), 5_000_000), Some(2_500_000));
    }

    #[test]
    fn an_up_that_fails_makes_the_next_wait_longer() {
        let t = Instant::now();
        let mut fit = Fit::new(&LADDER).unwrap();
        assert_eq!(fit.estimate(t, 300_000), Some(250_000));
        assert_eq!(fit.estimate(t + secs(1.0), 1_200_000), None);
        assert_eq!(fit.estimate(t + secs(4.1), 1_200_000), Some(800_000));
        // Down again 1 s later: that up was wrong.
        assert_eq!(fit.estimate(t + secs(5.1), 400_000), Some(250_000));
        assert_eq!(fit.estimate(t + secs(6.0), 1_200_000), None);
        assert_eq!(fit.estimate(t + secs(9.1), 1_200_000), None);
        assert_eq!(fit.estimate(t + secs(12.1), 1_200_000), Some(800_000));
        // An up that holds for longer than FAILED_UP is not held against it.
        assert_eq!(fit.estimate(t + secs(30.0), 400_000), Some(250_000));
        assert_eq!(fit.estimate(t + secs(31.0), 1_200_000), None);
        assert_eq!(fit.estimate(t + secs(37.1), 1_200_000), Some(800_000));
    }

    #[test]
    fn room_just_short_of_the_headroom_keeps_it_down() {
        let t = Instant::now();
        let mut fit = Fit::new(&LADDER).unwrap();
        assert_eq!(fit.estimate(t, 1_000_000), Some(800_000));
        // 2.5M x 1.15 + audio is 2.995M.
        for i in 1..10 {
            assert_eq!(fit.estimate(t + secs(i as f64), 2_900_000), None);
        }
    }
}
