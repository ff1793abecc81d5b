// SPDX-License-Identifier: MIT OR Apache-2.0

//! The request pad of `moqsink`: its properties and the track it publishes.

use std::sync::{LazyLock, Mutex, MutexGuard};

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;

use super::track::Track;

#[derive(Debug, Clone, Default)]
pub struct PadSettings {
    /// The MoQ track name; generated from the pad order and codec when unset.
    pub track_name: Option<String>,
    /// The rendition's bitrate for the catalog, bits/s; 0: measured.
    pub bitrate: u64,
}

#[derive(Default)]
pub struct MoqSinkPad {
    pub(super) settings: Mutex<PadSettings>,
    track: Mutex<Track>,
    /// The last caps refused in accept-caps (reported once).
    refused: Mutex<Option<gst::Caps>>,
}

impl MoqSinkPad {
    pub fn track(&self) -> MutexGuard<'_, Track> {
        // A poisoned lock only means a panic elsewhere already failed the
        // pipeline; the track itself is still usable.
        self.track
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether `caps` differ from the caps refused last, remembering them.
    pub fn first_refusal(&self, caps: &gst::CapsRef) -> bool {
        let mut refused = self
            .refused
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if refused.as_ref().is_some_and(|r| r.as_ref() == caps) {
            return false;
        }
        *refused = Some(caps.to_owned());
        true
    }

    pub fn settings(&self) -> PadSettings {
        self.settings
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
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
                glib::ParamSpecUInt64::builder("bitrate")
                    .nick("Bitrate")
                    .blurb(
                        "Video: the bitrate (bits/s) the catalog gives this rendition, \
                         for players choosing one; 0 publishes the measured peak",
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
        let mut settings = self
            .settings
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match pspec.name() {
            "track-name" => {
                let name: Option<String> = value.get().unwrap_or_default();
                settings.track_name = name.filter(|n| !n.is_empty());
            }
            "bitrate" => settings.bitrate = value.get().unwrap_or_default(),
            _ => {}
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        match pspec.name() {
            "track-name" => self.settings().track_name.to_value(),
            "bitrate" => self.settings().bitrate.to_value(),
            "track" => self.track().published().map(str::to_owned).to_value(),
            _ => None::<String>.to_value(),
        }
    }
}

impl GstObjectImpl for MoqSinkPad {}
impl PadImpl for MoqSinkPad {}
