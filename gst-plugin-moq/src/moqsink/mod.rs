// SPDX-License-Identifier: MIT OR Apache-2.0

/**
 * SECTION:element-moqsink
 *
 * `moqsink` publishes encoded audio and video as a Media over QUIC broadcast on
 * a MoQ relay: one track per pad plus two catalog tracks that describe them:
 * `catalog.json` (the `hang` catalog), read by `moqsrc`, the `moq` CLI,
 * moq-gst and the `@moq/watch` browser player, and `catalog` (the IETF MSF
 * catalog, draft-ietf-moq-msf), read by IETF MoQT media players such as
 * aiomoqt's. The MSF catalog lists a twin of each track in LOC
 * (draft-ietf-moq-loc), fed only while someone subscribes to it.
 * `catalogs` picks one or both.
 *
 * It takes H.264, H.265, VP8, VP9, AV1, Opus and AAC as they are (no
 * transcoding), and timed text (UTF-8, WebVTT) on `text_%u` pads and timed
 * data (KLV, JSON) on `data_%u` pads, listed in the catalog's `text`,
 * `binary` and `json` sections. Each video keyframe starts a new MoQ group; every audio packet
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
mod catalogs;
mod imp;
mod pad;
mod paramsets;
mod publish;
mod seqheader;
mod track;

/// How the hang catalog's tracks package their frames. (The MSF catalog's
/// twins are always IETF LOC; see `crate::msf`.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstMoqContainer")]
pub enum Container {
    /// hang's own: a varint timestamp in microseconds, then the payload.
    /// Every hang reader takes it.
    #[default]
    #[enum_value(name = "Legacy hang container: every hang reader", nick = "legacy")]
    Legacy,
    /// The MoQ project's LOC framing (moq-loc): a property block with the
    /// timestamp, then the payload. Read by hang readers built on moq-mux
    /// 0.10 (moq-gst 0.4.20, the moq CLI 0.14) and @moq/watch 0.4.
    #[enum_value(
        name = "LOC as the MoQ project's crates frame it (moq-loc)",
        nick = "loc"
    )]
    Loc,
}

/// Which catalogs a broadcast carries, and so which readers find it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstMoqCatalogs")]
pub enum Catalogs {
    /// Both: hang's for the MoQ project's players, MSF for IETF ones.
    #[default]
    #[enum_value(name = "hang catalog.json and IETF MSF catalog", nick = "both")]
    Both,
    #[enum_value(name = "hang catalog.json only", nick = "hang")]
    Hang,
    /// The MSF catalog and its LOC tracks only.
    #[enum_value(name = "IETF MSF catalog (LOC tracks) only", nick = "msf")]
    Msf,
}

impl From<Container> for hang::catalog::Container {
    fn from(container: Container) -> Self {
        match container {
            Container::Loc => Self::Loc,
            Container::Legacy => Self::Legacy,
        }
    }
}

glib::wrapper! {
    pub struct MoqSink(ObjectSubclass<imp::MoqSink>) @extends gst::Element, gst::Object, @implements gst::ChildProxy, gst::URIHandler;
}

glib::wrapper! {
    /// A request pad of `moqsink`: one MoQ track.
    pub struct MoqSinkPad(ObjectSubclass<pad::MoqSinkPad>) @extends gst::Pad, gst::Object;
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    Catalogs::static_type().mark_as_plugin_api(gst::PluginAPIFlags::empty());
    Container::static_type().mark_as_plugin_api(gst::PluginAPIFlags::empty());
    MoqSinkPad::static_type().mark_as_plugin_api(gst::PluginAPIFlags::empty());
    gst::Element::register(
        Some(plugin),
        "moqsink",
        gst::Rank::NONE,
        MoqSink::static_type(),
    )
}
