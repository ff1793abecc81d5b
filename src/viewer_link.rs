// SPDX-License-Identifier: MIT OR Apache-2.0

//! A WHEP viewer's rendition, from its link: serve mode turns on
//! whepserversink's Google congestion control for a viewer of a broadcast
//! with renditions, follows its estimator (`rtpgccbwe`, inside the viewer's
//! webrtcbin) and sets the viewer's moqsrc `max-bitrate` from it (see
//! `fit`). A broadcast with one rendition keeps congestion control off: the
//! estimator probes with padding, which would only cost bandwidth there.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use gst::glib;
use gst::prelude::*;

use crate::fit::{AUDIO_AND_OVERHEAD, Fit};

/// How often a viewer's estimator is read.
const READ_EVERY: std::time::Duration = std::time::Duration::from_millis(250);

/// What a viewer asked for in its WHEP request's query.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Wants {
    /// `max-height`: no rendition taller (0: any).
    pub max_height: u32,
    /// `max-bitrate`: the link carries no more than this, bits/s (0: as
    /// the estimator finds).
    pub max_bitrate: u64,
}

impl Wants {
    /// What of `max_bitrate` the video may take (moqsrc's `max-bitrate`;
    /// 0: no limit).
    pub fn video_bitrate(&self) -> u64 {
        match self.max_bitrate {
            0 => 0,
            all => all.saturating_sub(AUDIO_AND_OVERHEAD).max(1),
        }
    }

    /// From a request's query; an error names the field that is not a
    /// whole number.
    pub fn from_query(
        query: &std::collections::HashMap<String, String>,
    ) -> Result<Self, &'static str> {
        let max_height = match query.get("max-height").map(|h| h.parse()) {
            None => 0,
            Some(Ok(height)) => height,
            Some(Err(_)) => return Err("max-height is a whole number of lines"),
        };
        let max_bitrate = match query.get("max-bitrate").map(|b| b.parse()) {
            None => 0,
            Some(Ok(bitrate)) => bitrate,
            Some(Err(_)) => return Err("max-bitrate is a whole number of bits per second"),
        };
        Ok(Self {
            max_height,
            max_bitrate,
        })
    }
}

/// One viewer's link and the choice it drives.
pub struct ViewerLink {
    /// For the log: the session and its broadcast.
    name: String,
    moqsrc: glib::WeakRef<gst::Element>,
    fit: Mutex<Option<Fit>>,
    /// The gateway's count of estimates received.
    estimates: prometheus_client::metrics::counter::Counter,
}

impl ViewerLink {
    pub fn new(
        name: String,
        moqsrc: &gst::Element,
        estimates: prometheus_client::metrics::counter::Counter,
    ) -> Self {
        Self {
            name,
            moqsrc: moqsrc.downgrade(),
            fit: Mutex::default(),
            estimates,
        }
    }

    /// Once moqsrc has made its pads, before the viewer's offer is
    /// answered (whepserversink reads its congestion settings when the
    /// session starts): with renditions to choose between, congestion
    /// control on, its estimate bounded by what the best rendition could
    /// use and by what the viewer said its link carries. The choice is
    /// among the renditions the viewer's own limits allow.
    pub fn prepare(&self, sink: &gst::Element, wants: Wants) {
        let Some(moqsrc) = self.moqsrc.upgrade() else {
            return;
        };
        let bitrates = video_bitrates(&moqsrc, wants);
        let Some(fit) = Fit::new(&bitrates) else {
            return;
        };
        let ceiling = match wants.max_bitrate {
            0 => fit.ceiling(),
            cap => fit.ceiling().min(cap),
        };
        let ceiling = u32::try_from(ceiling).unwrap_or(u32::MAX);
        let floor = bitrates.iter().copied().min().unwrap_or(0);
        sink.set_property_from_str("congestion-control", "gcc");
        // No retransmissions: when the link fills, the viewer asks again for
        // hundreds of packets of the rendition being left, and resending
        // them keeps the link full past the switch, so the lower
        // rendition's keyframe is lost too (measured with
        // bench/viewer-link.sh: 6-8 s without a picture with them, 2 s
        // without). A loss costs a keyframe request instead.
        sink.set_property("do-retransmission", false);
        sink.set_property("max-bitrate", ceiling);
        // From the top: a viewer gets the best until its link says otherwise.
        sink.set_property("start-bitrate", ceiling);
        sink.set_property(
            "min-bitrate",
            u32::try_from(floor / 2).unwrap_or(1).clamp(1, ceiling),
        );
        eprintln!(
            "{}: renditions {bitrates:?} bit/s, following the viewer's link (estimate at most {ceiling})",
            self.name
        );
        *self.fit.lock().unwrap_or_else(PoisonError::into_inner) = Some(fit);
    }

    /// Whether the viewer's rendition follows its link (a broadcast with
    /// renditions to choose between); known once `prepare` ran.
    pub fn adapts(&self) -> bool {
        self.fit
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some()
    }

