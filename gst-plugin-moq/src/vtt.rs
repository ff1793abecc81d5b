// SPDX-License-Identifier: MIT OR Apache-2.0

//! WebVTT between GStreamer and the hang catalog's `vtt` text tracks.
//! GStreamer streams WebVTT as a file: `webvttenc` sends the `WEBVTT` header
//! once, in a buffer of its own, then one cue block per buffer. A hang `vtt`
//! frame is a self-contained WebVTT segment (header and cues), so that a
//! subscriber who joins at any cue can parse it. moqsink keeps the header and
//! puts it in front of each cue block that lacks it (`Header`); moqsrc gives
//! the header once and then the cue blocks (`split`), so what it gives is a
//! WebVTT file again. Pure code.

use bytes::{Bytes, BytesMut};

/// The header of a file with no header block of its own.
const PLAIN_HEADER: &[u8] = b"WEBVTT\n\n";
const SIGNATURE: &[u8] = b"WEBVTT";
const BOM: &[u8] = b"\xef\xbb\xbf";

/// The last WebVTT header seen on a pad.
#[derive(Debug, Clone)]
pub struct Header {
    header: Bytes,
}

impl Default for Header {
    fn default() -> Self {
        Header {
            header: Bytes::from_static(PLAIN_HEADER),
        }
    }
}

impl Header {
    /// What to publish for `buffer`: the buffer itself when it is a whole
    /// segment, the header and the buffer when it is a cue block, nothing
    /// when it is only a header (kept for the cues that follow).
    pub fn segment(&mut self, buffer: Bytes) -> Option<Bytes> {
        let text = buffer.strip_prefix(BOM).unwrap_or(&buffer);
        if !text.starts_with(SIGNATURE) {
            let mut segment = BytesMut::with_capacity(self.header.len() + buffer.len());
            segment.extend_from_slice(&self.header);
            segment.extend_from_slice(&buffer);
            return Some(segment.freeze());
        }
        if has_cue(text) {
            return Some(buffer);
        }
        // A header alone: it must end with the blank line that ends a block,
        // or the first cue line would read as part of it.
        let mut header = BytesMut::from(text);
        while !header.ends_with(b"\n\n") {
            header.extend_from_slice(b"\n");
        }
        self.header = header.freeze();
        None
    }
}

/// A segment as its header (when it starts with one) and its cue blocks,
/// both sharing the segment's memory. The cue blocks end with the blank line
/// that separates them from the next segment's (moq-gst ends a segment with
/// a single newline): only then is a copy made, to add it.
pub fn split(segment: &Bytes) -> (Option<Bytes>, Bytes) {
    let text = segment.strip_prefix(BOM).unwrap_or(segment);
    if !text.starts_with(SIGNATURE) {
        return (None, closed(segment.clone()));
    }
    // The header block ends at the first blank line.
    let end = segment
        .windows(2)
        .position(|w| w == b"\n\n")
        .map_or(segment.len(), |at| at + 2);
    (Some(segment.slice(..end)), closed(segment.slice(end..)))
}

/// Cue blocks that end with a blank line.
fn closed(cues: Bytes) -> Bytes {
    if cues.is_empty() || cues.ends_with(b"\n\n") {
        return cues;
    }
    let mut out = BytesMut::from(&cues[..]);
    while !out.ends_with(b"\n\n") {
        out.extend_from_slice(b"\n");
    }
    out.freeze()
}

/// Whether WebVTT text holds a cue timing line.
fn has_cue(text: &[u8]) -> bool {
    text.windows(3).any(|w| w == b"-->")
}

#[cfg(test)]
mod tests {
    use super::*;

    const CUE: &[u8] = b"00:00:01.000 --> 00:00:02.500\nHello\n\n";

    #[test]
    fn webvttenc_output_becomes_self_contained_segments() {
        let mut header = Header::default();
        // webvttenc: the header alone first, then cue blocks.
        assert_eq!(header.segment(Bytes::from_static(b"WEBVTT\n\n")), None);
        let segment = header.segment(Bytes::from_static(CUE)).unwrap();
        assert_eq!(&segment[..], [&b"WEBVTT\n\n"[..], CUE].concat());
    }

    #[test]
    fn cues_without_any_header_get_the_plain_one() {
        let mut header = Header::default();
        let segment = header.segment(Bytes::from_static(CUE)).unwrap();
        assert!(segment.starts_with(b"WEBVTT\n\n00:00:01.000"));
    }

    #[test]
    fn a_header_with_metadata_is_kept_whole_and_closed() {
        let mut header = Header::default();
        let custom = b"\xef\xbb\xbfWEBVTT - captions\nKind: captions\n";
        assert_eq!(header.segment(Bytes::from_static(custom)), None);
        let segment = header.segment(Bytes::from_static(CUE)).unwrap();
        assert_eq!(
            &segment[..],
            [&b"WEBVTT - captions\nKind: captions\n\n"[..], CUE].concat()
        );
    }

    #[test]
    fn segments_split_back_into_header_and_cues() {
        let mut header = Header::default();
        assert_eq!(header.segment(Bytes::from_static(b"WEBVTT\n\n")), None);
        let segment = header.segment(Bytes::from_static(CUE)).unwrap();
        let (head, cues) = split(&segment);
        assert_eq!(head.as_deref(), Some(&b"WEBVTT\n\n"[..]));
        assert_eq!(&cues[..], CUE);
        // Cue blocks with no header stay as they are.
        let (head, cues) = split(&Bytes::from_static(CUE));
        assert_eq!((head, &cues[..]), (None, CUE));
        // moq-gst's segments end with one newline: the blank line that
        // separates cue blocks is put back.
        let moq_gst = Bytes::from_static(b"WEBVTT\n\n00:00:01.000 --> 00:00:01.800\nline 0\n");
        let (_, cues) = split(&moq_gst);
        assert_eq!(&cues[..], b"00:00:01.000 --> 00:00:01.800\nline 0\n\n");
    }

    #[test]
    fn whole_segments_pass_untouched() {
        let mut header = Header::default();
        let whole = Bytes::from([&b"WEBVTT\n\n"[..], CUE].concat());
        let segment = header.segment(whole.clone()).unwrap();
        // The same memory, not a copy.
        assert_eq!(segment.as_ptr(), whole.as_ptr());
    }
}
