// SPDX-License-Identifier: MIT OR Apache-2.0

//! The source pad of `moqsrc`: which MoQ track it plays and which it may
//! move between, for applications that look at a pad and want to know where
//! its data comes from.

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, LazyLock, Mutex};

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;

use super::abr::Rung;
use super::rejoin::Rejoin;

#[derive(Default)]
pub struct MoqSrcPad {
    pub(super) track: Mutex<Option<String>>,
    /// The renditions this pad may play, best first, as the catalog has
    /// them, with their caps.
    renditions: Mutex<Vec<(Rung, gst::Caps)>>,
    /// Keeps this pad's timestamps continuous over publisher jumps.
    pub(super) continuity: Mutex<Continuity>,
    /// The last timestamp pushed: none goes below it.
    last_pts: Mutex<Option<gst::ClockTime>>,
    /// Keyframe requests this pad answers by subscribing again.
    pub(super) rejoin: Arc<Rejoin>,
    /// A WebVTT pad: what it gives is a WebVTT file (see `crate::vtt`).
    pub(super) vtt: AtomicBool,
    /// The WebVTT header went out (once per pad, before the first cue).
    pub(super) vtt_header_sent: AtomicBool,
    /// Into the pad's streaming thread, behind its track's frames: where an
    /// EOS sent to the element (`gst-launch-1.0 -e`, an application
    /// ending the stream) goes. Weak: the channel closes when its reader
    /// lets go of it, which is how the streaming thread learns to stop.
    pub(super) items: Mutex<Option<tokio::sync::mpsc::WeakSender<super::feed::Item>>>,
}

impl MoqSrcPad {
    /// The renditions this pad may play now; notifies `renditions` when
    /// they changed.
    pub(super) fn set_renditions(&self, rungs: Vec<(Rung, gst::Caps)>) {
        let changed = {
            let mut now = self
                .renditions
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let changed = *now != rungs;
            *now = rungs;
            changed
        };
        if changed {
            self.obj().notify("renditions");
        }
    }

    /// `renditions` as the property gives it: a structure per rendition.
    fn renditions_value(&self) -> gst::Array {
        let rungs = self
            .renditions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        rungs
            .iter()
            .map(|(r, caps)| {
                gst::Structure::builder("rendition")
                    .field("track", r.name.as_str())
                    .field("caps", caps)
                    .field_if(
                        "height",
                        i32::try_from(r.height).unwrap_or(i32::MAX),
                        r.height > 0,
                    )
                    .field_if_some("bitrate", r.bitrate)
                    .field_if_some("framerate", r.framerate)
                    .build()
                    .to_send_value()
            })
            .collect()
    }

    /// `pts`, or the last one pushed if that is later: the shared timeline
    /// can move earlier when another track shows a faster path (see
    /// `Timeline`), and a pad's timestamps must never go back.
    pub(super) fn monotonic(&self, pts: gst::ClockTime) -> gst::ClockTime {
        let mut last = self
            .last_pts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let pts = last.map_or(pts, |l| pts.max(l));
        *last = Some(pts);
        pts
    }

    /// The track starts over from an earlier frame (a rejoin): the next
    /// timestamps may go back, and the publisher's jumps are judged afresh.
    pub(super) fn start_over(&self) {
        *self
            .last_pts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
        self.continuity
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .reset();
    }
}

/// A publisher's timestamps that jump by more than this (back or forward)
/// between two frames of one track are a broken clock or a restart, not
/// media: playing them as they are would stall a synchronising sink for
/// hours or throw frames away as late.
pub const MAX_STEP_US: u64 = 10_000_000;
/// Where a frame after a jump lands: just after the one before it.
const STEP_AFTER_JUMP_US: u64 = 1_000;

/// Per-track timestamp repair: after a jump, later frames are shifted by the
/// same amount, so their spacing is the publisher's and the track goes on
/// where it was.
#[derive(Default, Debug)]
pub struct Continuity {
    last_us: Option<u64>,
    shift_us: i128,
}

impl Continuity {
    /// The timestamp to play `timestamp_us` at, and the jump (in µs, signed)
    /// if this frame is where the publisher's clock jumped.
    pub fn next(&mut self, timestamp_us: u64) -> (u64, Option<i128>) {
        let mut jumped = None;
        if let Some(last) = self.last_us {
            let step = i128::from(timestamp_us) - i128::from(last);
            if step.unsigned_abs() > u128::from(MAX_STEP_US) {
                self.shift_us -= step - i128::from(STEP_AFTER_JUMP_US);
                jumped = Some(step);
            }
        }
        self.last_us = Some(timestamp_us);
        let played = (i128::from(timestamp_us) + self.shift_us).clamp(0, i128::from(u64::MAX));
        (played as u64, jumped)
    }

    /// Forget the history (a new subscription: the timeline starts over).
    pub fn reset(&mut self) {
        *self = Continuity::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steady_timestamps_are_untouched() {
        let mut c = Continuity::default();
        for ts in [0, 33_333, 66_666, 100_000] {
            assert_eq!(c.next(ts), (ts, None));
        }
    }

    #[test]
    fn a_pad_never_goes_back() {
        gst::init().unwrap();
        let pad = glib::Object::builder::<super::super::MoqSrcPad>()
            .property("direction", gst::PadDirection::Src)
            .build();
        let ms = gst::ClockTime::from_mseconds;
        assert_eq!(pad.imp().monotonic(ms(10)), ms(10));
        assert_eq!(pad.imp().monotonic(ms(4)), ms(10));
        assert_eq!(pad.imp().monotonic(ms(12)), ms(12));
    }

    #[test]
    fn jumps_are_absorbed() {
        let hours = 3 * 3600 * 1_000_000;
        let mut c = Continuity::default();
        assert_eq!(c.next(1_000_000), (1_000_000, None));
        // Forward by three hours: played 1 ms after the last frame.
        let (played, jump) = c.next(1_000_000 + hours);
        assert_eq!(played, 1_001_000);
        assert_eq!(jump, Some(i128::from(hours)));
        // Later frames keep the publisher's spacing.
        assert_eq!(c.next(1_033_333 + hours), (1_034_333, None));
        // Back by hours (to 0): again just after.
        let (played, jump) = c.next(0);
        assert_eq!(played, 1_035_333);
        assert!(jump.unwrap() < 0);
        assert_eq!(c.next(20_000).0, 1_055_333);
        c.reset();
        assert_eq!(c.next(5), (5, None));
    }
}

#[glib::object_subclass]
impl ObjectSubclass for MoqSrcPad {
    const NAME: &'static str = "GstMoqSrcPad";
    type Type = super::MoqSrcPad;
    type ParentType = gst::Pad;
}

impl ObjectImpl for MoqSrcPad {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            vec![
                glib::ParamSpecString::builder("track")
                    .nick("Track")
                    .blurb("Name of the MoQ track (catalog rendition) this pad plays")
                    .read_only()
                    .build(),
                gst::ParamSpecArray::builder("renditions")
                    .nick("Renditions")
                    .blurb(
                        "The catalog renditions this pad may play, best first, each a structure \
                         with its track and caps",
                    )
                    .read_only()
                    .build(),
            ]
        });
        PROPERTIES.as_ref()
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        match pspec.name() {
            "renditions" => self.renditions_value().to_value(),
            _ => self
                .track
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone()
                .to_value(),
        }
    }
}

impl GstObjectImpl for MoqSrcPad {}
impl PadImpl for MoqSrcPad {}
