// SPDX-License-Identifier: MIT OR Apache-2.0

//! The IETF view of a broadcast: its MSF catalog (draft-ietf-moq-msf) and its
//! media as LOC objects (draft-ietf-moq-loc), as MoQT peers such as aiomoqt
//! read them. Pure: no I/O.
//!
//! Two framings answer to the name LOC. The MoQ project's crates (`moq-loc`,
//! `@moq/loc`) put a length-prefixed property block, timestamp included, at
//! the start of each frame's payload. The IETF draft puts the public
//! properties (the timestamp) in the MoQT object's properties and starts the
//! payload with the Private Properties block (type 0x0A) instead. moq-relay
//! forwards payloads untouched and carries a frame's timestamp into and out of
//! the object properties, so the two meet only if each side writes its own:
//! the hang catalog keeps listing hang's tracks, and the MSF catalog lists
//! twins of them in IETF LOC (see `moqsink::catalogs`).

use base64::Engine;
use bytes::Bytes;

/// The MSF catalog's track name.
pub const CATALOG_TRACK: &str = moq_msf::DEFAULT_NAME;

/// An empty LOC Private Properties block: type 0x0A, length 0. Every IETF
/// LOC payload starts with one (loc-04); we carry nothing private.
pub const EMPTY_PRIVATE_PROPERTIES: &[u8] = &[0x0A, 0x00];

/// The name of the IETF LOC twin of the hang track `name`.
pub fn loc_track(name: &str) -> String {
    format!("{name}.loc")
}

/// The media of an IETF LOC payload: what follows its Private Properties
/// block. Strict: a payload without the block (a publisher predating
/// loc-04) is refused rather than guessed at, since media may well start
/// with the byte 0x0A (an Opus TOC byte can).
pub fn loc_media(payload: Bytes) -> Result<Bytes, &'static str> {
    if payload.first() != Some(&0x0A) {
        return Err("no LOC private properties block (type 0x0A)");
    }
    let mut rest = &payload[1..];
    let len = read_varint(&mut rest).ok_or("truncated LOC private properties")?;
    let start = payload.len() - rest.len();
    let end = usize::try_from(len)
        .ok()
        .and_then(|len| start.checked_add(len))
        .filter(|&end| end <= payload.len())
        .ok_or("LOC private properties run past the payload")?;
    Ok(payload.slice(end..))
}

/// A QUIC variable-length integer (RFC 9000 §16).
fn read_varint(buf: &mut &[u8]) -> Option<u64> {
    let first = *buf.first()?;
    let len = 1usize << (first >> 6);
    if buf.len() < len {
        return None;
    }
    let value = buf[1..len]
        .iter()
        .fold(u64::from(first & 0x3f), |v, b| (v << 8) | u64::from(*b));
    *buf = &buf[len..];
    Some(value)
}

/// The MSF catalog that lists the IETF LOC twin of every rendition of `hang`.
///
/// Renditions of one kind form an alternate group (MSF `altGroup`) when
/// there are several, and all render together (`renderGroup` 1). Codec
/// configuration (avcC, OpusHead, ...) goes in `initData`, base64, as MSF
/// asks for LOC tracks.
pub fn catalog(hang: &hang::Catalog) -> moq_msf::Catalog {
    let alt = |count: usize| (count > 1).then_some(1);
    let video_alt = alt(hang.video.renditions.len());
    let audio_alt = alt(hang.audio.renditions.len());
    let mut tracks = Vec::new();
    for (name, config) in &hang.video.renditions {
        let mut track = base_track(name, moq_msf::Role::Video, config.codec.to_string());
        track.width = config.coded_width;
        track.height = config.coded_height;
        track.framerate = config.framerate;
        track.bitrate = config.bitrate;
        track.init_data = config.description.as_deref().map(base64);
        track.alt_group = video_alt;
        // Every group opens on a keyframe (a closed GOP start).
        track.max_grp_sap_starting_type = Some(1);
        tracks.push(track);
    }
    for (name, config) in &hang.audio.renditions {
        let mut track = base_track(name, moq_msf::Role::Audio, config.codec.to_string());
        track.samplerate = Some(config.sample_rate);
        track.channel_config = Some(config.channel_count.to_string());
        track.bitrate = config.bitrate;
        track.init_data = config.description.as_deref().map(base64);
        track.alt_group = audio_alt;
        track.max_grp_sap_starting_type = Some(1);
        track.max_obj_sap_starting_type = Some(1);
        tracks.push(track);
    }
    moq_msf::Catalog::new(tracks)
}

