// SPDX-License-Identifier: MIT OR Apache-2.0

//! The request pad of `moqsink`: its properties and the per-track state that
//! its streaming thread owns.

use std::sync::{LazyLock, Mutex, MutexGuard};

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;

use super::publish::Publisher;
use crate::catalog::SinkFormat;

#[derive(Debug, Clone, Default)]
pub struct PadSettings {
    /// The MoQ track name; generated from the pad order and codec when unset.
    pub track_name: Option<String>,
}

/// What one pad publishes. Only its own streaming thread and the element's
/// state changes touch it, so pads never wait for each other.
#[derive(Default)]
pub struct PadState {
    /// Creation order of the pad, for generated track names (`0.avc3`, `1.opus`).
    pub index: u32,
    /// Bumped when a caps change needs a new track, so names stay unique.
    pub generation: u32,
    pub segment: Option<gst::FormattedSegment<gst::ClockTime>>,
    pub format: Option<SinkFormat>,
    pub publisher: Option<Publisher>,
    /// Finished tracks, kept until the element stops: dropping an importer
    /// takes its rendition out of the catalog, and a subscriber still reading
    /// the end of the track (the moq CLI's fMP4 export) would drop that end.
    pub retired: Vec<Publisher>,
    /// Joins the pieces of video frames (see `assemble`).
    pub assembler: super::assemble::Assembler,
    pub eos: bool,
    /// Publishing failed; the error is on the bus and buffers are refused.
    pub failed: bool,
    /// Video only: drop delta frames until a keyframe opens a group.
    pub need_keyframe: bool,
    /// Running time of the keyframe that opened the current group.
    pub group_start: Option<gst::ClockTime>,
    /// Running time of the last keyframe request, to send at most one per group.
    pub keyframe_requested: Option<gst::ClockTime>,
    /// Where the last published frame ends (running time plus duration), to
    /// close the last group at EOS.
    pub last_end: Option<gst::ClockTime>,
    /// A keyframe without parameter sets was reported (once per pad).
    pub warned_params: bool,
    /// Running time of the last keyframe request for parameter sets.
    pub params_requested: Option<gst::ClockTime>,
    pub frames: u64,
    pub bytes: u64,
    pub groups: u64,
    pub dropped: u64,
}

impl PadState {
    /// End the track, if one is open. Errors are only worth a log line here:
    /// the track ends either way.
    pub fn finish(&mut self, pad: &super::MoqSinkPad) {
        if let Some(mut publisher) = self.publisher.take()
            && let Err(err) = publisher.finish()
        {
            gst::debug!(
                super::imp::CAT,
                obj = pad,
                "finishing track {}: {err}",
                publisher.name()
            );
        }
    }
}

#[derive(Default)]
pub struct MoqSinkPad {
    pub(super) settings: Mutex<PadSettings>,
    pub(super) state: Mutex<PadState>,
}

impl MoqSinkPad {
    pub fn state(&self) -> MutexGuard<'_, PadState> {
        // A poisoned lock only means a panic elsewhere already failed the
        // pipeline; the state itself is still usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn settings(&self) -> PadSettings {
        self.settings
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

#[glib::object_subclass]
impl ObjectSubclass for MoqSinkPad {
    const NAME: &'static str = "GstMoqSinkPad";
    type Type = super::MoqSinkPad;
    type ParentType = gst::Pad;
}

impl ObjectImpl for MoqSinkPad {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            vec![
                glib::ParamSpecString::builder("track-name")
                    .nick("Track name")
                    .blurb(
                        "Name of the MoQ track this pad publishes; by default the pad \
                         order and codec, e.g. 0.avc3 or 1.opus",
                    )
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("track")
                    .nick("Current track")
                    .blurb("Name of the MoQ track being published, once caps are known")
                    .read_only()
                    .build(),
            ]
        });
        PROPERTIES.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        if pspec.name() == "track-name" {
            let name: Option<String> = value.get().unwrap_or_default();
            self.settings
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .track_name = name.filter(|n| !n.is_empty());
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        match pspec.name() {
            "track-name" => self.settings().track_name.to_value(),
            "track" => self
                .state()
                .publisher
                .as_ref()
                .map(|p| p.name().to_string())
                .to_value(),
            _ => None::<String>.to_value(),
        }
    }
}

impl GstObjectImpl for MoqSinkPad {}
impl PadImpl for MoqSinkPad {}
