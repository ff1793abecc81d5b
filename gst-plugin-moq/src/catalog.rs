// SPDX-License-Identifier: MIT OR Apache-2.0

//! Translation between GStreamer caps and the `hang` catalog, both directions.
//!
//! Pure code, no I/O: `sink_format` reads the caps a `moqsink` pad receives and
//! says which MoQ importer publishes them; `video_caps` / `audio_caps` turn a
//! catalog rendition into caps that GStreamer's parsers and decoders accept as
//! they are. Everything a user can get wrong here becomes a `CapsError` that
//! names what is wrong.

use bytes::Bytes;
use gst::glib;
use hang::catalog::{AudioCodec, AudioConfig, VideoCodec, VideoConfig};

/// Encoded video both elements carry: what `gst-inspect-1.0` shows on their
/// pads. Byte-stream first: encoders emit it, so parsers need not convert.
pub const VIDEO_CAPS: &str = "video/x-h264, stream-format=(string){ byte-stream, avc }, alignment=(string)au; \
     video/x-h265, stream-format=(string){ byte-stream, hvc1 }, alignment=(string)au; \
     video/x-vp8; \
     video/x-vp9; \
     video/x-av1, stream-format=(string)obu-stream, alignment=(string)tu";
/// Audio moqsink takes (mono or stereo Opus) and moqsrc gives.
pub const AUDIO_SINK_CAPS: &str = "audio/x-opus, channel-mapping-family=(int)0, channels=(int)[ 1, 2 ]; \
     audio/mpeg, mpegversion=(int)4, stream-format=(string)raw";
pub const AUDIO_SRC_CAPS: &str = "audio/x-opus, channel-mapping-family=(int)0; \
     audio/mpeg, mpegversion=(int)4, stream-format=(string)raw";
/// Timed text: plain UTF-8 (roll-up captions) and WebVTT cues; moqsrc also
/// gives TTML, which other publishers list.
pub const TEXT_SINK_CAPS: &str = "text/x-raw, format=(string)utf8; application/x-subtitle-vtt";
pub const TEXT_SRC_CAPS: &str =
    "text/x-raw, format=(string)utf8; application/x-subtitle-vtt; application/ttml+xml";
/// Timed data: KLV metadata (MISB ST 0601 and the like, whole KLV units per
/// buffer) and JSON documents.
pub const DATA_SINK_CAPS: &str =
    "meta/x-klv, parsed=(boolean)true; application/x-json; application/json";
pub const DATA_SRC_CAPS: &str = "meta/x-klv, parsed=(boolean)true; application/x-json";
/// The catalog's media type for KLV, as RFC 6597 registers it.
pub const KLV_MIME: &str = "video/smpte336m";

/// The `video_%u` and `audio_%u` pad templates of an element, with its pad
/// subclass so gst-inspect shows the pad properties.
pub fn pad_templates(
    direction: gst::PadDirection,
    presence: gst::PadPresence,
    pad_type: glib::Type,
) -> Vec<gst::PadTemplate> {
    let (audio, text, data) = match direction {
        gst::PadDirection::Sink => (AUDIO_SINK_CAPS, TEXT_SINK_CAPS, DATA_SINK_CAPS),
        _ => (AUDIO_SRC_CAPS, TEXT_SRC_CAPS, DATA_SRC_CAPS),
    };
    [
        ("video_%u", VIDEO_CAPS),
        ("audio_%u", audio),
        ("text_%u", text),
        ("data_%u", data),
    ]
    .into_iter()
    .map(|(name, caps)| {
        let caps = caps.parse::<gst::Caps>().expect("valid template caps");
        gst::PadTemplate::with_gtype(name, direction, presence, &caps, pad_type)
            .expect("valid pad template")
    })
    .collect()
}

/// What a track carries: decides the pad template, grouping and the catalog
/// section.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum TrackKind {
    #[default]
    Video,
    Audio,
    /// Timed text (the catalog's `text` section).
    Text,
    /// Timed data (the catalog's `binary` and `json` sections).
    Data,
}

impl TrackKind {
    /// The kind of a pad template (`video_%u`, `audio_%u`, `text_%u`,
    /// `data_%u`) or pad name.
    pub fn of_pad_name(name: &str) -> TrackKind {
        [TrackKind::Audio, TrackKind::Text, TrackKind::Data]
            .into_iter()
            .find(|kind| name.starts_with(kind.as_str()))
            .unwrap_or(TrackKind::Video)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TrackKind::Video => "video",
            TrackKind::Audio => "audio",
            TrackKind::Text => "text",
            TrackKind::Data => "data",
        }
    }

    /// Text and data: frames come when there is something to say, not at a
    /// rate (GStreamer's sparse streams).
    pub fn is_sparse(self) -> bool {
        matches!(self, TrackKind::Text | TrackKind::Data)
    }
}

/// Why caps cannot be carried, in words for the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapsError(pub String);

