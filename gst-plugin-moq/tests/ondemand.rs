// SPDX-License-Identifier: MIT OR Apache-2.0

//! `on-demand`: a publisher with no subscriber at the relay drops its
//! buffers unread, tells the application, and asks for a keyframe the moment
//! someone subscribes. Real relay, encoders and decoders.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use gst::prelude::*;

/// What the publisher's bus said about demand: (pad, subscribed), in order.
type Demands = Arc<Mutex<Vec<(String, bool)>>>;

struct Publisher {
    pipeline: gst::Pipeline,
    sink: gst::Element,
    demands: Demands,
    /// Keyframe requests that reached the video encoder.
    requests: Arc<AtomicU64>,
}

/// H.264 (a keyframe every 4 s, so a subscriber that had to wait for one
/// would show) and Opus into an `on-demand` moqsink.
fn publisher(broadcast: &str) -> Publisher {
    let pipeline = pipeline(&format!(
        "moqsink name=sink url={} broadcast={broadcast} tls-disable-verify=true on-demand=true \
         videotestsrc is-live=true ! video/x-raw,format=I420,width=320,height=240,framerate=30/1 \
           ! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=120 name=enc \
           ! h264parse ! sink.video_0 \
         audiotestsrc is-live=true samplesperbuffer=960 ! audioconvert ! opusenc ! sink.audio_0",
        RELAY.url()
    ));
    let requests = Arc::new(AtomicU64::new(0));
    let counted = requests.clone();
    pipeline
        .by_name("enc")
        .unwrap()
        .static_pad("src")
        .unwrap()
        .add_probe(gst::PadProbeType::EVENT_UPSTREAM, move |_, info| {
            if let Some(event) = info.event()
                && gst_video::UpstreamForceKeyUnitEvent::parse(event).is_ok()
            {
                counted.fetch_add(1, Ordering::SeqCst);
            }
            gst::PadProbeReturn::Ok
        });
    let demands: Demands = Arc::default();
    let seen = demands.clone();
    pipeline.bus().unwrap().set_sync_handler(move |_, msg| {
        if let gst::MessageView::Element(e) = msg.view()
            && let Some(s) = e.structure()
            && s.name() == "moq-demand"
        {
            seen.lock().unwrap().push((
                s.get::<String>("pad").unwrap(),
                s.get::<bool>("subscribed").unwrap(),
            ));
        }
        gst::BusSyncReply::Pass
    });
    let sink = pipeline.by_name("sink").unwrap();
    Publisher {
        pipeline,
        sink,
        demands,
        requests,
    }
}

fn stats(sink: &gst::Element) -> gst::Structure {
    sink.property::<gst::Structure>("stats")
}

/// The last demand message of `pad`.
fn last_demand(demands: &Demands, pad: &str) -> Option<bool> {
    demands
        .lock()
        .unwrap()
        .iter()
        .rev()
        .find(|(p, _)| p == pad)
        .map(|(_, subscribed)| *subscribed)
}

#[test]
fn no_subscriber_publishes_nothing_and_the_first_one_gets_a_keyframe() {
    init();
    let broadcast = unique_broadcast("on-demand");
    let publ = publisher(&broadcast);
    publ.pipeline.set_state(gst::State::Playing).unwrap();

    // No one watching: H.264 with its profile in the caps and Opus are in
    // the catalog before any frame, so nothing at all was published.
    watch_bus(
        &publ.pipeline,
        Duration::from_secs(20),
        "100 unwatched buffers",
        |_| stats(&publ.sink).get::<u64>("unwatched").unwrap_or(0) >= 100,
    );
    let idle = stats(&publ.sink);
    eprintln!("idle: {idle}");
    assert_eq!(idle.get::<u64>("frames").unwrap(), 0, "{idle}");
    assert!(!idle.get::<bool>("subscribed").unwrap(), "{idle}");
    assert_eq!(last_demand(&publ.demands, "video_0"), Some(false));
    assert_eq!(last_demand(&publ.demands, "audio_0"), Some(false));
    let requests_before = publ.requests.load(Ordering::SeqCst);

    // A subscriber: the video track is wanted, a keyframe is asked for,
    // and frames decode well before the encoder's own next keyframe.
    let src = moqsrc(&broadcast);
    let (sub, decoded) = decoding(src);
    sub.set_state(gst::State::Playing).unwrap();
    let start = Instant::now();
    watch_bus(
        &sub,
        Duration::from_secs(15),
        "30 decoded video frames",
        |_| decoded.lock().unwrap()[0] >= 30,
    );
    let first_frames = start.elapsed();
    eprintln!("subscriber: 30 frames decoded {first_frames:?} after it started");
    no_error(&publ.pipeline, "publisher");
    assert_eq!(last_demand(&publ.demands, "video_0"), Some(true));
    assert!(
        publ.requests.load(Ordering::SeqCst) > requests_before,
        "no keyframe was asked for"
    );
    assert!(stats(&publ.sink).get::<bool>("subscribed").unwrap());

    // The subscriber leaves: the relay lets go, and so does the publisher.
    sub.set_state(gst::State::Null).unwrap();
    drop(sub);
    watch_bus(
        &publ.pipeline,
        Duration::from_secs(20),
        "the video track unwatched again",
        |_| last_demand(&publ.demands, "video_0") == Some(false),
    );
    publ.pipeline.set_state(gst::State::Null).unwrap();
}
