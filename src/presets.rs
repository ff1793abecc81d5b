// SPDX-License-Identifier: MIT OR Apache-2.0

//! The four WebRTC <-> MoQ gateways as plain pipeline descriptions.
//!
//! Each preset is a string that `gst-launch-1.0` runs unchanged when the
//! `moq` and `rswebrtc` plugins are on `GST_PLUGIN_PATH`; `moq-gateway`
//! runs the same string with both plugins built in, and adds what a
//! description cannot say (EOS when a WebRTC peer leaves).

/// Where the MoQ side goes: the embedded relay of `moq-gateway relay`,
/// whose certificate is pinned through its `/certificate.sha256`.
pub const DEFAULT_RELAY: &str = "http://127.0.0.1:4443/anon";
pub const DEFAULT_BROADCAST: &str = "live";
/// whipserversrc's own default listener.
pub const DEFAULT_WHIP_SERVER: &str = "http://127.0.0.1:8080";
/// whepserversink's own default listener.
pub const DEFAULT_WHEP_SERVER: &str = "http://127.0.0.1:9090";

/// The video codec a gateway carries. The same codec on both sides, so
/// nothing is re-encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Video {
    H264,
    Vp8,
    Vp9,
    H265,
}

impl Video {
    pub fn parse(name: &str) -> Option<Self> {
        match name.to_ascii_lowercase().as_str() {
            "h264" | "avc" => Some(Video::H264),
            "vp8" => Some(Video::Vp8),
            "vp9" => Some(Video::Vp9),
            "h265" | "hevc" => Some(Video::H265),
            _ => None,
        }
    }

    /// The codec name webrtcsrc's `video-codecs` takes.
    pub fn webrtc_name(self) -> &'static str {
        match self {
            Video::H264 => "H264",
            Video::Vp8 => "VP8",
            Video::Vp9 => "VP9",
            Video::H265 => "H265",
        }
    }

    /// What sits between a WebRTC source pad and moqsink: the RTP
    /// depayloader, so webrtcsrc hands over RTP (after its jitter buffer)
    /// instead of plugging its own decodebin3. There the H.264/H.265
    /// depayloader emits single NAL units, and the parser behind it can only
    /// tell an access unit is complete when the next one begins: every frame
    /// waited one frame interval (33 ms at 30 fps). Asked for access units,
    /// the depayloader ends each at the RTP marker bit and flags it; moqsink
    /// joins what it still splits (see moqsink's `assemble`). No parser: it
    /// would flag every piece as a whole frame.
    pub fn ingest_chain(self) -> &'static str {
        match self {
            Video::H264 => {
                "rtph264depay ! capsfilter caps=video/x-h264,stream-format=byte-stream,alignment=au"
            }
            Video::H265 => {
                "rtph265depay ! capsfilter caps=video/x-h265,stream-format=byte-stream,alignment=au"
            }
            Video::Vp8 => "rtpvp8depay",
            Video::Vp9 => "rtpvp9depay",
        }
    }

    /// What sits between moqsrc's video pad and a WebRTC sink. For H.264 and
    /// H.265 a parser turns the stream into `avc`/`hvc1` with the parameter
    /// sets in the caps: webrtcsink works out its payloader from the caps,
    /// once for the stream and again for each viewer's offer, and from
    /// byte-stream it has to wait for the next keyframe each time (up to a
    /// group, seconds, before a viewer's answer). The parser adds no delay
    /// on whole access units.
    pub fn egress_chain(self) -> &'static str {
        match self {
            Video::H264 => {
                "h264parse ! capsfilter caps=video/x-h264,stream-format=avc,alignment=au"
            }
            Video::H265 => {
                "h265parse ! capsfilter caps=video/x-h265,stream-format=hvc1,alignment=au"
            }
            Video::Vp8 | Video::Vp9 => "identity",
        }
    }

    /// The caps a WebRTC sink may send, so it never re-encodes.
    fn egress_caps(self) -> &'static str {
        match self {
            Video::H264 => "video/x-h264",
            Video::Vp8 => "video/x-vp8",
            Video::Vp9 => "video/x-vp9",
            Video::H265 => "video/x-h265",
        }
    }
}

/// Every codec a gateway carries, for a WebRTC sink that learns which one
/// it sends only when the MoQ catalog arrives (serve mode).
const ALL_VIDEO: [Video; 4] = [Video::H264, Video::Vp8, Video::Vp9, Video::H265];

/// What sits between a WebRTC source's audio pad and moqsink: Opus only,
/// depayloaded here like the video (see `Video::ingest_chain`).
pub const AUDIO_INGEST_CHAIN: &str = "rtpopusdepay";
/// What decodebin3 stops at in front of a WebRTC sink: Opus passes through,
/// anything else (AAC) is decoded and the WebRTC sink encodes Opus.
pub const AUDIO_EGRESS_CAPS: &str = "audio/x-opus;audio/x-raw";

