// SPDX-License-Identifier: MIT OR Apache-2.0

//! One MoQ track fed from one sink pad, through the `moq-mux` importer of its
//! codec. The importer writes the container and keeps the catalog rendition
//! up to date; this module only picks it and hands it whole frames.

use bytes::Bytes;
use moq_mux::codec;

use super::paramsets::{self, ParamSets};
use super::seqheader::SequenceHeader;
use crate::catalog::{SinkFormat, VideoHints};

/// Why a frame was not published.
#[derive(Debug)]
pub enum WriteError {
    /// A delta frame with no group open (a start or restart mid-GOP): skip it
    /// and wait for a keyframe.
    NeedKeyframe,
    /// A timestamp below what the track already published.
    Rewind,
    /// A keyframe without its in-band configuration (byte-stream parameter
    /// sets, an AV1 sequence header), and none seen before to repeat:
    /// undecodable for anyone who joins at it. Names what is missing.
    NoParameterSets(&'static str),
    Other(moq_mux::Error),
}

impl From<moq_mux::Error> for WriteError {
    fn from(err: moq_mux::Error) -> Self {
        match err {
            moq_mux::Error::MissingKeyframe(_) => WriteError::NeedKeyframe,
            moq_mux::Error::TimestampRewind(_) => WriteError::Rewind,
            other => WriteError::Other(other),
        }
    }
}

enum Importer {
    H264(codec::h264::Import),
    H265(codec::h265::Import),
    Av1(codec::av1::Import),
    Vp8(codec::vp8::Import),
    Vp9(codec::vp9::Import),
    Opus(codec::opus::Import),
    Aac(codec::aac::Import),
    /// Timed text in the element's container (a cue's timestamp travels in
    /// it, as a media frame's does).
    Text(TimedTrack<moq_mux::catalog::hang::Container, hang::catalog::TextConfig>),
    /// KLV, listed in the catalog's `binary` section.
    Binary(TimedTrack<crate::raw::Raw, hang::catalog::BinaryConfig>),
    /// JSON, listed in the catalog's `json` section.
    Json(TimedTrack<crate::raw::Raw, hang::catalog::JsonConfig>),
}

/// A text or data track: one group per buffer, each the latest value (the
/// catalog's `snapshot` mode for data).
type TimedTrack<C, R> = moq_mux::container::Producer<C, R>;

/// Decoder configuration that has to travel in band on every keyframe (the
/// hang catalog carries none for these formats), put there when a keyframe
/// lacks it: a subscriber joins at a keyframe and has nothing before it.
enum InBand {
    /// Byte-stream H.264/H.265: the parameter sets.
    Nal(ParamSets),
    /// AV1: the sequence header.
    Av1(SequenceHeader),
    /// WebVTT: the file header, which every frame (a self-contained
    /// segment) carries.
    Vtt(crate::vtt::Header),
}

impl InBand {
    fn of(format: &SinkFormat) -> Option<Self> {
        match format {
            SinkFormat::H264 { codec_data: None } => {
                Some(Self::Nal(ParamSets::new(paramsets::Codec::H264)))
            }
            SinkFormat::H265 { codec_data: None } => {
                Some(Self::Nal(ParamSets::new(paramsets::Codec::H265)))
            }
            SinkFormat::Av1 { codec_data } => {
                let mut headers = SequenceHeader::default();
                if let Some(av1c) = codec_data {
                    headers.seed(av1c);
                }
                Some(Self::Av1(headers))
            }
            SinkFormat::WebVtt => Some(Self::Vtt(crate::vtt::Header::default())),
            _ => None,
        }
    }

