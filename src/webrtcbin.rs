// SPDX-License-Identifier: MIT OR Apache-2.0

//! Settings for the webrtcbins inside the WebRTC elements of a gateway's
//! pipelines, which those elements do not expose.
//!
//! - **No UPnP.** libnice, the ICE agent under webrtcbin, asks the local
//!   network's UPnP gateway for a port mapping while it gathers candidates
//!   and waits up to its `upnp-timeout` (200 ms) for an answer that never
//!   comes on a server or on loopback. whipserversrc and whepserversink
//!   answer an offer only once gathering is done, so every publisher and
//!   viewer waited those 200 ms for its answer. A gateway is reached at its
//!   own addresses (or through STUN/TURN), and browsers never use UPnP.
//! - **The sender's timestamps, for frames bound for MoQ.** rtpbin's
//!   jitterbuffers default to `slave` mode, which times each packet from
//!   its arrival as much as from its RTP timestamp: on a busy gateway a
//!   browser's evenly spaced frames came out 27 and 39 ms apart by turns.
//!   A MoQ frame's timestamp is media time, and a WHEP viewer schedules
//!   display by the RTP timestamps made from it, so the viewer held every
//!   frame as long as the most irregular ones (glass-to-glass p50 30 ms
//!   against 21 ms with `synced` mode, which keeps the sender's spacing).
//!   Drift between the sender's clock and the subscriber's is moqsrc's to
//!   absorb (its timeline follows the earliest arrivals), as it is for any
//!   MoQ publisher.

use gst::glib;
use gst::prelude::*;

/// Turns UPnP off in the ICE agent of every webrtcbin that `bin` holds, now
/// or later, at any depth, including those of the per-viewer pipelines that
/// webrtcsink-based sinks (whepserversink) make.
pub fn without_upnp(bin: &gst::Bin) {
    for_each(bin, |element| {
        if is_webrtcbin(element) {
            no_upnp(element);
        } else {
            follow_consumer_pipelines(element);
        }
    });
}

/// Makes every webrtcbin that `bin` holds, now or later, at any depth, time
/// the RTP it receives by the sender's timestamps (see the module's notes).
/// For pipelines that publish what they receive to MoQ.
pub fn with_sender_timestamps(bin: &gst::Bin) {
    for_each(bin, |element| {
        if is_webrtcbin(element) {
            sender_timestamps(element);
        }
    });
}

/// Calls `apply` with each element `bin` holds, at any depth, and with each
/// one added to it later.
fn for_each(bin: &gst::Bin, apply: fn(&gst::Element)) {
    for element in bin.iterate_recurse().into_iter().flatten() {
        apply(&element);
    }
    bin.connect_element_added(move |_, element| apply(element));
    bin.connect_deep_element_added(move |bin, sub_bin, element| {
        // Direct children come through element-added.
        if sub_bin != bin {
            apply(element);
        }
    });
}

fn is_webrtcbin(element: &gst::Element) -> bool {
    element.factory().is_some_and(|f| f.name() == "webrtcbin")
}

/// webrtcsink-based sinks make a pipeline per consumer, outside `bin`.
fn follow_consumer_pipelines(element: &gst::Element) {
    let signal = "consumer-pipeline-created";
    if glib::subclass::signal::SignalId::lookup(signal, element.type_()).is_none() {
        return;
    }
    element.connect(signal, false, |args| {
        if let Some(pipeline) = args.get(2).and_then(|v| v.get::<gst::Pipeline>().ok()) {
            without_upnp(pipeline.upcast_ref());
        }
        None
    });
}

fn no_upnp(webrtcbin: &gst::Element) {
    if webrtcbin.find_property("ice-agent").is_none() {
        return;
    }
    let agent = webrtcbin
        .property::<Option<glib::Object>>("ice-agent")
        .filter(|ice| ice.find_property("agent").is_some())
        .and_then(|ice| ice.property::<Option<glib::Object>>("agent"));
    if let Some(agent) = agent
        && agent.find_property("upnp").is_some()
    {
        agent.set_property("upnp", false);
    }
}

fn sender_timestamps(webrtcbin: &gst::Element) {
    // rtpbin passes its buffer-mode to each jitterbuffer it makes later.
    let rtpbin = webrtcbin
        .downcast_ref::<gst::Bin>()
        .and_then(|bin| bin.by_name("rtpbin"))
        .filter(|rtpbin| rtpbin.find_property("buffer-mode").is_some());
    if let Some(rtpbin) = rtpbin {
        rtpbin.set_property_from_str("buffer-mode", "synced");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upnp(webrtcbin: &gst::Element) -> bool {
        let ice = webrtcbin.property::<glib::Object>("ice-agent");
        ice.property::<glib::Object>("agent")
            .property::<bool>("upnp")
    }

    fn buffer_mode(webrtcbin: &gst::Element) -> String {
        let rtpbin = webrtcbin
            .downcast_ref::<gst::Bin>()
            .unwrap()
            .by_name("rtpbin")
            .unwrap();
        let mode = rtpbin.property_value("buffer-mode");
        glib::EnumValue::from_value(&mode)
            .unwrap()
            .1
            .nick()
            .to_owned()
    }

    fn make() -> gst::Element {
        gst::init().unwrap();
        gst::ElementFactory::make("webrtcbin").build().unwrap()
    }

    /// A pipeline with a webrtcbin as a direct child and one in a sub-bin,
    /// added after `setup` ran.
    fn two_webrtcbins(setup: fn(&gst::Bin)) -> [gst::Element; 2] {
        let pipeline = gst::Pipeline::new();
        setup(pipeline.upcast_ref());
        let (direct, nested, inner) = (make(), make(), gst::Bin::new());
        pipeline.add(&inner).unwrap();
        inner.add(&nested).unwrap();
        pipeline.add(&direct).unwrap();
        [direct, nested]
    }

    #[test]
    fn webrtcbins_added_at_any_depth_lose_upnp() {
        // libnice's default, which this module exists to change.
        assert!(upnp(&make()));
        for webrtcbin in two_webrtcbins(without_upnp) {
            assert!(!upnp(&webrtcbin));
            assert_eq!(buffer_mode(&webrtcbin), "slave");
        }
    }

    #[test]
    fn webrtcbins_added_at_any_depth_keep_sender_timestamps() {
        assert_eq!(buffer_mode(&make()), "slave");
        for webrtcbin in two_webrtcbins(with_sender_timestamps) {
            assert_eq!(buffer_mode(&webrtcbin), "synced");
            assert!(upnp(&webrtcbin));
        }
    }
}
