// SPDX-License-Identifier: MIT OR Apache-2.0

//! Serve's `POST /whip/<broadcast>?ladder=1`: the publisher's video is
//! decoded once and encoded into the `ladder` preset's renditions
//! (`presets::LADDER`), all published by the session's moqsink, so its
//! viewers get the rendition their link carries (see `viewer_link`).
//!
//! A browser cannot hand the gateway a ladder itself: GStreamer 1.22's
//! WebRTC elements cannot take simulcast layers (README, serve mode). The
//! cost is a decoder and three encoders per such publisher, on the
//! gateway's CPU.
//!
//! The renditions' groups stay aligned: every encoder is fed the same
//! frames from one tee and makes a keyframe every `LADDER_GOP` frames of
//! them, and a keyframe request goes to all (`Session` keeps every
//! rendition's moqsink pad; moqsink does the same with its own requests).
//! Each rendition keeps its picture size when the publisher's changes
//! (a browser scales its camera down and up with its link): the scaler adds
//! borders instead, so a viewer's decoder never sees a size change.

use anyhow::Context;
use gst::prelude::*;

use crate::presets::{self, LADDER, Video};

/// One video pad of `sink` (moqsink) per rendition of the ladder, best
/// first, each carrying its rendition's bitrate for the catalog.
pub fn request_pads(sink: &gst::Element) -> anyhow::Result<Vec<gst::Pad>> {
    LADDER
        .iter()
        .map(|(_, _, kbps)| {
            let target = sink
                .request_pad_simple("video_%u")
                .context("moqsink gave no pad")?;
            target.set_property("bitrate", u64::from(*kbps) * 1000);
            Ok(target)
        })
        .collect()
}

/// Links whipserversrc's video `pad` through a decoder into one encoder per
/// rendition of the ladder, each to its pad of `targets` (from
/// `request_pads`).
pub fn link(
    pipeline: &gst::Pipeline,
    pad: &gst::Pad,
    targets: &[gst::Pad],
    video: Video,
) -> anyhow::Result<()> {
    let decode = gst::parse::bin_from_description(
        &format!(
            "queue ! {} ! {} ! videoconvert",
            video.ingest_chain(),
            video.decoder()
        ),
        true,
    )?
    .upcast::<gst::Element>();
    let split = gst::ElementFactory::make("tee").build()?;
    pipeline.add_many([&decode, &split])?;
    decode.link(&split)?;
    let mut elements = vec![decode.clone(), split.clone()];
    for ((width, height, kbps), target) in LADDER.into_iter().zip(targets) {
        let rung = gst::parse::bin_from_description(
            &presets::ladder_rung(video, width, height, kbps),
            true,
        )?
        .upcast::<gst::Element>();
        pipeline.add(&rung)?;
        split
            .request_pad_simple("src_%u")
            .context("tee gave no pad")?
            .link(&rung.static_pad("sink").context("no sink pad")?)?;
        rung.static_pad("src").context("no src pad")?.link(target)?;
        elements.push(rung);
    }
    for element in elements.iter().rev() {
        element.sync_state_with_parent()?;
    }
    pad.link(&decode.static_pad("sink").context("no sink pad")?)?;
    Ok(())
}