/// `catalog` with the decoder configuration of each CMAF rendition that
/// lacks one taken from its init segment: moq-mux lists an MSF `cmaf` track
/// with the init segment as its container and no `description`, while caps
/// want the avcC/hvcC (the samples are length-prefixed) and AAC's
/// AudioSpecificConfig as `codec_data`.
pub fn with_cmaf_descriptions(mut catalog: hang::Catalog) -> hang::Catalog {
    for config in catalog.video.renditions.values_mut() {
        if config.description.is_none() {
            config.description = cmaf_description(&config.container);
        }
    }
    for config in catalog.audio.renditions.values_mut() {
        if config.description.is_none() {
            config.description = cmaf_description(&config.container);
        }
    }
    catalog
}

/// The decoder configuration in a CMAF init segment's sample entry: the
/// avcC or hvcC body, or AAC's AudioSpecificConfig. `None` for other
/// containers and for codecs that need none (VP8, VP9, AV1, Opus).
fn cmaf_description(container: &hang::catalog::Container) -> Option<Bytes> {
    use mp4_atom::{Atom, DecodeMaybe};
    let hang::catalog::Container::Cmaf { init } = container else {
        return None;
    };
    let mut cursor = std::io::Cursor::new(init.as_ref());
    let moov = loop {
        match mp4_atom::Any::decode_maybe(&mut cursor).ok()?? {
            mp4_atom::Any::Moov(moov) => break moov,
            _ => continue,
        }
    };
    let entry = moov.trak.first()?.mdia.minf.stbl.stsd.codecs.first()?;
    let mut body = Vec::new();
    match entry {
        mp4_atom::Codec::Avc1(avc1) => avc1.avcc.encode_body(&mut body).ok()?,
        mp4_atom::Codec::Hvc1(hvc1) => hvc1.hvcc.encode_body(&mut body).ok()?,
        mp4_atom::Codec::Hev1(hev1) => hev1.hvcc.encode_body(&mut body).ok()?,
        mp4_atom::Codec::Mp4a(mp4a) => {
            body.extend_from_slice(&mp4a.esds.es_desc.dec_config.dec_specific.as_ref()?.raw)
        }
        _ => return None,
    }
    Some(body.into())
}

fn base_track(name: &str, role: moq_msf::Role, codec: String) -> moq_msf::Track {
    let mut track = moq_msf::Track::new(loc_track(name), moq_msf::Packaging::Loc);
    track.is_live = true;
    track.role = Some(role);
    track.codec = Some(codec);
    track.render_group = Some(1);
    track
}

