// SPDX-License-Identifier: MIT OR Apache-2.0

/**
 * SECTION:element-moqsink
 *
 * `moqsink` publishes encoded audio and video as a Media over QUIC broadcast on
 * a MoQ relay: one track per pad plus a `catalog.json` track (the `hang`
 * catalog) that describes them, readable by `moqsrc`, the `moq` CLI and the
 * `@moq/watch` browser player.
 *
 * It takes H.264, H.265, VP8, VP9, AV1, Opus and AAC as they are (no
 * transcoding). Each video keyframe starts a new MoQ group; every audio packet
 * is a group of its own. Timestamps are the buffers' running time, one timeline
 * for all pads. When the relay goes away the element redials by itself for up to
 * `connect-timeout` milliseconds before it fails with an error.
 *
 * ## Example launch lines
 *
 * ```shell
 * gst-launch-1.0 -e videotestsrc is-live=true ! video/x-raw,format=I420,width=1280,height=720 \
 *     ! x264enc tune=zerolatency key-int-max=60 ! h264parse ! moqsink name=sink \
 *       url=https://localhost:4443/anon broadcast=cam tls-disable-verify=true \
 *     audiotestsrc is-live=true ! opusenc ! sink.audio_0
 * ```
 *
 * A WHIP ingest gateway (a browser or OBS publishes over WebRTC, the media
 * goes on to MoQ untouched; `whipserversrc` is in gst-plugins-rs's
 * `rswebrtc` plugin, or run `moq-gateway whip-to-moq`):
 *
 * ```shell
 * gst-launch-1.0 -e whipserversrc name=webrtc signaller::host-addr=http://127.0.0.1:8080 \
 *       stun-server="" video-codecs="<H264>" audio-codecs="<OPUS>" \
 *     moqsink name=moq url=http://127.0.0.1:4443/anon broadcast=live \
 *     webrtc.video_0 ! queue ! h264parse ! moq.video_0 \
 *     webrtc.audio_0 ! queue ! capsfilter caps=audio/x-opus ! moq.audio_0
 * ```
 *
 * Since: 0.1
 */
use gst::glib;
use gst::prelude::*;

mod assemble;
mod imp;
mod pad;
mod paramsets;
mod publish;
mod track;

glib::wrapper! {
    pub struct MoqSink(ObjectSubclass<imp::MoqSink>) @extends gst::Element, gst::Object, @implements gst::ChildProxy;
}

glib::wrapper! {
    /// A request pad of `moqsink`: one MoQ track.
    pub struct MoqSinkPad(ObjectSubclass<pad::MoqSinkPad>) @extends gst::Pad, gst::Object;
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    MoqSinkPad::static_type().mark_as_plugin_api(gst::PluginAPIFlags::empty());
    gst::Element::register(
        Some(plugin),
        "moqsink",
        gst::Rank::NONE,
        MoqSink::static_type(),
    )
}