/// A WebRTC element's settings as (property, value in gst_parse's syntax):
/// one list for a preset's text and for the elements serve mode builds, so
/// the two gateways cannot drift apart.
pub type Settings = Vec<(&'static str, String)>;

/// The WebRTC source of an ingest: the video codec the gateway carries (none:
/// audio only) and Opus, so the source never plugs a decoder.
pub fn ingest_settings(video: Option<Video>, stun: Option<&str>) -> Settings {
    vec![
        ("stun-server", stun.unwrap_or_default().to_owned()),
        (
            "video-codecs",
            format!("<{}>", video.map(Video::webrtc_name).unwrap_or_default()),
        ),
        ("audio-codecs", "<OPUS>".to_owned()),
    ]
}

/// The WebRTC sink of an egress: it may send the codec that arrives (any the
/// gateway carries when that is not known yet), so video is never
/// re-encoded, and Opus; no congestion control, as there is no encoder of
/// ours whose bitrate it could steer.
pub fn egress_settings(video: Option<Video>, stun: Option<&str>) -> Settings {
    let video_caps = match video {
        Some(video) => video.egress_caps().to_owned(),
        None => ALL_VIDEO.map(Video::egress_caps).join(";"),
    };
    vec![
        ("stun-server", stun.unwrap_or_default().to_owned()),
        ("congestion-control", "disabled".to_owned()),
        ("video-caps", video_caps),
        ("audio-caps", "audio/x-opus".to_owned()),
    ]
}

/// Settings as they go into a pipeline description.
fn settings_text(settings: &Settings) -> String {
    settings
        .iter()
        .map(|(name, value)| format!("{name}={}", quote(value)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The four gateway directions, and a rendition ladder published from a
/// test pattern.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Preset {
    WhipToMoq,
    MoqToWhep,
    WhepToMoq,
    MoqToWhip,
    Ladder,
}

impl Preset {
    pub const ALL: [Preset; 5] = [
        Preset::WhipToMoq,
        Preset::MoqToWhep,
        Preset::WhepToMoq,
        Preset::MoqToWhip,
        Preset::Ladder,
    ];

    /// Whether the preset has a WebRTC side (all but the ladder).
    pub fn is_gateway(self) -> bool {
        self != Preset::Ladder
    }

    pub fn name(self) -> &'static str {
        match self {
            Preset::WhipToMoq => "whip-to-moq",
            Preset::MoqToWhep => "moq-to-whep",
            Preset::WhepToMoq => "whep-to-moq",
            Preset::MoqToWhip => "moq-to-whip",
            Preset::Ladder => "ladder",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.name() == name)
    }

    pub fn summary(self) -> &'static str {
        match self {
            Preset::WhipToMoq => "a WHIP publisher (OBS, a browser) feeds a MoQ broadcast",
            Preset::MoqToWhep => "WHEP viewers (browsers) watch a MoQ broadcast",
            Preset::WhepToMoq => "pull from a WHEP server into a MoQ broadcast",
            Preset::MoqToWhip => "push a MoQ broadcast to a WHIP server",
            Preset::Ladder => {
                "publish a test pattern as three renditions (720p, 360p, 180p) for adaptive players"
            }
        }
    }
}

/// Everything a preset leaves open, with defaults that work on one machine.
#[derive(Clone, Debug)]
pub struct Options {
    pub relay: String,
    pub broadcast: String,
    pub video: Video,
    /// The WebRTC side: the listener of a server preset (`http://HOST:PORT`)
    /// or the endpoint of a client preset (a WHIP/WHEP URL).
    pub webrtc: Option<String>,
    /// STUN server for ICE (`stun://host:port`); none by default, which
    /// is what loopback and LAN peers need.
    pub stun: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            relay: DEFAULT_RELAY.into(),
            broadcast: DEFAULT_BROADCAST.into(),
            video: Video::H264,
            webrtc: None,
            stun: None,
        }
    }
}

impl Options {
    fn webrtc_or(&self, default: &str) -> String {
        self.webrtc.clone().unwrap_or_else(|| default.to_owned())
    }
}

/// Quotes a property value for gst_parse_launch when it needs it.
fn quote(value: &str) -> String {
    let plain = !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:@%+=?&".contains(c));
    if plain {
        value.to_owned()
    } else {
        format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""))
    }
}

