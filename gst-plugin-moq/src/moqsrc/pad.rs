// SPDX-License-Identifier: MIT OR Apache-2.0

//! The source pad of `moqsrc`: which MoQ track it plays, for applications
//! that look at a pad and want to know where its data comes from.

use std::sync::{LazyLock, Mutex};

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;

#[derive(Default)]
pub struct MoqSrcPad {
    pub(super) track: Mutex<Option<String>>,
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
            ]
        });
        PROPERTIES.as_ref()
    }

    fn property(&self, _id: usize, _pspec: &glib::ParamSpec) -> glib::Value {
        self.track
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .to_value()
    }
}

impl GstObjectImpl for MoqSrcPad {}
impl PadImpl for MoqSrcPad {}
