// SPDX-License-Identifier: MIT OR Apache-2.0

//! The parts of `moq-gateway`: the gateway presets, a gst-launch-like
//! runner, the WHIP/WHEP serve mode and an embedded MoQ relay. The binary is
//! a thin command line over these; the tests use them directly.

use anyhow::Context;

pub mod auth;
pub mod demo;
pub mod fit;
pub mod group_length;
pub mod ingest_ladder;
pub mod launch;
pub mod metrics;
pub mod presets;
pub mod relay;
pub mod sdp;
pub mod serve;
pub mod tls;
pub mod trace;
pub mod viewer_link;
pub mod webrtcbin;

/// Initializes GStreamer and registers the plugins built into the
/// gateway: `moq` and gst-plugins-rs's `rswebrtc`.
pub fn init() -> anyhow::Result<()> {
    gst::init().context("cannot initialize GStreamer")?;
    gstmoq::plugin_register_static().context("cannot register the moq plugin")?;
    gstrswebrtc::plugin_register_static().context("cannot register the rswebrtc plugin")?;
    gstrsrtp::plugin_register_static().context("cannot register the rsrtp plugin")?;
    Ok(())
}
