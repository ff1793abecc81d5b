// SPDX-License-Identifier: MIT OR Apache-2.0

//! In-band parameter sets of byte-stream H.264 and H.265.
//!
//! A subscriber joins at a keyframe and has nothing but that group: if the
//! keyframe does not carry the SPS/PPS (and VPS) itself, nothing in the group
//! decodes. Encoders and WebRTC depayloaders often send them only once, at
//! the start. So each keyframe is checked: one that carries its parameter
//! sets refreshes what is remembered; one that lacks some gets the whole set
//! put in front, in stream order (after an access unit delimiter, which must
//! stay first), like `h264parse config-interval=-1` would. Only the NAL units
//! before the first slice are looked at, so the cost does not grow with the
//! frame size. Pure code, no I/O.

use bytes::{BufMut, Bytes, BytesMut};

/// Which codec's NAL unit header to read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Codec {
    H264,
    H265,
}

/// The parameter set kinds a codec needs, in the order they go in a stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Vps,
    Sps,
    Pps,
}

/// What one NAL unit is, as far as this module cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Nal {
    Delimiter,
    Param(Kind),
    /// A slice: parameter sets never come after one within an access unit.
    Slice,
    Other,
}

impl Codec {
    fn needs(self) -> &'static [Kind] {
        match self {
            Codec::H264 => &[Kind::Sps, Kind::Pps],
            Codec::H265 => &[Kind::Vps, Kind::Sps, Kind::Pps],
        }
    }

    fn classify(self, header: u8) -> Nal {
        match self {
            Codec::H264 => match header & 0x1f {
                1..=5 => Nal::Slice,
                7 => Nal::Param(Kind::Sps),
                8 => Nal::Param(Kind::Pps),
                9 => Nal::Delimiter,
                _ => Nal::Other,
            },
            Codec::H265 => match (header >> 1) & 0x3f {
                0..=31 => Nal::Slice,
                32 => Nal::Param(Kind::Vps),
                33 => Nal::Param(Kind::Sps),
                34 => Nal::Param(Kind::Pps),
                35 => Nal::Delimiter,
                _ => Nal::Other,
            },
        }
    }

    pub fn names(self) -> &'static str {
        match self {
            Codec::H264 => "SPS/PPS",
            Codec::H265 => "VPS/SPS/PPS",
        }
    }
}

/// A keyframe that lacks parameter sets none of the earlier ones supplied.
#[derive(Debug, PartialEq, Eq)]
pub struct Missing;

/// The next start code at or after `from`: (where its zeros begin, where
/// the NAL unit after it begins).
fn next_start(au: &[u8], from: usize) -> Option<(usize, usize)> {
    let mut i = from;
    while i + 3 <= au.len() {
        if au[i + 2] > 1 {
            i += 3;
        } else if au[i] == 0 && au[i + 1] == 0 && au[i + 2] == 1 {
            let mut code = i;
            while code > from && au[code - 1] == 0 {
                code -= 1;
            }
            return Some((code, i + 3));
        } else {
            i += 1;
        }
    }
    None
}

/// Whether an Annex-B buffer holds picture data (a slice), not only
/// parameter sets, delimiters or SEI. Stops at the first slice, so the
/// slice data itself is never scanned.
pub fn has_slice(codec: Codec, data: &[u8]) -> bool {
    let mut at = next_start(data, 0);
    while let Some((_, begin)) = at {
        let Some(&header) = data.get(begin) else {
            return false;
        };
        if codec.classify(header) == Nal::Slice {
            return true;
        }
        at = next_start(data, begin);
    }
    false
}

/// The last parameter sets seen on a track.
#[derive(Debug)]
pub struct ParamSets {
    codec: Codec,
    /// One per kind the codec needs, in `Codec::needs` order.
    known: Vec<Option<Bytes>>,
}

impl ParamSets {
    pub fn new(codec: Codec) -> Self {
        Self {
            codec,
            known: vec![None; codec.needs().len()],
        }
    }

    pub fn codec(&self) -> Codec {
        self.codec
    }