impl std::fmt::Display for CapsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CapsError {}

macro_rules! caps_error {
    ($($arg:tt)*) => { CapsError(format!($($arg)*)) };
}

/// An encoded format moqsink publishes, with what its importer needs to start.
#[derive(Debug, Clone, PartialEq)]
pub enum SinkFormat {
    /// `codec_data` is the avcC of `stream-format=avc`; `None` for byte-stream.
    H264 {
        codec_data: Option<Bytes>,
    },
    /// `codec_data` is the hvcC of `stream-format=hvc1`; `None` for byte-stream.
    H265 {
        codec_data: Option<Bytes>,
    },
    Vp8,
    Vp9,
    /// `codec_data` is the av1C record when upstream provides one.
    Av1 {
        codec_data: Option<Bytes>,
    },
    Opus {
        rate: u32,
        channels: u32,
    },
    /// `codec_data` is the AudioSpecificConfig.
    Aac {
        codec_data: Bytes,
    },
    /// UTF-8 text, one caption per buffer.
    Utf8Text,
    /// WebVTT, one or more cues per buffer.
    WebVtt,
    /// KLV metadata, whole KLV units per buffer.
    Klv,
    /// One JSON document per buffer.
    Json,
}

/// Optional facts from video caps that seed the catalog before the first
/// keyframe says them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VideoHints {
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub framerate: Option<f64>,
    /// Bits per second, when the application says (else moq-mux measures).
    pub bitrate: Option<u64>,
    pub h264: Option<hang::catalog::H264>,
}

impl SinkFormat {
    pub fn kind(&self) -> TrackKind {
        match self {
            SinkFormat::Opus { .. } | SinkFormat::Aac { .. } => TrackKind::Audio,
            SinkFormat::Utf8Text | SinkFormat::WebVtt => TrackKind::Text,
            SinkFormat::Klv | SinkFormat::Json => TrackKind::Data,
            _ => TrackKind::Video,
        }
    }

    /// The suffix of the track name, after the WebCodecs codec family, the way
    /// the MoQ tools name tracks (`0.avc3`, `1.opus`).
    pub fn track_suffix(&self) -> &'static str {
        match self {
            SinkFormat::H264 { codec_data: None } => "avc3",
            SinkFormat::H264 {
                codec_data: Some(_),
            } => "avc1",
            SinkFormat::H265 { codec_data: None } => "hev1",
            SinkFormat::H265 {
                codec_data: Some(_),
            } => "hvc1",
            SinkFormat::Vp8 => "vp8",
            SinkFormat::Vp9 => "vp09",
            SinkFormat::Av1 { .. } => "av01",
            SinkFormat::Opus { .. } => "opus",
            SinkFormat::Aac { .. } => "mp4a",
            SinkFormat::Utf8Text => "txt",
            SinkFormat::WebVtt => "vtt",
            SinkFormat::Klv => "klv",
            SinkFormat::Json => "json",
        }
    }

    /// Whether `other` can continue on the same MoQ track: same codec and the
    /// same framing (the importer re-reads the configuration in place).
    pub fn same_track(&self, other: &SinkFormat) -> bool {
        use SinkFormat::*;
        match (self, other) {
            (H264 { codec_data: a }, H264 { codec_data: b })
            | (H265 { codec_data: a }, H265 { codec_data: b }) => a.is_some() == b.is_some(),
            (Vp8, Vp8) | (Vp9, Vp9) | (Av1 { .. }, Av1 { .. }) => true,
            (a, b) => a == b,
        }
    }
}

fn codec_data(s: &gst::StructureRef) -> Result<Option<Bytes>, CapsError> {
    match s.get_optional::<gst::Buffer>("codec_data") {
        Ok(None) => Ok(None),
        Ok(Some(buffer)) => {
            let map = buffer
                .map_readable()
                .map_err(|_| caps_error!("codec_data of {} cannot be read", s.name()))?;
            if map.is_empty() {
                return Ok(None);
            }
            Ok(Some(Bytes::copy_from_slice(map.as_slice())))
        }
        Err(_) => Err(caps_error!("codec_data of {} is not a buffer", s.name())),
    }
}

fn require_au(s: &gst::StructureRef, want: &str) -> Result<(), CapsError> {
    match s.get_optional::<&str>("alignment") {
        Ok(None) => Ok(()),
        Ok(Some(a)) if a == want => Ok(()),
        Ok(Some(a)) => Err(caps_error!(
            "{} with alignment={a} is not supported: whole frames are needed \
             (alignment={want}); put a parser (h264parse, h265parse, av1parse) before moqsink",
            s.name()
        )),
        Err(_) => Err(caps_error!("alignment of {} is not a string", s.name())),
    }
}