/// The pipeline description of a preset.
pub fn describe(preset: Preset, opts: &Options) -> String {
    match preset {
        Preset::WhipToMoq | Preset::WhepToMoq => describe_ingest(preset, opts),
        Preset::MoqToWhep | Preset::MoqToWhip => describe_egress(preset, opts),
        Preset::Ladder => describe_ladder(opts),
    }
}

/// The ladder's renditions: width, height, bitrate in kbit/s.
pub const LADDER: [(u32, u32, u32); 3] = [(1280, 720, 2500), (640, 360, 800), (320, 180, 250)];
/// Frames between keyframes in every rendition: a 2 s group at 30 fps.
const LADDER_GOP: u32 = 60;

/// The H.264 level of every rendition (the 720p one's). The encoder would
/// pick one per picture size, and a WebRTC viewer's H.264 payloader cannot
/// move between levels mid-stream (its caps carry the profile-level-id the
/// session was answered with): with one level the renditions are
/// interchangeable on one WHEP session.
const LADDER_H264_LEVEL: &str = "3.1";

/// One rendition of the ladder from raw video: scaled to `width`x`height`
/// (with borders when the source's shape differs: the picture size stays
/// the same when a WebRTC source changes its own) and encoded.
pub fn ladder_rung(video: Video, width: u32, height: u32, kbps: u32) -> String {
    format!(
        "queue ! videoscale ! video/x-raw,width={width},height={height},pixel-aspect-ratio=1/1 ! {}",
        video.ladder_encoder(kbps)
    )
}

impl Video {
    /// The decoder serve's `?ladder=1` puts a WHIP publisher's video
    /// through before encoding it into the ladder.
    pub fn decoder(self) -> &'static str {
        match self {
            Video::H264 => "avdec_h264",
            Video::H265 => "avdec_h265",
            Video::Vp8 => "vp8dec",
            Video::Vp9 => "vp9dec",
        }
    }

    /// An encoder for a rendition of the ladder, with a keyframe every
    /// `LADDER_GOP` frames and none in between (no scene-cut keyframes),
    /// so the renditions' groups start at the same frames.
    fn ladder_encoder(self, kbps: u32) -> String {
        match self {
            Video::H264 => format!(
                "x264enc tune=zerolatency speed-preset=ultrafast bitrate={kbps} \
                 key-int-max={LADDER_GOP} option-string=scenecut=0 \
                 ! video/x-h264,level=(string){LADDER_H264_LEVEL} ! h264parse"
            ),
            Video::H265 => format!(
                "x265enc tune=zerolatency speed-preset=ultrafast bitrate={kbps} \
                 key-int-max={LADDER_GOP} option-string=scenecut=0 ! h265parse"
            ),
            Video::Vp8 => format!(
                "vp8enc deadline=1 cpu-used=8 end-usage=cbr target-bitrate={} \
                 keyframe-max-dist={LADDER_GOP}",
                kbps * 1000
            ),
            Video::Vp9 => format!(
                "vp9enc deadline=1 cpu-used=8 end-usage=cbr target-bitrate={} \
                 keyframe-max-dist={LADDER_GOP}",
                kbps * 1000
            ),
        }
    }
}

/// One live test pattern (a moving zone plate, which encoders spend bits
/// on the way they do on camera video; with a tone) scaled and encoded into the
/// `LADDER` renditions, all published by one moqsink: the video tracks of
/// one broadcast are renditions of one source in its catalog, with the
/// bitrates they are encoded at (a viewer's rendition is chosen by them).
/// moqsink passes a keyframe request of one rendition to
/// all, which keeps the groups aligned.
fn describe_ladder(opts: &Options) -> String {
    let (width, height, _) = LADDER[0];
    let rungs: Vec<String> = LADDER
        .iter()
        .enumerate()
        .map(|(i, (w, h, kbps))| {
            format!(
                "src. ! {} ! moq.video_{i}",
                ladder_rung(opts.video, *w, *h, *kbps)
            )
        })
        .collect();
    let bitrates: Vec<String> = LADDER
        .iter()
        .enumerate()
        .map(|(i, (_, _, kbps))| format!("video_{i}::bitrate={}", kbps * 1000))
        .collect();
    format!(
        "moqsink name=moq url={relay} broadcast={broadcast} {bitrates} \
         videotestsrc is-live=true pattern=zone-plate kx2=20 ky2=20 kt=1 \
         ! video/x-raw,format=I420,width={width},height={height},framerate=30/1 ! tee name=src \
         {rungs} \
         audiotestsrc is-live=true wave=ticks ! audio/x-raw,rate=48000,channels=2 \
         ! opusenc ! moq.audio_0",
        rungs = rungs.join(" "),
        bitrates = bitrates.join(" "),
        relay = quote(&opts.relay),
        broadcast = quote(&opts.broadcast),
    )
}