    /// Checks a keyframe (one Annex-B access unit): returns it unchanged when
    /// it carries every parameter set (and remembers them), else a copy with
    /// the full set in front, or `Missing` when some were never seen.
    pub fn complete(&mut self, au: Bytes) -> Result<Bytes, Missing> {
        let needs = self.codec.needs();
        let mut present = vec![false; needs.len()];
        // Where parameter sets go: after a delimiter that opens the unit.
        let mut insert_at = 0;
        // The unit's own parameter sets, with their start codes.
        let mut own = Vec::new();
        let mut at = next_start(&au, 0);
        let mut index = 0;
        while let Some((code, begin)) = at {
            let Some(&header) = au.get(begin) else {
                break;
            };
            let nal = self.codec.classify(header);
            // The slice is the bulk of the frame: it is never scanned.
            if nal == Nal::Slice {
                break;
            }
            at = next_start(&au, begin);
            // The zero bytes before a 4-byte start code belong to it, not
            // to the unit before (trailing zeros are not part of a unit).
            let end = at.map_or(au.len(), |(next, _)| next);
            match nal {
                Nal::Delimiter if index == 0 => insert_at = end,
                Nal::Param(kind) => {
                    if let Some(slot) = needs.iter().position(|k| *k == kind) {
                        present[slot] = true;
                        own.push((code, end));
                        let unit = &au[begin..end];
                        // Changed ones are copied (they are tiny), the frame is not.
                        if self.known[slot].as_deref() != Some(unit) {
                            self.known[slot] = Some(Bytes::copy_from_slice(unit));
                        }
                    }
                }
                _ => {}
            }
            index += 1;
        }
        if present.iter().all(|p| *p) {
            return Ok(au);
        }
        self.with_all_sets(&au, insert_at, &own)
    }

