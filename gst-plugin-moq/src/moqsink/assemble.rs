// SPDX-License-Identifier: MIT OR Apache-2.0

//! Whole frames out of buffers that carry pieces of them.
//!
//! RTP depayloaders (what a WebRTC source hands over) close a frame at the
//! RTP marker bit and say so with the buffer's MARKER flag. Asked for whole
//! access units, `rtph264depay` still splits one when a sender repeats the
//! parameter sets before every slice (GStreamer's own WebRTC sender does),
//! and only the first piece carries the timestamp. A parser behind it would
//! join them only once the next frame begins, a frame interval late (33 ms
//! at 30 fps), which is why moqsink joins them itself: pieces with the
//! frame's timestamp, or none, belong to it, and MARKER ends it at once.
//!
//! A MARKER on a piece without picture data (only parameter sets, which
//! the same sender also marks) does not end the frame: its slices follow.
//!
//! A stream that never sets MARKER (an encoder or a parser in front of
//! moqsink) has whole frames in every buffer and passes straight through.
//! A stream is only known to come in pieces once it shows it: its first
//! frame went out before its second piece came. That piece is dropped as an
//! orphan and the caller asks for a keyframe, so the damage ends there.

use bytes::{Bytes, BytesMut};

/// One whole frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Running time in nanoseconds.
    pub time: u64,
    pub keyframe: bool,
    pub payload: Bytes,
}

struct Open {
    time: u64,
    keyframe: bool,
    /// Some piece holds picture data.
    picture: bool,
    parts: Vec<Bytes>,
}

impl Open {
    fn close(self) -> Frame {
        let payload = match <[Bytes; 1]>::try_from(self.parts) {
            // One piece: the buffer's own memory, no copy.
            Ok([only]) => only,
            Err(parts) => {
                let mut joined = BytesMut::with_capacity(parts.iter().map(Bytes::len).sum());
                for part in &parts {
                    joined.extend_from_slice(part);
                }
                joined.freeze()
            }
        };
        Frame {
            time: self.time,
            keyframe: self.keyframe,
            payload,
        }
    }
}

/// Joins the pieces of frames; see the module documentation.
#[derive(Default)]
pub struct Assembler {
    /// The stream has set MARKER: its frames end there, not at each buffer.
    marked: bool,
    open: Option<Open>,
    /// Time of the last frame handed out.
    last: Option<u64>,
}

/// What one buffer completed: at most the frame before it (when the buffer
/// starts another without that one having been marked) and its own.
pub type Completed = (Option<Frame>, Option<Frame>);

impl Assembler {
    /// Takes one buffer: its bytes, running time (`None` when it has none),
    /// whether it is a delta unit, whether it carries MARKER and whether it
    /// holds picture data. Returns the frames it completes, oldest first. A
    /// buffer without a time and no frame open to join is dropped
    /// (`dropped` tells).
    pub fn push(&mut self, payload: Bytes, time: Option<u64>, piece: Piece) -> Push {
        let Piece {
            delta,
            marker,
            picture,
        } = piece;
        self.marked |= marker;
        let mut push = Push::default();
        let continues =
            matches!((&self.open, time), (Some(open), t) if t.is_none_or(|t| t == open.time));
        if continues {
            let open = self.open.as_mut().expect("checked above");
            open.parts.push(payload);
            // Parameter sets ahead of a delta slice do not make a keyframe.
            open.keyframe &= !delta;
            open.picture |= picture;
        } else if self.open.is_none()
            && self.last.is_some()
            && time.is_none_or(|t| Some(t) == self.last)
        {
            // A piece of a frame already handed out whole: the stream comes
            // in pieces after all.
            self.marked = true;
            push.orphan = true;
        } else {
            push.completed.0 = self.open.take().map(Open::close);
            match time {
                Some(time) => {
                    self.open = Some(Open {
                        time,
                        keyframe: !delta,
                        picture,
                        parts: vec![payload],
                    });
                }
                None => push.dropped = true,
            }
        }
        let ends = !self.marked || (marker && self.open.as_ref().is_some_and(|o| o.picture));
        if ends {
            push.completed.1 = self.open.take().map(Open::close);
        }
        if let Some(frame) = push.completed.1.as_ref().or(push.completed.0.as_ref()) {
            self.last = Some(frame.time);
        }
        push
    }

    /// The frame still open (at EOS, or before new caps), if any.
    pub fn flush(&mut self) -> Option<Frame> {
        self.open.take().map(Open::close)
    }
}

/// What one buffer is, as the assembler needs to know.
#[derive(Clone, Copy, Debug)]
pub struct Piece {
    pub delta: bool,
    pub marker: bool,
    /// It holds picture data (for H.264/H.265: a slice); always true for
    /// codecs whose buffers are never split.
    pub picture: bool,
}

/// What [`Assembler::push`] did with a buffer.
#[derive(Debug, Default)]
pub struct Push {
    pub completed: Completed,
    /// The buffer had no time and nothing to belong to.
    pub dropped: bool,
    /// The buffer continues a frame that already went out without it: the
    /// frame was incomplete, so its group is damaged.
    pub orphan: bool,
}