fn positive_int(s: &gst::StructureRef, field: &str) -> Result<Option<u32>, CapsError> {
    match s.get_optional::<i32>(field) {
        Ok(None) => Ok(None),
        Ok(Some(v)) if v > 0 => Ok(Some(v as u32)),
        Ok(Some(v)) => Err(caps_error!("{field}={v} in {} is not positive", s.name())),
        Err(_) => Err(caps_error!(
            "{field} in {} is not a fixed integer",
            s.name()
        )),
    }
}

/// GStreamer's H.264 profile names with their profile_idc and the
/// constraint_set flags byte that `h264parse` gives them.
const H264_PROFILES: &[(&str, u8, u8)] = &[
    ("constrained-baseline", 66, 0xc0),
    ("baseline", 66, 0x80),
    ("main", 77, 0x40),
    ("extended", 88, 0x00),
    ("constrained-high", 100, 0x0c),
    ("progressive-high", 100, 0x08),
    ("high", 100, 0x00),
    ("high-10", 110, 0x00),
    ("high-4:2:2", 122, 0x00),
    ("high-4:4:4", 244, 0x00),
];

/// The caps fields `h264parse` would write for a catalog's H.264 codec:
/// the profile name (the closest one when the constraint flags are not
/// exactly one of GStreamer's) and the level (`3.1`, `1b`).
fn h264_profile_level(codec: &hang::catalog::H264) -> (Option<&'static str>, String) {
    let exact = H264_PROFILES
        .iter()
        .find(|(_, p, c)| *p == codec.profile && *c == codec.constraints);
    // Constraint flags beyond GStreamer's: the strictest name whose flags
    // are all set (constrained-baseline before baseline), else the plain one.
    let closest = || {
        H264_PROFILES
            .iter()
            .filter(|(_, p, c)| *p == codec.profile && codec.constraints & c == *c)
            .max_by_key(|(_, _, c)| c.count_ones())
    };
    let name = exact.or_else(closest).map(|(n, _, _)| *n);
    let level = match codec.level {
        9 => "1b".to_string(),
        l if l % 10 == 0 => format!("{}", l / 10),
        l => format!("{}.{}", l / 10, l % 10),
    };
    (name, level)
}

/// The H.264 profile and level that `h264parse` writes into caps, as the
/// catalog's codec (`avc3.PPCCLL`). It lets moqsink announce an in-band H.264
/// rendition before the first keyframe's SPS says the same, so subscribers
/// see the track from the first catalog on.
pub fn h264_codec(caps: &gst::CapsRef) -> Option<hang::catalog::H264> {
    let s = caps.structure(0)?;
    if s.name() != "video/x-h264" {
        return None;
    }
    let name = s.get::<&str>("profile").ok()?;
    let (_, profile, constraints) = H264_PROFILES.iter().find(|(n, _, _)| *n == name)?;
    let (profile, constraints) = (*profile, *constraints);
    let level = match s.get::<&str>("level").ok()? {
        "1b" => 9,
        level => {
            let (major, minor) = level.split_once('.').unwrap_or((level, "0"));
            let major: u8 = major.parse().ok()?;
            let minor: u8 = minor.parse().ok()?;
            major.checked_mul(10)?.checked_add(minor)?
        }
    };
    Some(hang::catalog::H264 {
        inline: true,
        profile,
        constraints,
        level,
    })
}

/// The catalog hints that video caps carry.
pub fn video_hints(caps: &gst::CapsRef) -> VideoHints {
    let Some(s) = caps.structure(0) else {
        return VideoHints::default();
    };
    let framerate = s
        .get::<gst::Fraction>("framerate")
        .ok()
        .filter(|f| f.numer() > 0 && f.denom() > 0)
        .map(|f| f64::from(f.numer()) / f64::from(f.denom()));
    VideoHints {
        width: positive_int(s, "width").ok().flatten(),
        height: positive_int(s, "height").ok().flatten(),
        framerate,
        bitrate: None,
        h264: h264_codec(caps),
    }
}

/// Which importer publishes these caps, or why none can.
pub fn sink_format(caps: &gst::CapsRef) -> Result<SinkFormat, CapsError> {
    if !caps.is_fixed() || caps.size() != 1 {
        return Err(caps_error!("caps are not fixed: {caps}"));
    }
    let Some(s) = caps.structure(0) else {
        return Err(caps_error!("empty caps"));
    };
    match s.name().as_str() {
        "video/x-h264" => {
            let codec_data = h26x_codec_data(s, "H.264", "avc", "avcC", "h264parse")?;
            Ok(SinkFormat::H264 { codec_data })
        }
        "video/x-h265" => {
            let codec_data = h26x_codec_data(s, "H.265", "hvc1", "hvcC", "h265parse")?;
            Ok(SinkFormat::H265 { codec_data })
        }
        "video/x-vp8" => Ok(SinkFormat::Vp8),
        "video/x-vp9" => Ok(SinkFormat::Vp9),
        "video/x-av1" => av1_format(s),
        "audio/x-opus" => opus_format(s),
        "audio/mpeg" => aac_format(s),
        "text/x-raw" => match s.get_optional::<&str>("format").ok().flatten() {
            None | Some("utf8") => Ok(SinkFormat::Utf8Text),
            Some(other) => Err(caps_error!(
                "text/x-raw format={other} is not supported: only utf8 (plain text)"
            )),
        },
        "application/x-subtitle-vtt" => Ok(SinkFormat::WebVtt),
        "meta/x-klv" => match s.get_optional::<bool>("parsed").ok().flatten() {
            Some(true) => Ok(SinkFormat::Klv),
            _ => Err(caps_error!(
                "meta/x-klv must be parsed=true: whole KLV units per buffer"
            )),
        },
        "application/x-json" | "application/json" => Ok(SinkFormat::Json),
        other => Err(caps_error!(
            "{other} is not a format moqsink carries (H.264, H.265, VP8, VP9, AV1, Opus, AAC, \
             UTF-8 text, WebVTT, KLV, JSON)"
        )),
    }
}

