// SPDX-License-Identifier: MIT OR Apache-2.0

//! In-band AV1 sequence headers: what `paramsets` does for H.264/H.265.
//!
//! An AV1 decoder needs the sequence header before the first frame it
//! decodes, and the hang catalog gives it none out of band, so a subscriber
//! that joins at a keyframe without one decodes nothing. Some encoders and
//! WebRTC depayloaders send it only once. So each keyframe temporal unit is
//! checked: one that carries a sequence header refreshes what is remembered;
//! one that lacks it gets the remembered one put in after its temporal
//! delimiter (which must stay first). Only the OBU headers before the first
//! frame are read, never a frame's payload. Pure code, no I/O.

use bytes::{BufMut, Bytes, BytesMut};

use super::paramsets::Missing;

/// OBU types (AV1 spec, 6.2.2) this module tells apart.
const SEQUENCE_HEADER: u8 = 1;
const TEMPORAL_DELIMITER: u8 = 2;
const FRAME_HEADER: u8 = 3;
const TILE_GROUP: u8 = 4;
const FRAME: u8 = 6;
const REDUNDANT_FRAME_HEADER: u8 = 7;
const TILE_LIST: u8 = 8;

/// The bytes of an av1C record before its configOBUs.
const AV1C_HEADER: usize = 4;

/// One OBU of a low-overhead bitstream (`stream-format=obu-stream`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Obu {
    kind: u8,
    /// Whether it states its own size, as an OBU must to be put amid others.
    sized: bool,
    end: usize,
}

/// The OBU that starts at `at`, or None when the bytes are not one.
fn obu_at(data: &[u8], at: usize) -> Option<Obu> {
    let header = *data.get(at)?;
    // The forbidden bit.
    if header & 0x80 != 0 {
        return None;
    }
    let kind = (header >> 3) & 0x0f;
    let extension = header & 0x04 != 0;
    let sized = header & 0x02 != 0;
    let after_header = at + 1 + usize::from(extension);
    let end = if sized {
        let (size, length) = leb128(data.get(after_header..)?)?;
        after_header
            .checked_add(length)?
            .checked_add(usize::try_from(size).ok()?)?
    } else {
        // Without a size field an OBU runs to the end of the buffer.
        data.len()
    };
    (end <= data.len() && after_header <= end).then_some(Obu { kind, sized, end })
}