/// A preset's WebRTC element, named `webrtc`, with where it listens (a
/// server) or what it dials (a client).
/// The ladder has none: it is empty.
fn webrtc_element(preset: Preset, opts: &Options) -> String {
    let (element, signaller, default) = match preset {
        Preset::Ladder => return String::new(),
        Preset::WhipToMoq => ("whipserversrc", "host-addr", DEFAULT_WHIP_SERVER.to_owned()),
        Preset::MoqToWhep => (
            "whepserversink",
            "host-addr",
            DEFAULT_WHEP_SERVER.to_owned(),
        ),
        Preset::WhepToMoq => (
            "whepclientsrc",
            "whep-endpoint",
            format!("{DEFAULT_WHEP_SERVER}/whep/endpoint"),
        ),
        Preset::MoqToWhip => (
            "whipclientsink",
            "whip-endpoint",
            format!("{DEFAULT_WHIP_SERVER}/whip/endpoint"),
        ),
    };
    format!(
        "{element} name=webrtc signaller::{signaller}={}",
        quote(&opts.webrtc_or(&default))
    )
}

/// WebRTC in (a WHIP server or a WHEP client), MoQ out.
fn describe_ingest(preset: Preset, opts: &Options) -> String {
    let source = webrtc_element(preset, opts);
    format!(
        "{source} {settings} \
         moqsink name=moq url={relay} broadcast={broadcast} \
         webrtc.video_0 ! queue ! {chain} ! moq.video_0 \
         webrtc.audio_0 ! queue ! {AUDIO_INGEST_CHAIN} ! moq.audio_0",
        settings = settings_text(&ingest_settings(Some(opts.video), opts.stun.as_deref())),
        chain = opts.video.ingest_chain(),
        relay = quote(&opts.relay),
        broadcast = quote(&opts.broadcast),
    )
}

/// MoQ in, WebRTC out (a WHEP server or a WHIP client).
fn describe_egress(preset: Preset, opts: &Options) -> String {
    let sink = webrtc_element(preset, opts);
    // Audio: Opus passes through; anything else (AAC) is decoded and the
    // WebRTC sink encodes it to Opus. The queue after decodebin3 matters: a
    // WebRTC sink's request pad must be linked while parsing, not from
    // pad-added (webrtcsink renames a pad that gst_parse requested and
    // released, then panics on it).
    format!(
        "moqsrc name=moq url={relay} broadcast={broadcast} \
         {sink} {settings} \
         moq.video_0 ! queue ! {vchain} ! webrtc.video_0 \
         moq.audio_0 ! queue ! decodebin3 caps=\"{AUDIO_EGRESS_CAPS}\" ! queue ! webrtc.audio_0",
        settings = settings_text(&egress_settings(Some(opts.video), opts.stun.as_deref())),
        vchain = opts.video.egress_chain(),
        relay = quote(&opts.relay),
        broadcast = quote(&opts.broadcast),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(
            quote("http://127.0.0.1:4443/anon"),
            "http://127.0.0.1:4443/anon"
        );
        assert_eq!(quote(""), "\"\"");
        assert_eq!(quote("a b"), "\"a b\"");
        assert_eq!(quote("say \"hi\""), "\"say \\\"hi\\\"\"");
    }

    #[test]
    fn every_preset_names_both_sides() {
        for preset in Preset::ALL {
            assert_eq!(Preset::parse(preset.name()), Some(preset));
            let text = describe(preset, &Options::default());
            assert!(text.contains("url=http://127.0.0.1:4443/anon"), "{text}");
            assert!(text.contains("broadcast=live"), "{text}");
            assert_eq!(text.contains("name=webrtc"), preset.is_gateway(), "{text}");
            assert!(text.contains("name=moq"), "{text}");
        }
        let ladder = describe(Preset::Ladder, &Options::default());
        for pad in ["moq.video_0", "moq.video_1", "moq.video_2", "moq.audio_0"] {
            assert!(ladder.contains(pad), "{ladder}");
        }
        assert_eq!(Preset::parse("moq-to-nowhere"), None);
    }

    #[test]
    fn codec_choice_reaches_the_pipeline() {
        let opts = Options {
            video: Video::Vp8,
            ..Options::default()
        };
        let ingest = describe(Preset::WhipToMoq, &opts);
        assert!(ingest.contains("video-codecs=\"<VP8>\""), "{ingest}");
        assert!(!ingest.contains("h264parse"), "{ingest}");
        let egress = describe(Preset::MoqToWhep, &opts);
        assert!(egress.contains("video-caps=video/x-vp8"), "{egress}");
        assert_eq!(Video::parse("H264"), Some(Video::H264));
        assert_eq!(Video::parse("av1"), None);
    }
}