/// H.264 and H.265 alike: whole access units, either length-prefixed with
/// the decoder configuration (`avcC`/`hvcC`) in codec_data, or Annex B with
/// the parameter sets in band (`None`).
fn h26x_codec_data(
    s: &gst::StructureRef,
    codec: &str,
    packaged: &str,
    record: &str,
    parser: &str,
) -> Result<Option<Bytes>, CapsError> {
    require_au(s, "au")?;
    match s.get_optional::<&str>("stream-format").ok().flatten() {
        Some(format) if format == packaged => codec_data(s)?.map(Some).ok_or_else(|| {
            caps_error!("{codec} stream-format={packaged} without codec_data (the {record})")
        }),
        Some("byte-stream") => Ok(None),
        Some(other) => Err(caps_error!(
            "{codec} stream-format={other} is not supported: use {packaged} or byte-stream ({parser} converts)"
        )),
        None => Err(caps_error!(
            "{codec} caps without stream-format: put {parser} before moqsink"
        )),
    }
}

fn av1_format(s: &gst::StructureRef) -> Result<SinkFormat, CapsError> {
    require_au(s, "tu")?;
    match s.get_optional::<&str>("stream-format").ok().flatten() {
        None | Some("obu-stream") => Ok(SinkFormat::Av1 {
            codec_data: codec_data(s)?,
        }),
        Some(other) => Err(caps_error!(
            "AV1 stream-format={other} is not supported: use obu-stream (av1parse converts)"
        )),
    }
}

fn opus_format(s: &gst::StructureRef) -> Result<SinkFormat, CapsError> {
    let family = s
        .get_optional::<i32>("channel-mapping-family")
        .ok()
        .flatten();
    if let Some(family) = family.filter(|&f| f != 0) {
        return Err(caps_error!(
            "Opus channel-mapping-family={family} (multichannel) is not supported"
        ));
    }
    let channels = positive_int(s, "channels")?.unwrap_or(2);
    if channels > 2 {
        return Err(caps_error!(
            "Opus with {channels} channels is not supported (1 or 2)"
        ));
    }
    // Opus always decodes at 48 kHz; WebRTC peers often leave the rate out.
    let rate = positive_int(s, "rate")?.unwrap_or(48_000);
    Ok(SinkFormat::Opus { rate, channels })
}

fn aac_format(s: &gst::StructureRef) -> Result<SinkFormat, CapsError> {
    let version = s.get_optional::<i32>("mpegversion").ok().flatten();
    if !matches!(version, Some(2 | 4)) {
        return Err(caps_error!(
            "audio/mpeg mpegversion={} is not supported: only AAC (mpegversion=4)",
            version
                .map(|v| v.to_string())
                .unwrap_or_else(|| "unset".into())
        ));
    }
    let format = s.get_optional::<&str>("stream-format").ok().flatten();
    if format != Some("raw") {
        return Err(caps_error!(
            "AAC stream-format={} is not supported: use raw with codec_data (aacparse converts)",
            format.unwrap_or("unset")
        ));
    }
    let cd = codec_data(s)?.ok_or_else(|| {
        caps_error!("AAC stream-format=raw without codec_data (the AudioSpecificConfig)")
    })?;
    Ok(SinkFormat::Aac { codec_data: cd })
}

fn with_video_size(
    mut b: gst::caps::Builder<gst::caps::NoFeature>,
    config: &VideoConfig,
) -> gst::caps::Builder<gst::caps::NoFeature> {
    if let (Some(w), Some(h)) = (config.coded_width, config.coded_height)
        && let (Ok(w), Ok(h)) = (i32::try_from(w), i32::try_from(h))
        && w > 0
        && h > 0
    {
        b = b.field("width", w).field("height", h);
    }
    b
}

