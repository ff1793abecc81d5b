// SPDX-License-Identifier: MIT OR Apache-2.0

//! How long a broadcast's groups last, from the video an egress receives:
//! the time from one keyframe to the next, by timestamp.
//!
//! Why: a viewer that joins an egress shared with others cannot have a
//! keyframe of its own when the publisher is on another gateway (moqsrc's
//! rejoin would re-send the group to every viewer), so it waits for the
//! next one. That is acceptable only when groups are short, and they must
//! stay short: the group under way counts as it grows, so a publisher that
//! stops sending keyframes (a browser sends them on request only) makes
//! the egress unshareable within one group's length.

use gst::ClockTime;

/// What was seen of one video stream's keyframes.
#[derive(Debug, Default)]
pub struct GroupLength {
    /// The keyframe that opened the group under way.
    opened: Option<ClockTime>,
    /// The latest timestamp seen in it.
    latest: Option<ClockTime>,
    /// The two groups before it, once closed: a single short group between
    /// two long ones is not the broadcast's rhythm.
    closed: [Option<ClockTime>; 2],
}

impl GroupLength {
    /// A video frame with timestamp `pts`, a keyframe or not.
    pub fn observe(&mut self, pts: Option<ClockTime>, keyframe: bool) {
        let Some(pts) = pts else {
            return;
        };
        match self.opened {
            // moqsrc rejoining a group re-sends it from its keyframe, with
            // the timestamps it had: not a new group.
            Some(opened) if keyframe && pts > opened => {
                self.closed = [Some(pts - opened), self.closed[0]];
                self.opened = Some(pts);
                self.latest = Some(pts);
            }
            Some(_) => self.latest = self.latest.max(Some(pts)),
            None if keyframe => {
                self.opened = Some(pts);
                self.latest = Some(pts);
            }
            // Frames before the first keyframe tell nothing.
            None => {}
        }
    }

    /// The longest of the last two closed groups and the one under way;
    /// `None` before a group has closed.
    pub fn longest(&self) -> Option<ClockTime> {
        let last = self.closed[0]?;
        let open = self
            .latest
            .zip(self.opened)
            .map(|(latest, opened)| latest.saturating_sub(opened));
        Some(
            last.max(self.closed[1].unwrap_or(ClockTime::ZERO))
                .max(open.unwrap_or(ClockTime::ZERO)),
        )
    }

    /// Whether a viewer joining now waits at most `limit` for a keyframe,
    /// as far as the groups so far tell; `None` before a group has closed.
    pub fn within(&self, limit: ClockTime) -> Option<bool> {
        self.longest().map(|longest| longest <= limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(ms: u64) -> Option<ClockTime> {
        Some(ClockTime::from_mseconds(ms))
    }

    /// Frames every 100 ms from `from` to `to` (exclusive), a keyframe
    /// every `group` ms.
    fn feed(groups: &mut GroupLength, from: u64, to: u64, group: u64) {
        for t in (from..to).step_by(100) {
            groups.observe(ms(t), t % group == 0);
        }
    }

    #[test]
    fn unknown_until_a_group_closes() {
        let mut groups = GroupLength::default();
        // Frames before the first keyframe, then one open group.
        groups.observe(ms(100), false);
        feed(&mut groups, 1000, 1900, 1000);
        assert_eq!(groups.longest(), None);
        assert_eq!(groups.within(ClockTime::from_seconds(10)), None);
        groups.observe(ms(2000), true);
        assert_eq!(groups.longest(), ms(1000));
    }

    #[test]
    fn steady_groups_are_their_length() {
        let mut groups = GroupLength::default();
        feed(&mut groups, 0, 10_000, 2000);
        assert_eq!(groups.longest(), ms(2000));
        assert_eq!(groups.within(ClockTime::from_seconds(2)), Some(true));
        assert_eq!(groups.within(ClockTime::from_mseconds(1900)), Some(false));
    }

    #[test]
    fn a_group_that_goes_on_counts_as_it_grows() {
        let mut groups = GroupLength::default();
        feed(&mut groups, 0, 4000, 1000);
        assert_eq!(groups.within(ClockTime::from_seconds(1)), Some(true));
        // The publisher stops sending keyframes.
        for t in (4000..7000).step_by(100) {
            groups.observe(ms(t), t == 4000);
        }
        assert_eq!(groups.longest(), ms(2900));
        assert_eq!(groups.within(ClockTime::from_seconds(2)), Some(false));
    }

    #[test]
    fn one_short_group_between_long_ones_is_not_the_rhythm() {
        let mut groups = GroupLength::default();
        feed(&mut groups, 0, 10_000, 5000);
        groups.observe(ms(10_000), true);
        // A keyframe on request 300 ms into the next group.
        groups.observe(ms(10_300), true);
        groups.observe(ms(10_400), false);
        assert_eq!(groups.longest(), ms(5000));
    }

    #[test]
    fn a_group_sent_again_is_not_a_new_one() {
        let mut groups = GroupLength::default();
        feed(&mut groups, 0, 3500, 1000);
        // moqsrc rejoins: the group from 3000 ms comes again.
        feed(&mut groups, 3000, 3600, 1000);
        assert_eq!(groups.longest(), ms(1000));
        groups.observe(ms(4000), true);
        assert_eq!(groups.longest(), ms(1000));
    }
}
