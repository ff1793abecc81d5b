// SPDX-License-Identifier: MIT OR Apache-2.0

//! How a track's frames are packed, and the reader for it: the containers
//! moq-mux reads (hang's legacy, CMAF, the MoQ project's LOC framing), IETF
//! LOC, as MSF catalogs list it (see `crate::msf`), and the bare payloads of
//! data tracks (see `crate::raw`).

use std::sync::Arc;
use std::task::{Poll, ready};

use moq_mux::container::{Container, Frame, Kind};

/// How a track's frames are packed: its reader is made from it once per
/// subscription.
#[derive(Clone)]
pub(super) struct Wire {
    pub(super) container: hang::catalog::Container,
    pub(super) kind: Kind,
    /// The track came from an MSF catalog: `loc` there is IETF LOC.
    pub(super) ietf: bool,
    /// A `binary` or `json` track: no container, `container` is unused.
    pub(super) raw: bool,
}

impl Wire {
    pub(super) fn reader(&self) -> Result<WireReader, String> {
        if self.raw {
            return Ok(WireReader::Raw);
        }
        if self.ietf && self.container == hang::catalog::Container::Loc {
            return Ok(WireReader::IetfLoc(self.kind));
        }
        moq_mux::catalog::hang::Container::new(&self.container, self.kind)
            .map(WireReader::Mux)
            .map_err(|e| e.to_string())
    }
}

/// Reads one track's frames.
pub(super) enum WireReader {
    Mux(moq_mux::catalog::hang::Container),
    /// IETF LOC: the payload behind its Private Properties block, the
    /// timestamp from the object's properties (the relay puts it on the
    /// frame). Keyframes are the groups' first frames, as for hang's.
    IetfLoc(Kind),
    /// Bare payloads, each frame's timestamp its own.
    Raw,
}

impl Container for WireReader {
    type Error = moq_mux::Error;

    fn write(
        &self,
        group: &mut moq_net::group::Producer,
        frames: &[Frame],
    ) -> Result<(), Self::Error> {
        match self {
            Self::Mux(mux) => mux.write(group, frames),
            Self::Raw => crate::raw::Raw.write(group, frames),
            // moqsrc only reads; moqsink writes IETF LOC its own way.
            Self::IetfLoc(_) => Err(moq_mux::Error::UnsupportedContainer(
                "writing IETF LOC through a reader".into(),
            )),
        }
    }

    fn poll_read(
        &self,
        group: &mut moq_net::group::Consumer,
        waiter: &kio::Waiter,
    ) -> Poll<Result<Option<Vec<Frame>>, Self::Error>> {
        match self {
            Self::Mux(mux) => mux.poll_read(group, waiter),
            Self::Raw => crate::raw::Raw.poll_read(group, waiter),
            // A bare frame whose payload is behind a LOC properties block.
            Self::IetfLoc(_) => {
                let Some(mut frames) = ready!(crate::raw::Raw.poll_read(group, waiter)?) else {
                    return Poll::Ready(Ok(None));
                };
                for frame in &mut frames {
                    frame.payload = crate::msf::loc_media(std::mem::take(&mut frame.payload))
                        .map_err(|why| {
                            moq_mux::Error::Other(Arc::new(anyhow::anyhow!(
                                "IETF LOC object: {why}"
                            )))
                        })?;
                }
                Poll::Ready(Ok(Some(frames)))
            }
        }
    }

    fn end(&self, frame: &Frame) -> Option<moq_net::Timestamp> {
        match self {
            Self::Mux(mux) => mux.end(frame),
            Self::IetfLoc(_) | Self::Raw => None,
        }
    }

    fn kind(&self) -> Kind {
        match self {
            Self::Mux(mux) => mux.kind(),
            Self::IetfLoc(kind) => *kind,
            Self::Raw => Kind::Data,
        }
    }

    fn finish_group(
        &self,
        group: &mut moq_net::group::Producer,
        end: Option<moq_net::Timestamp>,
    ) -> Result<(), Self::Error> {
        match self {
            Self::Mux(mux) => mux.finish_group(group, end),
            Self::IetfLoc(_) | Self::Raw => Ok(()),
        }
    }
}