/// Caps for a video rendition of the catalog.
pub fn video_caps(config: &VideoConfig) -> Result<gst::Caps, CapsError> {
    let description = config.description.as_ref().filter(|d| !d.is_empty());
    let b = match &config.codec {
        VideoCodec::H264(codec) => {
            // Profile and level as h264parse would say them: WebRTC sinks
            // pick the payload type of a viewer's offer by them.
            let (profile, level) = h264_profile_level(codec);
            let b = gst::Caps::builder("video/x-h264")
                .field("alignment", "au")
                .field_if_some("profile", profile)
                .field("level", level);
            match description {
                Some(d) => b
                    .field("stream-format", "avc")
                    .field("codec_data", gst::Buffer::from_slice(d.clone())),
                None => b.field("stream-format", "byte-stream"),
            }
        }
        VideoCodec::H265(_) => {
            let b = gst::Caps::builder("video/x-h265").field("alignment", "au");
            match description {
                Some(d) => b
                    .field("stream-format", "hvc1")
                    .field("codec_data", gst::Buffer::from_slice(d.clone())),
                None => b.field("stream-format", "byte-stream"),
            }
        }
        VideoCodec::VP8 => gst::Caps::builder("video/x-vp8"),
        VideoCodec::VP9(_) => gst::Caps::builder("video/x-vp9"),
        VideoCodec::AV1(_) => {
            let b = gst::Caps::builder("video/x-av1")
                .field("stream-format", "obu-stream")
                .field("alignment", "tu");
            match description {
                Some(d) => b.field("codec_data", gst::Buffer::from_slice(d.clone())),
                None => b,
            }
        }
        other => return Err(caps_error!("video codec '{other}' is not supported")),
    };
    Ok(with_video_size(b, config).build())
}

/// Sampling frequency index of ISO/IEC 14496-3, for an AudioSpecificConfig.
fn aac_frequency_index(rate: u32) -> Option<u8> {
    const RATES: [u32; 13] = [
        96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350,
    ];
    RATES.iter().position(|r| *r == rate).map(|i| i as u8)
}

/// Caps for an audio rendition of the catalog.
pub fn audio_caps(config: &AudioConfig) -> Result<gst::Caps, CapsError> {
    let rate = i32::try_from(config.sample_rate)
        .ok()
        .filter(|r| (1..=768_000).contains(r))
        .ok_or_else(|| caps_error!("audio sample rate {} is not plausible", config.sample_rate))?;
    let channels = i32::try_from(config.channel_count)
        .ok()
        .filter(|c| (1..=64).contains(c))
        .ok_or_else(|| {
            caps_error!(
                "audio channel count {} is not plausible",
                config.channel_count
            )
        })?;
    match &config.codec {
        AudioCodec::Opus => {
            if channels > 2 {
                return Err(caps_error!(
                    "Opus with {channels} channels is not supported (1 or 2)"
                ));
            }
            // Caps fields are int, as opusdec expects (a uint would not link).
            Ok(gst::Caps::builder("audio/x-opus")
                .field("channel-mapping-family", 0i32)
                .field("rate", rate)
                .field("channels", channels)
                .build())
        }
        AudioCodec::AAC(aac) => {
            let asc = match config.description.as_ref().filter(|d| !d.is_empty()) {
                Some(d) => d.clone(),
                None => aac_config(aac.profile, config.sample_rate, channels)?,
            };
            Ok(gst::Caps::builder("audio/mpeg")
                .field("mpegversion", 4i32)
                .field("stream-format", "raw")
                .field("rate", rate)
                .field("channels", channels)
                .field("codec_data", gst::Buffer::from_slice(asc))
                .build())
        }
        other => Err(caps_error!("audio codec '{other}' is not supported")),
    }
}

/// Caps for a text rendition of the catalog.
pub fn text_caps(config: &hang::catalog::TextConfig) -> Result<gst::Caps, CapsError> {
    use hang::catalog::TextFormat;
    match &config.format {
        TextFormat::Utf8 => Ok(gst::Caps::builder("text/x-raw")
            .field("format", "utf8")
            .build()),
        TextFormat::Vtt => Ok(gst::Caps::new_empty_simple("application/x-subtitle-vtt")),
        TextFormat::Ttml => Ok(gst::Caps::new_empty_simple("application/ttml+xml")),
        other => Err(caps_error!("text format '{other}' is not supported")),
    }
}

/// The payloads of a data track are sent as they are, uncompressed, and
/// each frame is a whole value: the modes moqsrc reads.
fn plain_data(
    mode: &hang::catalog::Mode,
    compression: Option<&hang::catalog::Compression>,
) -> Result<(), CapsError> {
    if let Some(compression) = compression {
        return Err(caps_error!(
            "data compressed with '{compression}' is not supported"
        ));
    }
    match mode {
        hang::catalog::Mode::Snapshot | hang::catalog::Mode::Stream => Ok(()),
        other => Err(caps_error!("data track mode '{other}' is not known")),
    }
}