    /// The keyframe with its configuration, or what it lacks; `None` when
    /// the buffer was configuration only (a WebVTT header), kept for later.
    fn complete(&mut self, keyframe: Bytes) -> Result<Option<Bytes>, WriteError> {
        match self {
            Self::Nal(params) => params
                .complete(keyframe)
                .map(Some)
                .map_err(|_| WriteError::NoParameterSets(params.codec().names())),
            Self::Av1(headers) => headers
                .complete(keyframe)
                .map(Some)
                .map_err(|_| WriteError::NoParameterSets("a sequence header")),
            Self::Vtt(header) => Ok(header.segment(keyframe)),
        }
    }
}

/// Whether the caps alone give the catalog rendition its codec; if not,
/// the first keyframe does (moq-mux reads it from the parameters inside).
fn described_by_caps(format: &SinkFormat, hints: &VideoHints) -> bool {
    match format {
        SinkFormat::H264 { codec_data: None } => hints.h264.is_some(),
        SinkFormat::H265 { codec_data: None }
        | SinkFormat::Vp9
        | SinkFormat::Av1 { codec_data: None } => false,
        _ => true,
    }
}

/// A published track.
pub struct Publisher {
    importer: Importer,
    name: String,
    in_band: Option<InBand>,
    /// Whether anyone (the relay, for its subscribers) reads the track.
    demand: moq_net::track::Demand,
    /// The rendition is in the catalog: from the caps, or (VP9, byte-stream
    /// H.265, AV1 without `av1C`) once the first keyframe told the codec.
    in_catalog: bool,
}

fn video_hint(
    hints: &VideoHints,
    container: &hang::catalog::Container,
) -> moq_mux::catalog::VideoHint {
    let mut hint = moq_mux::catalog::VideoHint::default();
    hint.container = container.clone();
    hint.coded_width = hints.width;
    hint.coded_height = hints.height;
    hint.framerate = hints.framerate;
    hint.bitrate = hints.bitrate;
    // Frames leave as soon as they are encoded: ask decoders not to buffer.
    hint.optimize_for_latency = Some(true);
    hint
}

/// The `moq-mux` importer of `format`'s codec, writing `track` in
/// `container` and keeping its rendition in the catalog.
fn importer(
    track: moq_net::track::Producer,
    reserved: moq_mux::catalog::Reserved,
    format: &SinkFormat,
    hints: &VideoHints,
    container: &hang::catalog::Container,
) -> Result<Importer, moq_mux::Error> {
    match Timed::of(format) {
        Some(timed) => timed_importer(track, reserved, timed, container),
        None => media_importer(track, reserved, format, hints, container),
    }
}

fn in_container(
    mut config: hang::catalog::AudioConfig,
    container: &hang::catalog::Container,
) -> hang::catalog::AudioConfig {
    config.container = container.clone();
    config
}

/// The codec importer of an audio or video format.
fn media_importer(
    track: moq_net::track::Producer,
    reserved: moq_mux::catalog::Reserved,
    format: &SinkFormat,
    hints: &VideoHints,
    container: &hang::catalog::Container,
) -> Result<Importer, moq_mux::Error> {
    let hint = || video_hint(hints, container);
    let audio = |config| in_container(config, container);
    Ok(match format {
        SinkFormat::H264 { codec_data } => {
            let mut hint = hint();
            if codec_data.is_none() {
                // In-band parameter sets: announce the rendition now, from the
                // parser's profile and level; the first SPS refines it.
                hint.codec = hints.h264.clone().map(hang::catalog::VideoCodec::H264);
            }
            let mut import = codec::h264::Import::new(track, reserved, hint)?;
            if let Some(avcc) = codec_data {
                import.initialize(avcc)?;
            }
            Importer::H264(import)
        }
        SinkFormat::H265 { codec_data } => {
            let mut import = codec::h265::Import::new(track, reserved, hint())?;
            if let Some(hvcc) = codec_data {
                import.initialize(hvcc)?;
            }
            Importer::H265(import)
        }
        SinkFormat::Av1 { codec_data } => {
            let mut import = codec::av1::Import::new(track, reserved, hint())?;
            if let Some(av1c) = codec_data {
                import.initialize(av1c)?;
            }
            Importer::Av1(import)
        }
        SinkFormat::Vp8 => {
            let mut hint = hint();
            // VP8 has no parameters: the catalog can say it before any frame.
            hint.codec = Some(hang::catalog::VideoCodec::VP8);
            Importer::Vp8(codec::vp8::Import::new(track, reserved, hint)?)
        }
        SinkFormat::Vp9 => Importer::Vp9(codec::vp9::Import::new(track, reserved, hint())?),
        SinkFormat::Opus { rate, channels } => {
            let config = audio(codec::opus::Config::new(*rate, *channels).into());
            Importer::Opus(codec::opus::Import::new(track, reserved, config)?)
        }
        SinkFormat::Aac { codec_data } => {
            let config = audio(codec::aac::config(codec_data)?);
            Importer::Aac(codec::aac::Import::new(track, reserved, config)?)
        }
        // Text and data have no codec importer (see `timed_importer`).
        other => {
            return Err(moq_mux::Error::UnsupportedContainer(
                other.track_suffix().into(),
            ));
        }
    })
}

/// What a text or data track carries.
enum Timed {
    Text(hang::catalog::TextFormat),
    Klv,
    Json,
}

impl Timed {
    /// `None` for audio and video.
    fn of(format: &SinkFormat) -> Option<Self> {
        Some(match format {
            SinkFormat::Utf8Text => Timed::Text(hang::catalog::TextFormat::Utf8),
            SinkFormat::WebVtt => Timed::Text(hang::catalog::TextFormat::Vtt),
            SinkFormat::Klv => Timed::Klv,
            SinkFormat::Json => Timed::Json,
            _ => return None,
        })
    }
}

/// The track of text or data: no codec to import, only a catalog entry to
/// keep (`text`, `binary` or `json`) and whole frames to write.
fn timed_importer(
    track: moq_net::track::Producer,
    reserved: moq_mux::catalog::Reserved,
    timed: Timed,
    container: &hang::catalog::Container,
) -> Result<Importer, moq_mux::Error> {
    Ok(match timed {
        Timed::Text(format) => {
            let mut config = hang::catalog::TextConfig::new(format);
            config.container = container.clone();
            let framing =
                moq_mux::catalog::hang::Container::new(container, moq_mux::container::Kind::Data)?;
            Importer::Text(reserved.text(track, framing, config)?)
        }
        Timed::Klv => {
            let mut config = hang::catalog::BinaryConfig::new(hang::catalog::Mode::Snapshot);
            config.mime = Some(crate::catalog::KLV_MIME.into());
            Importer::Binary(reserved.track(track, crate::raw::Raw, config)?)
        }
        Timed::Json => {
            let config = hang::catalog::JsonConfig::new(hang::catalog::Mode::Snapshot);
            Importer::Json(reserved.track(track, crate::raw::Raw, config)?)
        }
    })
}

impl Publisher {
    /// Reserve the track `name` in the broadcast and the catalog and start the
    /// importer for `format`.
    pub fn new(
        output: &super::track::Output,
        name: &str,
        format: &SinkFormat,
        hints: &VideoHints,
    ) -> Result<Self, moq_mux::Error> {
        let request = output.broadcast.reserve_track(name.to_string())?;
        let reserved = output.catalog.reserve();
        let priority = match format.kind() {
            crate::catalog::TrackKind::Video => hang::catalog::PRIORITY.video,
            crate::catalog::TrackKind::Audio => hang::catalog::PRIORITY.audio,
            crate::catalog::TrackKind::Text | crate::catalog::TrackKind::Data => {
                hang::catalog::PRIORITY.text
            }
        };
        let track = request.accept(reserved.track_info(priority));
        let demand = track.demand();
        let importer = importer(track, reserved, format, hints, &output.container)?;
        Ok(Self {
            importer,
            name: name.to_string(),
            in_band: InBand::of(format),
            demand,
            in_catalog: described_by_caps(format, hints),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// A handle that tells whether anyone subscribes to the track, and waits
    /// for it to change.
    pub fn demand(&self) -> moq_net::track::Demand {
        self.demand.clone()
    }

    /// Someone subscribes to the track now.
    pub fn is_used(&self) -> bool {
        self.demand.is_used()
    }

    /// The rendition is in the catalog, so a player can find the track.
    pub fn in_catalog(&self) -> bool {
        self.in_catalog
    }

    /// Take a new configuration of the same codec and framing in place (new
    /// SPS/PPS, new resolution): the importer updates the catalog rendition.
    pub fn reconfigure(&mut self, format: &SinkFormat) -> Result<(), moq_mux::Error> {
        match (&mut self.importer, format) {
            (
                Importer::H264(import),
                SinkFormat::H264 {
                    codec_data: Some(d),
                },
            ) => import.initialize(d),
            (
                Importer::H265(import),
                SinkFormat::H265 {
                    codec_data: Some(d),
                },
            ) => import.initialize(d),
            (
                Importer::Av1(import),
                SinkFormat::Av1 {
                    codec_data: Some(d),
                },
            ) => {
                if let Some(InBand::Av1(headers)) = &mut self.in_band {
                    headers.seed(d);
                }
                import.initialize(d)
            }
            // In-band formats carry their configuration in the keyframes.
            _ => Ok(()),
        }
    }

    /// Text: the BCP-47 language of the rendition (from a `language-code`
    /// tag), for the catalog. Other tracks have none to say.
    pub fn set_language(&mut self, lang: &str) -> Result<(), moq_mux::Error> {
        let Importer::Text(track) = &mut self.importer else {
            return Ok(());
        };
        let mut config = track.modify()?;
        config.lang = Some(lang.to_owned());
        config.commit()
    }

    /// Byte-stream H.264/H.265: the codec whose NAL units the buffers carry.
    pub fn nal_codec(&self) -> Option<paramsets::Codec> {
        match &self.in_band {
            Some(InBand::Nal(params)) => Some(params.codec()),
            _ => None,
        }
    }

    /// Publish one whole frame (an access unit, temporal unit or audio packet).
    /// `payload` shares the GStreamer buffer's memory: nothing is copied here,
    /// except a keyframe that lacks its in-band configuration (it is put in
    /// so a subscriber joining there can decode).
    /// Video keyframes open a new MoQ group; every audio packet is a group of its
    /// own, so the relay forwards it without waiting for the next.
    pub fn write(
        &mut self,
        payload: Bytes,
        timestamp: moq_net::Timestamp,
        keyframe: bool,
    ) -> Result<(), WriteError> {
        let payload = match &mut self.in_band {
            Some(in_band) if keyframe => match in_band.complete(payload)? {
                Some(payload) => payload,
                None => return Ok(()),
            },
            _ => payload,
        };
        let frame = || moq_mux::container::Frame {
            timestamp,
            duration: None,
            payload: payload.clone(),
            keyframe,
        };
        match &mut self.importer {
            Importer::H264(import) => import.decode([frame()])?,
            Importer::H265(import) => import.decode([frame()])?,
            Importer::Av1(import) => import.decode([frame()])?,
            Importer::Vp8(import) => import.decode(payload, Some(timestamp))?,
            Importer::Vp9(import) => import.decode(payload, Some(timestamp))?,
            Importer::Opus(import) => {
                import.decode(payload, Some(timestamp))?;
                import.cut(None)?;
            }
            Importer::Aac(import) => {
                import.decode(payload, Some(timestamp))?;
                import.cut(None)?;
            }
            Importer::Text(track) => write_whole(track, payload, timestamp)?,
            Importer::Binary(track) => write_whole(track, payload, timestamp)?,
            Importer::Json(track) => write_whole(track, payload, timestamp)?,
        }
        self.in_catalog = true;
        Ok(())
    }

    /// Close the open group at `end` (where its last frame stops), so readers
    /// that bound every frame, like the fMP4 exporters, can use the last one.
    pub fn cut(&mut self, end: moq_net::Timestamp) -> Result<(), moq_mux::Error> {
        match &mut self.importer {
            Importer::H264(import) => import.cut(Some(end)),
            Importer::H265(import) => import.cut(Some(end)),
            Importer::Av1(import) => import.cut(Some(end)),
            Importer::Vp8(import) => import.cut(Some(end)),
            Importer::Vp9(import) => import.cut(Some(end)),
            // Every audio packet, cue and value is a group of its own,
            // closed as it is written.
            Importer::Opus(_)
            | Importer::Aac(_)
            | Importer::Text(_)
            | Importer::Binary(_)
            | Importer::Json(_) => Ok(()),
        }
    }

    /// End the track cleanly: subscribers read to its end and see it finish.
    pub fn finish(&mut self) -> Result<(), moq_mux::Error> {
        match &mut self.importer {
            Importer::H264(import) => import.finish(),
            Importer::H265(import) => import.finish(),
            Importer::Av1(import) => import.finish(),
            Importer::Vp8(import) => import.finish(),
            Importer::Vp9(import) => import.finish(),
            Importer::Opus(import) => import.finish(),
            Importer::Aac(import) => import.finish(),
            Importer::Text(track) => track.finish(),
            Importer::Binary(track) => track.finish(),
            Importer::Json(track) => track.finish(),
        }
    }
}

/// A cue or value as a group of its own, closed at once so the relay sends
/// it on without waiting for the next: a subscriber joining gets the latest.
fn write_whole<C, R>(
    track: &mut TimedTrack<C, R>,
    payload: Bytes,
    timestamp: moq_net::Timestamp,
) -> Result<(), moq_mux::Error>
where
    C: moq_mux::container::Container,
    R: moq_mux::catalog::RenditionConfig<()>,
    moq_mux::Error: From<C::Error>,
{
    track.write(moq_mux::container::Frame {
        timestamp,
        duration: None,
        payload,
        keyframe: true,
    })?;
    track.cut(None)
}