    /// Follows the estimator in the viewer's webrtcbin, on `runtime`,
    /// until the webrtcbin is gone. It is read a few times a second rather
    /// than on notification: it notifies only changes, and an estimate
    /// that stays high must still count as room held.
    pub fn follow(self: &Arc<Self>, webrtcbin: &gst::Element, runtime: &tokio::runtime::Handle) {
        if self
            .fit
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_none()
        {
            return;
        }
        let link = self.clone();
        let webrtcbin = webrtcbin.downgrade();
        runtime.spawn(async move {
            let mut ticks = tokio::time::interval(READ_EVERY);
            let mut bwe: Option<gst::Element> = None;
            loop {
                ticks.tick().await;
                let Some(webrtcbin) = webrtcbin.upgrade() else {
                    return;
                };
                if bwe.is_none() {
                    bwe = estimator(&webrtcbin);
                }
                if let Some(bwe) = &bwe {
                    link.estimated(u64::from(bwe.property::<u32>("estimated-bitrate")));
                }
            }
        });
    }

    /// A new estimate: the viewer's moqsrc moves when the fit says so.
    fn estimated(&self, bps: u64) {
        self.estimates.inc();
        let to = {
            let mut fit = self.fit.lock().unwrap_or_else(PoisonError::into_inner);
            let Some(fit) = fit.as_mut() else {
                return;
            };
            fit.estimate(Instant::now(), bps)
        };
        let (Some(to), Some(moqsrc)) = (to, self.moqsrc.upgrade()) else {
            return;
        };
        eprintln!(
            "{}: link estimated at {} kbit/s, playing up to {} kbit/s",
            self.name,
            bps / 1000,
            to / 1000
        );
        moqsrc.set_property("max-bitrate", to);
    }
}

/// The congestion control's estimator in a viewer's webrtcbin, once there.
fn estimator(webrtcbin: &gst::Element) -> Option<gst::Element> {
    let bin = webrtcbin.downcast_ref::<gst::Bin>()?;
    bin.iterate_recurse()
        .into_iter()
        .filter_map(Result::ok)
        .find(|e| e.factory().is_some_and(|f| f.name() == "rtpgccbwe"))
}

/// The bitrates of the video renditions moqsrc's video pad may play within
/// what the viewer wants, as the catalog gives them, among those the
/// viewer's session can move to from the one it starts on.
fn video_bitrates(moqsrc: &gst::Element, wants: Wants) -> Vec<u64> {
    let (max_height, max_bitrate) = (wants.max_height, wants.video_bitrate());
    let Some(pad) = moqsrc.static_pad("video_0") else {
        return Vec::new();
    };
    let playing = pad.property::<Option<String>>("track");
    let renditions: Vec<gst::Structure> = pad
        .property::<gst::Array>("renditions")
        .iter()
        .filter_map(|v| v.get::<gst::Structure>().ok())
        .collect();
    let caps = |s: &gst::Structure| s.get::<gst::Caps>("caps").ok();
    let Some(start) = renditions
        .iter()
        .find(|s| s.get::<String>("track").ok() == playing)
        .and_then(caps)
    else {
        return Vec::new();
    };
    renditions
        .iter()
        .filter(|s| caps(s).is_some_and(|c| same_session(&start, &c)))
        .filter(|s| {
            let height = s.get::<i32>("height").unwrap_or(0);
            max_height == 0 || u32::try_from(height).is_ok_and(|h| h <= max_height)
        })
        .filter_map(|s| s.get::<u64>("bitrate").ok())
        .filter(|&b| max_bitrate == 0 || b <= max_bitrate)
        .collect()
}

/// Whether a WebRTC session answered for video with caps `a` can go on with
/// `b` without renegotiating: the same codec, and for H.264 and H.265 the
/// same profile and level. (GStreamer 1.22's H.264 payloader puts the
/// profile and level in its caps, which cannot change mid-session: the
/// session fails not-negotiated. Size and frame rate may change.)
pub fn same_session(a: &gst::CapsRef, b: &gst::CapsRef) -> bool {
    let (Some(a), Some(b)) = (a.structure(0), b.structure(0)) else {
        return false;
    };
    let field = |s: &gst::StructureRef, f: &str| s.get::<String>(f).ok();
    a.name() == b.name()
        && (!matches!(a.name().as_str(), "video/x-h264" | "video/x-h265")
            || ["profile", "level", "tier"]
                .iter()
                .all(|f| field(a, f) == field(b, f)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(pairs: &[(&str, &str)]) -> std::collections::HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn a_session_goes_on_across_sizes_not_levels() {
        gst::init().unwrap();
        let caps = |s: &str| s.parse::<gst::Caps>().unwrap();
        let h264 = |level: &str, width: i32| {
            caps(&format!(
                "video/x-h264,profile=constrained-baseline,level=(string){level},width={width},height=360"
            ))
        };
        assert!(same_session(&h264("3.1", 1280), &h264("3.1", 320)));
        assert!(!same_session(&h264("3.1", 1280), &h264("3", 640)));
        assert!(!same_session(
            &h264("3.1", 1280),
            &caps("video/x-vp8,width=640")
        ));
        assert!(same_session(
            &caps("video/x-vp8,width=1280"),
            &caps("video/x-vp8,width=320")
        ));
    }

    #[test]
    fn wants_from_the_query() {
        assert_eq!(Wants::from_query(&query(&[])), Ok(Wants::default()));
        assert_eq!(
            Wants::from_query(&query(&[("max-height", "360"), ("max-bitrate", "900000")])),
            Ok(Wants {
                max_height: 360,
                max_bitrate: 900_000
            })
        );
        assert!(
            Wants::from_query(&query(&[("max-height", "tall")]))
                .is_err_and(|e| e.contains("max-height"))
        );
        assert!(
            Wants::from_query(&query(&[("max-bitrate", "-1")]))
                .is_err_and(|e| e.contains("max-bitrate"))
        );
    }
}