/// Caps for a binary data track of the catalog, by its media type.
pub fn binary_caps(config: &hang::catalog::BinaryConfig) -> Result<gst::Caps, CapsError> {
    plain_data(&config.mode, config.compression.as_ref())?;
    match config.mime.as_deref() {
        Some(KLV_MIME) => Ok(gst::Caps::builder("meta/x-klv")
            .field("parsed", true)
            .build()),
        Some(other) => Err(caps_error!(
            "binary data of type '{other}' is not supported"
        )),
        None => Err(caps_error!(
            "binary data with no media type is not supported"
        )),
    }
}

/// Caps for a JSON data track of the catalog.
pub fn json_caps(config: &hang::catalog::JsonConfig) -> Result<gst::Caps, CapsError> {
    plain_data(&config.mode, config.compression.as_ref())?;
    Ok(gst::Caps::new_empty_simple("application/x-json"))
}

/// The two-byte AudioSpecificConfig for a catalog entry without a
/// description, from the profile, rate and channels it gives.
fn aac_config(profile: u8, sample_rate: u32, channels: i32) -> Result<Bytes, CapsError> {
    let index = aac_frequency_index(sample_rate)
        .ok_or_else(|| caps_error!("AAC rate {sample_rate} has no AudioSpecificConfig index"))?;
    // Channel configurations 0-7 fit the 4 bits; a negative count from bad
    // caps must not spill into the other fields.
    let config = u16::try_from(channels).ok().filter(|c| *c <= 7);
    let (Some(config), 1..=31) = (config, profile) else {
        return Err(caps_error!(
            "AAC profile {profile} with {channels} channels needs a description"
        ));
    };
    let bits: u16 = (u16::from(profile) << 11) | (u16::from(index) << 7) | (config << 3);
    Ok(Bytes::copy_from_slice(&bits.to_be_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hang::catalog::{AAC, H264};

    fn init() {
        gst::init().unwrap();
    }

    fn caps(s: &str) -> gst::Caps {
        s.parse().unwrap()
    }

    #[test]
    fn h264_byte_stream_and_avc() {
        init();
        let f = sink_format(&caps(
            "video/x-h264,stream-format=byte-stream,alignment=au,width=640,height=480",
        ))
        .unwrap();
        assert_eq!(f, SinkFormat::H264 { codec_data: None });
        assert_eq!(f.track_suffix(), "avc3");
        assert_eq!(f.kind(), TrackKind::Video);

        let c = caps("video/x-h264,stream-format=avc,alignment=au,codec_data=(buffer)0142c01effe1");
        let f = sink_format(&c).unwrap();
        assert_eq!(f.track_suffix(), "avc1");
        assert!(matches!(f, SinkFormat::H264 { codec_data: Some(ref d) } if d.len() == 6));
    }

    #[test]
    fn h264_refusals_name_the_problem() {
        init();
        let e = sink_format(&caps(
            "video/x-h264,stream-format=byte-stream,alignment=nal",
        ))
        .unwrap_err();
        assert!(e.0.contains("alignment=nal"), "{e}");
        let e = sink_format(&caps("video/x-h264,stream-format=avc,alignment=au")).unwrap_err();
        assert!(e.0.contains("codec_data"), "{e}");
        let e = sink_format(&caps("video/x-h264,alignment=au")).unwrap_err();
        assert!(e.0.contains("h264parse"), "{e}");
    }

    #[test]
    fn every_codec_is_recognized() {
        init();
        for (c, suffix) in [
            (
                "video/x-h265,stream-format=byte-stream,alignment=au",
                "hev1",
            ),
            (
                "video/x-h265,stream-format=hvc1,alignment=au,codec_data=(buffer)01",
                "hvc1",
            ),
            ("video/x-vp8,width=320,height=240", "vp8"),
            ("video/x-vp9", "vp09"),
            ("video/x-av1,stream-format=obu-stream,alignment=tu", "av01"),
            (
                "audio/x-opus,channel-mapping-family=0,rate=48000,channels=2",
                "opus",
            ),
            (
                "audio/mpeg,mpegversion=4,stream-format=raw,codec_data=(buffer)1210",
                "mp4a",
            ),
        ] {
            let f = sink_format(&caps(c)).unwrap_or_else(|e| panic!("{c}: {e}"));
            assert_eq!(f.track_suffix(), suffix, "{c}");
        }
    }

    #[test]
    fn text_and_data_formats_both_ways() {
        init();
        use hang::catalog::{BinaryConfig, JsonConfig, Mode, TextConfig, TextFormat};
        for (c, format, kind, suffix) in [
            (
                "text/x-raw,format=utf8",
                SinkFormat::Utf8Text,
                TrackKind::Text,
                "txt",
            ),
            (
                "application/x-subtitle-vtt",
                SinkFormat::WebVtt,
                TrackKind::Text,
                "vtt",
            ),
            (
                "meta/x-klv,parsed=true",
                SinkFormat::Klv,
                TrackKind::Data,
                "klv",
            ),
            (
                "application/x-json",
                SinkFormat::Json,
                TrackKind::Data,
                "json",
            ),
            (
                "application/json",
                SinkFormat::Json,
                TrackKind::Data,
                "json",
            ),
        ] {
            let f = sink_format(&caps(c)).unwrap_or_else(|e| panic!("{c}: {e}"));
            assert_eq!((&f, f.kind(), f.track_suffix()), (&format, kind, suffix));
        }
        let e = sink_format(&caps("text/x-raw,format=pango-markup")).unwrap_err();
        assert!(e.0.contains("utf8"), "{e}");
        let e = sink_format(&caps("meta/x-klv,parsed=false")).unwrap_err();
        assert!(e.0.contains("parsed=true"), "{e}");

        // Back from the catalog: the caps the sink took.
        let vtt = text_caps(&TextConfig::new(TextFormat::Vtt)).unwrap();
        assert_eq!(sink_format(&vtt).unwrap(), SinkFormat::WebVtt);
        let utf8 = text_caps(&TextConfig::new(TextFormat::Utf8)).unwrap();
        assert_eq!(sink_format(&utf8).unwrap(), SinkFormat::Utf8Text);
        assert!(text_caps(&TextConfig::new(TextFormat::Unknown("cea708".into()))).is_err());
        let mut klv = BinaryConfig::new(Mode::Snapshot);
        klv.mime = Some(KLV_MIME.into());
        assert_eq!(
            sink_format(&binary_caps(&klv).unwrap()).unwrap(),
            SinkFormat::Klv
        );
        klv.mime = Some("image/jpeg".into());
        assert!(binary_caps(&klv).unwrap_err().0.contains("image/jpeg"));
        let json = json_caps(&JsonConfig::new(Mode::Stream)).unwrap();
        assert_eq!(sink_format(&json).unwrap(), SinkFormat::Json);
        let mut zipped = JsonConfig::new(Mode::Snapshot);
        zipped.compression = Some(hang::catalog::Compression::Deflate);
        assert!(json_caps(&zipped).unwrap_err().0.contains("compressed"));
        assert!(json_caps(&JsonConfig::new(Mode::Unknown("x".into()))).is_err());
        // Pad names give their kind.
        for kind in [
            TrackKind::Video,
            TrackKind::Audio,
            TrackKind::Text,
            TrackKind::Data,
        ] {
            assert_eq!(
                TrackKind::of_pad_name(&format!("{}_3", kind.as_str())),
                kind
            );
        }
    }

    #[test]
    fn opus_defaults_and_limits() {
        init();
        assert_eq!(
            sink_format(&caps("audio/x-opus,channel-mapping-family=0")).unwrap(),
            SinkFormat::Opus {
                rate: 48000,
                channels: 2
            }
        );
        assert!(sink_format(&caps("audio/x-opus,channel-mapping-family=1,channels=6")).is_err());
    }

    #[test]
    fn unsupported_caps_are_named() {
        init();
        let e = sink_format(&caps("video/x-theora")).unwrap_err();
        assert!(e.0.contains("video/x-theora"), "{e}");
        let e = sink_format(&caps("audio/mpeg,mpegversion=1,layer=3")).unwrap_err();
        assert!(e.0.contains("mpegversion=1"), "{e}");
        let e = sink_format(&caps("audio/mpeg,mpegversion=4,stream-format=adts")).unwrap_err();
        assert!(e.0.contains("adts"), "{e}");
        let e = sink_format(&caps("video/x-vp8;video/x-vp9")).unwrap_err();
        assert!(e.0.contains("not fixed"), "{e}");
    }

    #[test]
    fn same_track_only_for_same_framing() {
        let a = SinkFormat::H264 { codec_data: None };
        let b = SinkFormat::H264 {
            codec_data: Some(Bytes::from_static(&[1])),
        };
        assert!(!a.same_track(&b));
        assert!(b.same_track(&SinkFormat::H264 {
            codec_data: Some(Bytes::from_static(&[2]))
        }));
        assert!(!SinkFormat::Vp8.same_track(&SinkFormat::Vp9));
    }

    #[test]
    fn h264_profile_and_level_round_trip() {
        for (name, _, _) in H264_PROFILES {
            for level in ["1b", "3", "3.1", "5.2"] {
                let text = format!("video/x-h264,profile={name},level=(string){level}");
                let codec = h264_codec(&caps(&text)).unwrap();
                assert_eq!(
                    h264_profile_level(&codec),
                    (Some(*name), level.to_string()),
                    "{text}"
                );
            }
        }
        // Chromium's constrained baseline is 42e0: flags beyond GStreamer's
        // name the closest profile.
        let chrome = hang::catalog::H264 {
            inline: true,
            profile: 66,
            constraints: 0xe0,
            level: 31,
        };
        assert_eq!(
            h264_profile_level(&chrome),
            (Some("constrained-baseline"), "3.1".into())
        );
        let odd = hang::catalog::H264 {
            inline: true,
            profile: 1,
            constraints: 0,
            level: 10,
        };
        assert_eq!(h264_profile_level(&odd), (None, "1".into()));
    }

    #[test]
    fn h264_codec_from_parser_caps() {
        init();
        let codec = h264_codec(&caps(
            "video/x-h264,profile=constrained-baseline,level=(string)3.1",
        ))
        .unwrap();
        assert_eq!(
            (codec.profile, codec.constraints, codec.level),
            (66, 0xc0, 31)
        );
        assert_eq!(
            hang::catalog::VideoCodec::H264(codec).to_string(),
            "avc3.42c01f"
        );
        let codec = h264_codec(&caps("video/x-h264,profile=high,level=(string)4")).unwrap();
        assert_eq!((codec.profile, codec.level), (100, 40));
        assert!(h264_codec(&caps("video/x-h264,profile=high")).is_none());
        assert!(h264_codec(&caps("video/x-h264,profile=unknown,level=(string)3")).is_none());
        assert!(h264_codec(&caps("video/x-vp8")).is_none());
    }

    #[test]
    fn hints_from_video_caps() {
        init();
        let h = video_hints(&caps("video/x-vp8,width=1280,height=720,framerate=30/1"));
        assert_eq!(
            h,
            VideoHints {
                width: Some(1280),
                height: Some(720),
                framerate: Some(30.0),
                bitrate: None,
                h264: None,
            }
        );
    }

    fn h264() -> H264 {
        H264 {
            inline: true,
            profile: 0x42,
            constraints: 0xc0,
            level: 0x1f,
        }
    }

    #[test]
    fn h264_caps_follow_the_description() {
        init();
        let mut config = VideoConfig::new(h264());
        config.coded_width = Some(1280);
        config.coded_height = Some(720);
        let c = video_caps(&config).unwrap();
        let s = c.structure(0).unwrap();
        assert_eq!(s.get::<&str>("stream-format").unwrap(), "byte-stream");
        assert_eq!(s.get::<i32>("width").unwrap(), 1280);

        config.description = Some(Bytes::from_static(&[1, 0x42, 0xc0, 0x1f]));
        let c = video_caps(&config).unwrap();
        let s = c.structure(0).unwrap();
        assert_eq!(s.get::<&str>("stream-format").unwrap(), "avc");
        assert_eq!(s.get::<gst::Buffer>("codec_data").unwrap().size(), 4);
    }

    #[test]
    fn round_trip_through_caps() {
        init();
        // A catalog rendition -> caps -> the same sink format again.
        let mut config = VideoConfig::new(h264());
        config.description = Some(Bytes::from_static(&[1, 0x42, 0xc0, 0x1f]));
        let f = sink_format(&video_caps(&config).unwrap()).unwrap();
        assert_eq!(
            f,
            SinkFormat::H264 {
                codec_data: config.description.clone()
            }
        );

        let opus = AudioConfig::new(AudioCodec::Opus, 48000, 2);
        let f = sink_format(&audio_caps(&opus).unwrap()).unwrap();
        assert_eq!(
            f,
            SinkFormat::Opus {
                rate: 48000,
                channels: 2
            }
        );
    }

    #[test]
    fn audio_caps_use_int_fields() {
        init();
        let c = audio_caps(&AudioConfig::new(AudioCodec::Opus, 48000, 2)).unwrap();
        let s = c.structure(0).unwrap();
        assert!(s.get::<i32>("rate").is_ok());
        assert!(s.get::<i32>("channels").is_ok());
        assert!(audio_caps(&AudioConfig::new(AudioCodec::Opus, 0, 2)).is_err());
        assert!(audio_caps(&AudioConfig::new(AudioCodec::Opus, 48000, 6)).is_err());
    }

    #[test]
    fn aac_without_description_gets_an_audio_specific_config() {
        init();
        let config = AudioConfig::new(AAC { profile: 2 }, 44100, 2);
        let c = audio_caps(&config).unwrap();
        let s = c.structure(0).unwrap();
        let asc = s.get::<gst::Buffer>("codec_data").unwrap();
        let map = asc.map_readable().unwrap();
        // AAC-LC (2), 44.1 kHz (index 4), stereo: 0x12 0x10.
        assert_eq!(map.as_slice(), &[0x12, 0x10]);
        // Fields that do not fit their bits are refused, not spilled over.
        assert!(aac_config(2, 44100, -1).is_err());
        assert!(aac_config(2, 44100, 8).is_err());
        assert!(aac_config(0, 44100, 2).is_err());
        assert!(aac_config(32, 44100, 2).is_err());
        assert_eq!(&aac_config(31, 44100, 7).unwrap()[..], &[0xfa, 0x38]);
    }
}
