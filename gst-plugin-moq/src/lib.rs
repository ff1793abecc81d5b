// SPDX-License-Identifier: MIT OR Apache-2.0
#![allow(clippy::non_send_fields_in_send_ty, unused_doc_comments)]

//! GStreamer elements for Media over QUIC (MoQ).
//!
//! * `moqsink` publishes encoded audio and video as a MoQ broadcast: one track per
//!   stream plus a `catalog.json` track in the `hang` format, readable by the MoQ
//!   ecosystem's own players.
//! * `moqsrc` subscribes to a broadcast, reads its catalog and exposes one pad per
//!   rendition with caps that GStreamer decoders and parsers accept.

use gst::glib;

#[cfg(not(feature = "fuzzing"))]
mod catalog;
#[cfg(feature = "fuzzing")]
pub mod catalog;
mod connection;
mod log;
mod moqsink;
mod moqsrc;
mod msf;
mod raw;
mod runtime;
mod stats;
mod uri;
mod vtt;

pub use catalog::{CapsError, SinkFormat, TrackKind, audio_caps, sink_format, video_caps};

fn plugin_init(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    moqsink::register(plugin)?;
    moqsrc::register(plugin)?;
    Ok(())
}

gst::plugin_define!(
    moq,
    env!("CARGO_PKG_DESCRIPTION"),
    plugin_init,
    concat!(env!("CARGO_PKG_VERSION"), "-", env!("COMMIT_ID")),
    // "MIT/X11" is the licence string GStreamer knows for MIT OR Apache-2.0.
    "MIT/X11",
    env!("CARGO_PKG_NAME"),
    env!("CARGO_PKG_NAME"),
    env!("CARGO_PKG_REPOSITORY"),
    env!("BUILD_REL_DATE")
);