impl Push {
    pub fn frames(self) -> impl Iterator<Item = Frame> {
        let (first, second) = self.completed;
        first.into_iter().chain(second)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn piece(delta: bool, marker: bool) -> Piece {
        Piece {
            delta,
            marker,
            picture: true,
        }
    }

    fn b(s: &'static str) -> Bytes {
        Bytes::from_static(s.as_bytes())
    }

    fn frames(push: Push) -> Vec<(u64, bool, String)> {
        push.frames()
            .map(|f| {
                (
                    f.time,
                    f.keyframe,
                    String::from_utf8(f.payload.to_vec()).unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn unmarked_streams_pass_every_buffer_at_once() {
        let mut a = Assembler::default();
        assert_eq!(
            frames(a.push(b("I"), Some(0), piece(false, false))),
            [(0, true, "I".into())]
        );
        assert_eq!(
            frames(a.push(b("P"), Some(33), piece(true, false))),
            [(33, false, "P".into())]
        );
        assert!(a.flush().is_none());
    }

    #[test]
    fn marked_pieces_are_joined_and_closed_at_the_marker() {
        let mut a = Assembler::default();
        a.push(b("x"), Some(0), piece(true, true));
        // What rtph264depay made of one keyframe of three slices: only the
        // first piece has the time, the last the marker.
        assert!(frames(a.push(b("[sps pps sei idr0]"), Some(100), piece(false, false))).is_empty());
        assert!(frames(a.push(b("[sps pps idr1]"), None, piece(false, false))).is_empty());
        assert_eq!(
            frames(a.push(b("[sps pps idr2]"), None, piece(false, true))),
            [(
                100,
                true,
                "[sps pps sei idr0][sps pps idr1][sps pps idr2]".into()
            )]
        );
        // A one-piece delta frame, marked: out at once, no copy.
        let payload = b("P");
        let push = a.push(payload.clone(), Some(133), piece(true, true));
        let out: Vec<Frame> = push.frames().collect();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].payload.as_ptr(), payload.as_ptr());
        assert!(!out[0].keyframe);
    }

    #[test]
    fn a_lost_marker_ends_the_frame_when_the_next_one_starts() {
        let mut a = Assembler::default();
        a.push(b("A"), Some(0), piece(false, true));
        assert!(frames(a.push(b("B1"), Some(33), piece(true, false))).is_empty());
        // The marker of B was lost: C's first piece closes B.
        assert_eq!(
            frames(a.push(b("C"), Some(66), piece(true, true))),
            [(33, false, "B1".into()), (66, false, "C".into())]
        );
    }

    #[test]
    fn parameter_sets_before_a_delta_slice_make_no_keyframe() {
        let mut a = Assembler::default();
        a.push(b("x"), Some(0), piece(true, true));
        a.push(b("[sps pps]"), Some(33), piece(false, false));
        assert_eq!(
            frames(a.push(b("[slice]"), Some(33), piece(true, true))),
            [(33, false, "[sps pps][slice]".into())]
        );
    }

    #[test]
    fn untimed_buffers_with_nothing_open_are_dropped() {
        let mut a = Assembler::default();
        let push = a.push(b("?"), None, piece(false, false));
        assert!(push.dropped);
        assert!(frames(push).is_empty());
        // After a frame, an untimed buffer is taken for a piece of it.
        a.push(b("A"), Some(0), piece(false, true));
        assert!(a.push(b("?"), None, piece(true, true)).orphan);
    }

    #[test]
    fn a_stream_shows_it_comes_in_pieces_with_its_first_frame() {
        let mut a = Assembler::default();
        // Unmarked so far: the first piece goes out as a frame.
        assert_eq!(
            frames(a.push(b("I0"), Some(0), piece(false, false))),
            [(0, true, "I0".into())]
        );
        // Its other pieces are orphans (the caller asks for a keyframe).
        let push = a.push(b("I1"), None, piece(false, false));
        assert!(push.orphan && frames(push).is_empty());
        let push = a.push(b("I2"), Some(0), piece(false, true));
        assert!(push.orphan && frames(push).is_empty());
        // From then on frames are joined.
        assert!(frames(a.push(b("P0"), Some(33), piece(true, false))).is_empty());
        assert_eq!(
            frames(a.push(b("P1"), None, piece(true, true))),
            [(33, false, "P0P1".into())]
        );
    }

    #[test]
    fn a_marked_piece_without_picture_does_not_end_the_frame() {
        let mut a = Assembler::default();
        a.push(b("x"), Some(0), piece(true, true));
        // Seen from GStreamer's WebRTC sender: the parameter sets marked,
        // then the slices of the same keyframe.
        let sets = Piece {
            delta: false,
            marker: true,
            picture: false,
        };
        assert!(frames(a.push(b("[sps pps]"), Some(33), sets)).is_empty());
        assert!(frames(a.push(b("[idr0]"), None, piece(false, false))).is_empty());
        assert_eq!(
            frames(a.push(b("[idr1]"), None, piece(false, true))),
            [(33, true, "[sps pps][idr0][idr1]".into())]
        );
    }

    #[test]
    fn flush_hands_over_the_open_frame() {
        let mut a = Assembler::default();
        a.push(b("x"), Some(0), piece(true, true));
        a.push(b("half"), Some(33), piece(true, false));
        assert_eq!(a.flush().map(|f| f.time), Some(33));
        assert!(a.flush().is_none());
    }
}