    /// `au` with the full set of parameter sets written in stream order (VPS,
    /// SPS, PPS; the unit's own ones are the newest known) at `insert_at`,
    /// and the unit's own copies (`own`: start code and end of each) left
    /// out, so a PPS never precedes its SPS.
    fn with_all_sets(
        &self,
        au: &Bytes,
        insert_at: usize,
        own: &[(usize, usize)],
    ) -> Result<Bytes, Missing> {
        let sets = self
            .known
            .iter()
            .map(|set| set.as_ref().ok_or(Missing))
            .collect::<Result<Vec<_>, _>>()?;
        let extra: usize = sets.iter().map(|p| p.len() + 4).sum();
        let mut out = BytesMut::with_capacity(au.len() + extra);
        out.put_slice(&au[..insert_at]);
        for set in sets {
            out.put_slice(&[0, 0, 0, 1]);
            out.put_slice(set);
        }
        let mut cursor = insert_at;
        for &(code, end) in own {
            out.put_slice(&au[cursor..code]);
            cursor = end;
        }
        out.put_slice(&au[cursor..]);
        Ok(out.freeze())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SC: &[u8] = &[0, 0, 0, 1];

    fn au(units: &[&[u8]]) -> Bytes {
        let mut out = Vec::new();
        for u in units {
            out.extend_from_slice(SC);
            out.extend_from_slice(u);
        }
        Bytes::from(out)
    }

    const AUD: &[u8] = &[0x09, 0xf0];
    const SPS: &[u8] = &[0x67, 0x42, 0xc0, 0x1f, 0xda];
    const SPS2: &[u8] = &[0x67, 0x42, 0xc0, 0x28, 0xda];
    const PPS: &[u8] = &[0x68, 0xce, 0x3c, 0x80];
    const IDR: &[u8] = &[0x65, 0x88, 0x84, 0x00, 0x00, 0x03, 0x00, 0x01];

    #[test]
    fn a_complete_keyframe_passes_unchanged() {
        let mut p = ParamSets::new(Codec::H264);
        let frame = au(&[AUD, SPS, PPS, IDR]);
        let out = p.complete(frame.clone()).unwrap();
        assert_eq!(out, frame);
        // Unchanged means the same memory, not a copy.
        assert_eq!(out.as_ptr(), frame.as_ptr());
    }

    #[test]
    fn a_bare_keyframe_gets_the_remembered_sets_after_its_delimiter() {
        let mut p = ParamSets::new(Codec::H264);
        p.complete(au(&[SPS, PPS, IDR])).unwrap();
        let out = p.complete(au(&[AUD, IDR])).unwrap();
        assert_eq!(out, au(&[AUD, SPS, PPS, IDR]));
        let out = p.complete(au(&[IDR])).unwrap();
        assert_eq!(out, au(&[SPS, PPS, IDR]));
    }

    #[test]
    fn a_partial_set_is_completed_in_order() {
        let mut p = ParamSets::new(Codec::H264);
        p.complete(au(&[SPS, PPS, IDR])).unwrap();
        // The full set in stream order, the unit's own SPS first.
        let out = p.complete(au(&[SPS2, IDR])).unwrap();
        assert_eq!(out, au(&[SPS2, PPS, IDR]));
        // The newer SPS is the one remembered.
        assert_eq!(p.complete(au(&[IDR])).unwrap(), au(&[SPS2, PPS, IDR]));
    }

    #[test]
    fn never_seen_is_missing() {
        let mut p = ParamSets::new(Codec::H264);
        assert_eq!(p.complete(au(&[AUD, IDR])), Err(Missing));
        // A PPS alone is not enough either.
        assert_eq!(p.complete(au(&[PPS, IDR])), Err(Missing));
        assert_eq!(p.complete(au(&[SPS, IDR])).unwrap(), au(&[SPS, PPS, IDR]));
    }

    #[test]
    fn units_after_the_first_slice_are_not_parameter_sets() {
        let mut p = ParamSets::new(Codec::H264);
        // An SPS after the slice does not count (and is not looked at).
        assert_eq!(p.complete(au(&[IDR, SPS, PPS])), Err(Missing));
    }

    #[test]
    fn three_byte_start_codes_and_trailing_zeros() {
        let mut p = ParamSets::new(Codec::H264);
        let mut raw = vec![0, 0, 1];
        raw.extend_from_slice(SPS);
        raw.extend_from_slice(&[0, 0, 0, 1]);
        raw.extend_from_slice(PPS);
        raw.extend_from_slice(&[0, 0, 1]);
        raw.extend_from_slice(IDR);
        p.complete(Bytes::from(raw)).unwrap();
        // The SPS was cut before the next start code's zeros.
        assert_eq!(p.complete(au(&[IDR])).unwrap(), au(&[SPS, PPS, IDR]));
    }

    #[test]
    fn h265_needs_vps_sps_and_pps() {
        const VPS: &[u8] = &[0x40, 0x01, 0x0c];
        const SPS: &[u8] = &[0x42, 0x01, 0x01];
        const PPS: &[u8] = &[0x44, 0x01, 0xc1];
        const AUD: &[u8] = &[0x46, 0x01, 0x50];
        const IDR: &[u8] = &[0x26, 0x01, 0xaf];
        let mut p = ParamSets::new(Codec::H265);
        assert_eq!(p.complete(au(&[SPS, PPS, IDR])), Err(Missing));
        p.complete(au(&[VPS, SPS, PPS, IDR])).unwrap();
        assert_eq!(
            p.complete(au(&[AUD, IDR])).unwrap(),
            au(&[AUD, VPS, SPS, PPS, IDR])
        );
    }

    #[test]
    fn slices_are_found_without_reading_them() {
        let sps: &[u8] = &[0x67, 1, 2];
        let pps: &[u8] = &[0x68, 3];
        let idr: &[u8] = &[0x65, 9, 9, 9];
        assert!(has_slice(Codec::H264, &au(&[sps, pps, idr])));
        assert!(!has_slice(Codec::H264, &au(&[sps, pps])));
        assert!(has_slice(Codec::H264, &au(&[&[0x41, 7]])));
        assert!(!has_slice(Codec::H264, &[]));
        // H.265: VPS (32) alone, then an IDR_W_RADL (19).
        assert!(!has_slice(Codec::H265, &au(&[&[32 << 1, 1]])));
        assert!(has_slice(Codec::H265, &au(&[&[32 << 1, 1], &[19 << 1, 1]])));
    }

    #[test]
    fn garbage_never_panics() {
        let mut p = ParamSets::new(Codec::H264);
        for raw in [
            &[][..],
            &[0],
            &[0, 0, 1],
            &[0, 0, 0, 1],
            &[0, 0, 1, 0, 0, 1],
            &[1, 2, 3, 4, 5],
            &[0, 0, 0, 0, 0, 1, 0x67],
        ] {
            let _ = p.complete(Bytes::copy_from_slice(raw));
        }
        let mut p = ParamSets::new(Codec::H265);
        let _ = p.complete(Bytes::from_static(&[0, 0, 1, 0x40]));
    }
}