fn base64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hang::catalog::{AudioCodec, AudioConfig, H264, VideoCodec, VideoConfig};

    fn h264(height: u32) -> VideoConfig {
        let mut config = VideoConfig::new(VideoCodec::H264(H264 {
            profile: 0x42,
            constraints: 0xc0,
            level: 0x1f,
            inline: true,
        }));
        config.coded_width = Some(height * 16 / 9);
        config.coded_height = Some(height);
        config.framerate = Some(30.0);
        config
    }

    fn opus() -> AudioConfig {
        let mut config = AudioConfig::new(AudioCodec::Opus, 48_000, 2);
        config.description = Some(Bytes::from_static(b"OpusHead\x01\x02"));
        config
    }

    #[test]
    fn lists_loc_twins_with_codec_and_configuration() {
        let mut hang = hang::Catalog::default();
        hang.video.renditions.insert("0.avc3".into(), h264(720));
        hang.audio.renditions.insert("1.opus".into(), opus());

        let msf = catalog(&hang);
        assert_eq!(msf.tracks.len(), 2);
        let video = &msf.tracks[0];
        assert_eq!(video.name, "0.avc3.loc");
        assert_eq!(video.packaging, moq_msf::Packaging::Loc);
        assert_eq!(video.role, Some(moq_msf::Role::Video));
        assert_eq!(video.codec.as_deref(), Some("avc3.42c01f"));
        assert_eq!((video.width, video.height), (Some(1280), Some(720)));
        assert_eq!(
            video.init_data, None,
            "avc3 carries its parameter sets in band"
        );
        assert_eq!(
            video.alt_group, None,
            "a single rendition is no alternative"
        );
        assert!(video.is_live);

        let audio = &msf.tracks[1];
        assert_eq!(audio.name, "1.opus.loc");
        assert_eq!(audio.codec.as_deref(), Some("opus"));
        assert_eq!(audio.samplerate, Some(48_000));
        assert_eq!(audio.channel_config.as_deref(), Some("2"));
        let head = base64::engine::general_purpose::STANDARD
            .decode(audio.init_data.as_deref().unwrap())
            .unwrap();
        assert_eq!(head, b"OpusHead\x01\x02");

        // What an MSF reader parses back is what we built.
        let json = msf.to_json().unwrap();
        let parsed = moq_msf::Catalog::<()>::from_str(&json).unwrap();
        assert_eq!(parsed.tracks.len(), 2);
        assert!(json.contains("\"packaging\":\"loc\""), "{json}");
    }

    #[test]
    fn renditions_of_one_kind_are_alternatives() {
        let mut hang = hang::Catalog::default();
        hang.video.renditions.insert("high".into(), h264(720));
        hang.video.renditions.insert("low".into(), h264(360));
        hang.audio.renditions.insert("audio".into(), opus());
        let msf = catalog(&hang);
        let groups: Vec<_> = msf.tracks.iter().map(|t| t.alt_group).collect();
        assert_eq!(groups, [Some(1), Some(1), None]);
    }

    fn cmaf(init: &'static [u8]) -> hang::catalog::Container {
        hang::catalog::Container::Cmaf {
            init: Bytes::from_static(init),
        }
    }

    /// Init segments (ftyp + moov) that GStreamer's mp4mux wrote.
    #[test]
    fn cmaf_descriptions_come_from_the_init_segment() {
        let mut hang = hang::Catalog::default();
        let mut video = h264(240);
        video.container = cmaf(include_bytes!("testdata/h264-init.mp4"));
        hang.video.renditions.insert("video".into(), video);
        let mut audio = AudioConfig::new(
            AudioCodec::AAC(hang::catalog::AAC { profile: 2 }),
            44_100,
            1,
        );
        audio.container = cmaf(include_bytes!("testdata/aac-init.mp4"));
        hang.audio.renditions.insert("audio".into(), audio);
        let mut legacy = h264(240);
        legacy.container = hang::catalog::Container::Legacy;
        hang.video.renditions.insert("legacy".into(), legacy);

        let hang = with_cmaf_descriptions(hang);
        let avcc = hang.video.renditions["video"].description.clone().unwrap();
        // configurationVersion 1, then the SPS's profile (x264 at
        // speed-preset=ultrafast: constrained baseline).
        assert_eq!(avcc[0], 1);
        assert_eq!(avcc[1], 0x42);
        // AAC LC (object type 2), 44.1 kHz (index 4), mono.
        let asc = hang.audio.renditions["audio"].description.clone().unwrap();
        assert_eq!(&asc[..2], &[0x12, 0x08]);
        assert_eq!(hang.video.renditions["legacy"].description, None);
    }

    #[test]
    fn a_broken_init_segment_gives_no_description() {
        let mut hang = hang::Catalog::default();
        let mut video = h264(240);
        video.container = cmaf(b"\x00\x00\x00\x10moov\x00\x00");
        hang.video.renditions.insert("video".into(), video);
        let hang = with_cmaf_descriptions(hang);
        assert_eq!(hang.video.renditions["video"].description, None);
    }

    #[test]
    fn loc_media_skips_the_private_properties() {
        let empty = Bytes::from_static(&[0x0A, 0x00, 0x65, 0x88]);
        assert_eq!(loc_media(empty).unwrap(), &[0x65, 0x88][..]);
        let carried = Bytes::from_static(&[0x0A, 0x02, 0x10, 0x05, 0xFF]);
        assert_eq!(loc_media(carried).unwrap(), &[0xFF][..]);
        // Two-byte varint length (0x40 0x01 = 1).
        let long = Bytes::from_static(&[0x0A, 0x40, 0x01, 0x00, 0x42]);
        assert_eq!(loc_media(long).unwrap(), &[0x42][..]);
    }

    #[test]
    fn loc_media_refuses_a_block_past_the_payload() {
        assert!(loc_media(Bytes::from_static(&[0x0A, 0x05, 0x01])).is_err());
        assert!(loc_media(Bytes::from_static(&[0x0A])).is_err());
        assert!(loc_media(Bytes::from_static(&[0x0A, 0x40])).is_err());
        // No block at all: a bare payload from before loc-04.
        assert!(loc_media(Bytes::from_static(&[0x00, 0x00, 0x00, 0x01, 0x67])).is_err());
    }
}
