// SPDX-License-Identifier: MIT OR Apache-2.0

//! The framing of the catalog's `binary` and `json` tracks: each MoQ frame is
//! one payload as it is, its timestamp the frame's own (moq-lite 05 carries
//! it on the wire). One payload per group is the `snapshot` mode's layout,
//! the one moqsink writes; moqsrc reads `stream` groups (many frames) too.

use std::task::{Poll, ready};

use moq_mux::container::{Container, Frame, Kind};

/// Payloads with no container around them.
#[derive(Clone, Copy, Debug, Default)]
pub struct Raw;

impl Container for Raw {
    type Error = moq_mux::Error;

    fn write(
        &self,
        group: &mut moq_net::group::Producer,
        frames: &[Frame],
    ) -> Result<(), Self::Error> {
        for frame in frames {
            // Clones the handle to the payload's memory, not the bytes.
            group.write_frame(frame.timestamp, frame.payload.clone())?;
        }
        Ok(())
    }

    fn poll_read(
        &self,
        group: &mut moq_net::group::Consumer,
        waiter: &kio::Waiter,
    ) -> Poll<Result<Option<Vec<Frame>>, Self::Error>> {
        let Some(frame) = ready!(group.poll_read_frame(waiter)?) else {
            return Poll::Ready(Ok(None));
        };
        Poll::Ready(Ok(Some(vec![Frame {
            timestamp: frame.timestamp,
            duration: None,
            payload: frame.payload,
            keyframe: false,
        }])))
    }

    fn kind(&self) -> Kind {
        Kind::Data
    }
}