/// An unsigned LEB128 number (at most 8 bytes, AV1 spec 4.10.5): its value
/// and how many bytes it took.
fn leb128(data: &[u8]) -> Option<(u64, usize)> {
    let mut value = 0u64;
    for (i, byte) in data.iter().take(8).enumerate() {
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

/// The first sequence header of a run of OBUs, if it states its size.
fn find(data: &[u8]) -> Option<&[u8]> {
    let mut at = 0;
    while let Some(obu) = obu_at(data, at) {
        if obu.kind == SEQUENCE_HEADER {
            return obu.sized.then(|| &data[at..obu.end]);
        }
        at = obu.end;
    }
    None
}

/// The last sequence header seen on a track.
#[derive(Debug, Default)]
pub struct SequenceHeader {
    known: Option<Bytes>,
}

impl SequenceHeader {
    /// Remember the sequence header of an av1C record (caps' `codec_data`),
    /// when its configOBUs hold one: the first keyframe may lack it.
    pub fn seed(&mut self, av1c: &[u8]) {
        if let Some(seq) = av1c.get(AV1C_HEADER..).and_then(find) {
            self.known = Some(Bytes::copy_from_slice(seq));
        }
    }

    /// Checks a keyframe (one temporal unit): returns it unchanged when it
    /// carries a sequence header (and remembers it), else a copy with the
    /// remembered one put in, or `Missing` when none was ever seen.
    pub fn complete(&mut self, tu: Bytes) -> Result<Bytes, Missing> {
        let mut at = 0;
        let mut insert_at = 0;
        while let Some(obu) = obu_at(&tu, at) {
            match obu.kind {
                SEQUENCE_HEADER => {
                    let seq = &tu[at..obu.end];
                    // A changed one is copied (it is tiny), the frame is not.
                    if obu.sized && self.known.as_deref() != Some(seq) {
                        self.known = Some(Bytes::copy_from_slice(seq));
                    }
                    return Ok(tu);
                }
                TEMPORAL_DELIMITER if at == 0 => insert_at = obu.end,
                // A sequence header never follows a frame in its unit, and
                // the frames are the bulk of it: stop before them.
                FRAME_HEADER | TILE_GROUP | FRAME | REDUNDANT_FRAME_HEADER | TILE_LIST => break,
                _ => {}
            }
            at = obu.end;
        }
        let seq = self.known.as_ref().ok_or(Missing)?;
        let mut out = BytesMut::with_capacity(tu.len() + seq.len());
        out.put_slice(&tu[..insert_at]);
        out.put_slice(seq);
        out.put_slice(&tu[insert_at..]);
        Ok(out.freeze())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An OBU of `kind` with a size field and `payload`.
    fn obu(kind: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![(kind << 3) | 0x02];
        let mut size = payload.len();
        loop {
            let byte = (size & 0x7f) as u8;
            size >>= 7;
            if size == 0 {
                out.push(byte);
                break;
            }
            out.push(byte | 0x80);
        }
        out.extend_from_slice(payload);
        out
    }

    fn tu(obus: &[Vec<u8>]) -> Bytes {
        Bytes::from(obus.concat())
    }

    fn delimiter() -> Vec<u8> {
        obu(TEMPORAL_DELIMITER, &[])
    }

    fn seq(id: u8) -> Vec<u8> {
        obu(SEQUENCE_HEADER, &[id, 0, 0, 0x0a])
    }

    fn frame(size: usize) -> Vec<u8> {
        obu(FRAME, &vec![0x10; size])
    }

    #[test]
    fn a_keyframe_with_its_header_passes_untouched() {
        let mut headers = SequenceHeader::default();
        let key = tu(&[delimiter(), seq(1), frame(300)]);
        let out = headers.complete(key.clone()).unwrap();
        assert_eq!(out, key);
        // Shared, not copied.
        assert_eq!(out.as_ptr(), key.as_ptr());
    }

    #[test]
    fn a_keyframe_without_one_gets_the_last_after_its_delimiter() {
        let mut headers = SequenceHeader::default();
        headers
            .complete(tu(&[delimiter(), seq(1), frame(10)]))
            .unwrap();
        headers
            .complete(tu(&[delimiter(), seq(2), frame(10)]))
            .unwrap();
        let out = headers.complete(tu(&[delimiter(), frame(200)])).unwrap();
        assert_eq!(out, tu(&[delimiter(), seq(2), frame(200)]));
        // Without a delimiter it goes first.
        let out = headers.complete(tu(&[frame(5)])).unwrap();
        assert_eq!(out, tu(&[seq(2), frame(5)]));
    }

    #[test]
    fn metadata_before_the_frame_stays_after_the_header() {
        let mut headers = SequenceHeader::default();
        headers.complete(tu(&[seq(1), frame(1)])).unwrap();
        let metadata = obu(5, &[1, 2, 3]);
        let out = headers
            .complete(tu(&[delimiter(), metadata.clone(), frame(9)]))
            .unwrap();
        assert_eq!(out, tu(&[delimiter(), seq(1), metadata, frame(9)]));
    }

    #[test]
    fn none_ever_seen_is_missing() {
        let mut headers = SequenceHeader::default();
        assert_eq!(
            headers.complete(tu(&[delimiter(), frame(20)])),
            Err(Missing)
        );
        // Garbage is not read past.
        assert_eq!(
            headers.complete(Bytes::from_static(&[0xff, 1, 2])),
            Err(Missing)
        );
    }

    #[test]
    fn the_header_can_come_from_av1c() {
        let mut headers = SequenceHeader::default();
        let mut av1c = vec![0x81, 0x08, 0x0c, 0x00];
        av1c.extend(seq(7));
        headers.seed(&av1c);
        let out = headers.complete(tu(&[delimiter(), frame(3)])).unwrap();
        assert_eq!(out, tu(&[delimiter(), seq(7), frame(3)]));
        // A record without configOBUs seeds nothing.
        let mut bare = SequenceHeader::default();
        bare.seed(&[0x81, 0x08, 0x0c, 0x00]);
        assert_eq!(bare.complete(tu(&[frame(3)])), Err(Missing));
    }

    #[test]
    fn sizes_that_overrun_the_buffer_are_not_obus() {
        // Says 100 bytes, holds 2.
        assert_eq!(obu_at(&[SEQUENCE_HEADER << 3 | 0x02, 100, 1, 2], 0), None);
        // A LEB128 that never ends.
        assert_eq!(obu_at(&[FRAME << 3 | 0x02, 0x80, 0x80, 0x80], 0), None);
        assert_eq!(leb128(&[0xe5, 0x8e, 0x26]), Some((624_485, 3)));
    }
}
