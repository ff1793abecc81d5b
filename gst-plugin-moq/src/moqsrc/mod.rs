// SPDX-License-Identifier: MIT OR Apache-2.0

/**
 * SECTION:element-moqsrc
 *
 * `moqsrc` subscribes to a Media over QUIC broadcast on a relay, reads its
 * `hang` catalog and adds one sometimes pad per rendition (`video_%u`,
 * `audio_%u`) with caps that GStreamer's parsers and decoders accept directly
 * (H.264/H.265 `avc`/`hvc1` with `codec_data` or `byte-stream`, VP8, VP9, AV1,
 * Opus, raw AAC with `codec_data`), and a `text_%u` or `data_%u` pad per text
 * (UTF-8, WebVTT, TTML) or data (KLV, JSON) track. It signals `no-more-pads`
 * after the first catalog.
 *
 * It is a live source: buffers carry running times on one timeline shared by
 * all pads (audio and video stay in sync), delta frames are marked, and the
 * latency query answers with the `latency` property. It waits for a broadcast
 * that is not announced yet, and sends EOS on every pad when the broadcast ends.
 *
 * Keyframe requests from downstream cannot reach a publisher across the
 * relay; with `rejoin-for-keyframes` moqsrc answers them by subscribing to the
 * track again, and the relay re-sends its current group from the keyframe.
 *
 * ## Example launch lines
 *
 * ```shell
 * gst-launch-1.0 moqsrc url=https://localhost:4443/anon broadcast=cam tls-disable-verify=true name=src \
 *     src.video_0 ! queue ! decodebin3 ! videoconvert ! autovideosink \
 *     src.audio_0 ! queue ! decodebin3 ! audioconvert ! autoaudiosink
 * ```
 *
 * A WHEP egress gateway (browsers watch the MoQ broadcast over WebRTC, video
 * untouched; `whepserversink` is in gst-plugins-rs's `rswebrtc` plugin, or
 * run `moq-gateway moq-to-whep`):
 *
 * ```shell
 * gst-launch-1.0 moqsrc name=moq url=http://127.0.0.1:4443/anon broadcast=live \
 *     whepserversink name=webrtc signaller::host-addr=http://127.0.0.1:9090 \
 *       stun-server="" congestion-control=disabled video-caps=video/x-h264 audio-caps=audio/x-opus \
 *     moq.video_0 ! queue ! webrtc.video_0 \
 *     moq.audio_0 ! queue ! decodebin3 caps="audio/x-opus;audio/x-raw" ! queue ! webrtc.audio_0
 * ```
 *
 * Since: 0.1
 */
use gst::glib;
use gst::prelude::*;

/// Which catalog moqsrc follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstMoqSrcCatalog")]
pub enum CatalogFormat {
    /// hang's `catalog.json` where the broadcast has one, else the MSF one.
    #[default]
    #[enum_value(name = "hang catalog.json, else the IETF MSF catalog", nick = "auto")]
    Auto,
    #[enum_value(name = "hang catalog.json", nick = "hang")]
    Hang,
    /// The IETF MSF `catalog`, with LOC (IETF) and CMAF tracks.
    #[enum_value(name = "IETF MSF catalog", nick = "msf")]
    Msf,
}

mod abr;
mod feed;
mod imp;
mod pad;
mod rejoin;
mod session;
mod timeline;
mod wire;

glib::wrapper! {
    pub struct MoqSrc(ObjectSubclass<imp::MoqSrc>) @extends gst::Element, gst::Object, @implements gst::URIHandler;
}

glib::wrapper! {
    /// A source pad of `moqsrc`: one rendition of the broadcast.
    pub struct MoqSrcPad(ObjectSubclass<pad::MoqSrcPad>) @extends gst::Pad, gst::Object;
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    CatalogFormat::static_type().mark_as_plugin_api(gst::PluginAPIFlags::empty());
    MoqSrcPad::static_type().mark_as_plugin_api(gst::PluginAPIFlags::empty());
    gst::Element::register(
        Some(plugin),
        "moqsrc",
        gst::Rank::NONE,
        MoqSrc::static_type(),
    )
}
