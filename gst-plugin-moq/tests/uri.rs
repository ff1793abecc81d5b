// SPDX-License-Identifier: MIT OR Apache-2.0

//! MoQ URIs: both elements are GstURIHandlers, so a broadcast plays in
//! `playbin` and `uridecodebin3` by its URI alone, and a publisher can be
//! pointed at one. Real relay, real encoders and decoders.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use gst::prelude::*;

/// The URI of `broadcast` at the test relay.
fn uri_of(broadcast: &str) -> String {
    format!("moq+https://{}/anon/{broadcast}", RELAY.addr)
}

/// A live H.264 + Opus publisher whose moqsink was given the broadcast's
/// URI (and the relay's certificate) rather than `url` and `broadcast`.
fn publisher(broadcast: &str) -> gst::Pipeline {
    let pipeline = pipeline(
        "moqsink name=sink \
         videotestsrc is-live=true ! video/x-raw,format=I420,width=320,height=240,framerate=30/1 \
           ! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=30 ! h264parse ! sink.video_0 \
         audiotestsrc is-live=true samplesperbuffer=960 ! audioconvert ! opusenc ! sink.audio_0",
    );
    let sink = pipeline.by_name("sink").unwrap();
    sink.set_property("tls-fingerprint", &RELAY.fingerprint);
    sink.dynamic_cast_ref::<gst::URIHandler>()
        .expect("moqsink is a URI handler")
        .set_uri(&uri_of(broadcast))
        .expect("moqsink takes the URI");
    assert_eq!(sink.property::<String>("broadcast"), broadcast);
    assert_eq!(sink.property::<String>("url"), RELAY.url());
    pipeline.set_state(gst::State::Playing).unwrap();
    pipeline
}

/// A sink and the buffers it has rendered.
type CountedSink = (gst::Element, Arc<Mutex<u64>>);

/// Buffers a sink has rendered, counted through its pad.
fn counted(sink: &gst::Element) -> Arc<Mutex<u64>> {
    let count: Arc<Mutex<u64>> = Arc::default();
    let kept = count.clone();
    sink.static_pad("sink")
        .unwrap()
        .add_probe(gst::PadProbeType::BUFFER, move |_, _| {
            *kept.lock().unwrap() += 1;
            gst::PadProbeReturn::Ok
        });
    count
}

/// The relay's certificate on whatever moqsrc a bin makes from the URI:
/// how an application passes options the URI does not carry.
fn trust_relay(bin: &gst::Element) {
    let fingerprint = RELAY.fingerprint.clone();
    bin.connect("source-setup", false, move |args| {
        let source = args[1].get::<gst::Element>().expect("the source");
        source.set_property("tls-fingerprint", &fingerprint);
        None
    });
}

#[test]
fn the_uri_makes_a_moqsrc() {
    init();
    for scheme in ["moq+https", "moq+http", "moq+wss", "moqt", "moql"] {
        let uri = format!("{scheme}://relay.example:4443/anon/cam");
        let src = gst::Element::make_from_uri(gst::URIType::Src, &uri, None)
            .unwrap_or_else(|e| panic!("no source for {uri}: {e}"));
        assert_eq!(src.factory().unwrap().name(), "moqsrc", "{uri}");
        assert_eq!(src.property::<String>("broadcast"), "cam");
        assert_eq!(
            src.dynamic_cast_ref::<gst::URIHandler>()
                .unwrap()
                .uri()
                .as_deref(),
            Some(uri.as_str())
        );
        let sink = gst::Element::make_from_uri(gst::URIType::Sink, &uri, None)
            .unwrap_or_else(|e| panic!("no sink for {uri}: {e}"));
        assert_eq!(sink.factory().unwrap().name(), "moqsink", "{uri}");
    }
}

#[test]
fn a_bad_uri_is_refused_with_a_reason() {
    init();
    let src = gst::ElementFactory::make("moqsrc").build().unwrap();
    let handler = src.dynamic_cast_ref::<gst::URIHandler>().unwrap();
    let err = handler
        .set_uri("moq+https://relay.example/")
        .expect_err("a URI without a broadcast");
    assert!(err.matches(gst::URIError::BadUri), "{err}");
    assert!(err.message().contains("names no broadcast"), "{err}");
    assert_eq!(handler.uri(), None);

    // With a broadcast whose name has a slash: the query form, both ways.
    handler
        .set_uri("moq+http://127.0.0.1:4443/anon?broadcast=team/cam")
        .unwrap();
    assert_eq!(src.property::<String>("url"), "http://127.0.0.1:4443/anon");
    assert_eq!(src.property::<String>("broadcast"), "team/cam");
    assert_eq!(
        handler.uri().as_deref(),
        Some("moq+http://127.0.0.1:4443/anon?broadcast=team%2Fcam")
    );
}

#[test]
fn a_playing_element_keeps_its_uri() {
    let broadcast = unique_broadcast("uri-playing");
    let publisher = publisher(&broadcast);
    let sink = publisher.by_name("sink").unwrap();
    wait::until("moqsink connected", Duration::from_secs(20), || {
        status(&sink) == "connected"
    });
    let err = sink
        .dynamic_cast_ref::<gst::URIHandler>()
        .unwrap()
        .set_uri(&uri_of("elsewhere"))
        .expect_err("a playing moqsink takes no new URI");
    assert!(err.matches(gst::URIError::BadState), "{err}");
    assert_eq!(sink.property::<String>("broadcast"), broadcast);
    publisher.set_state(gst::State::Null).unwrap();
}

#[test]
fn playbin_plays_a_broadcast_by_its_uri() {
    let broadcast = unique_broadcast("uri-playbin");
    let publisher = publisher(&broadcast);
    let video_sink = gst::ElementFactory::make("fakesink").build().unwrap();
    let audio_sink = gst::ElementFactory::make("fakesink").build().unwrap();
    let video = counted(&video_sink);
    let audio = counted(&audio_sink);
    let playbin = gst::ElementFactory::make("playbin")
        .property("uri", uri_of(&broadcast))
        .property("video-sink", &video_sink)
        .property("audio-sink", &audio_sink)
        .build()
        .expect("playbin");
    trust_relay(&playbin);
    let pipeline = playbin.downcast::<gst::Pipeline>().unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    watch_bus(
        &pipeline,
        Duration::from_secs(30),
        "30 decoded video frames and 30 audio buffers",
        |_| *video.lock().unwrap() >= 30 && *audio.lock().unwrap() >= 30,
    );
    // Decoded, as playbin's sinks take them.
    for (sink, kind) in [(&video_sink, "video/x-raw"), (&audio_sink, "audio/x-raw")] {
        let caps = sink.static_pad("sink").unwrap().current_caps().unwrap();
        assert_eq!(caps.structure(0).unwrap().name(), kind);
    }
    pipeline.set_state(gst::State::Null).unwrap();
    publisher.set_state(gst::State::Null).unwrap();
}

#[test]
fn uridecodebin3_gives_decoded_pads() {
    let broadcast = unique_broadcast("uri-decodebin");
    let publisher = publisher(&broadcast);
    let pipeline = gst::Pipeline::new();
    let decode = gst::ElementFactory::make("uridecodebin3")
        .property("uri", uri_of(&broadcast))
        .build()
        .expect("uridecodebin3");
    trust_relay(&decode);
    pipeline.add(&decode).unwrap();
    let pads: Arc<Mutex<Vec<CountedSink>>> = Arc::default();
    let weak = pipeline.downgrade();
    let seen = pads.clone();
    decode.connect_pad_added(move |_, pad| {
        let Some(pipeline) = weak.upgrade() else {
            return;
        };
        let sink = gst::ElementFactory::make("fakesink").build().unwrap();
        pipeline.add(&sink).unwrap();
        let count = counted(&sink);
        sink.sync_state_with_parent().unwrap();
        pad.link(&sink.static_pad("sink").unwrap()).unwrap();
        seen.lock().unwrap().push((sink, count));
    });
    pipeline.set_state(gst::State::Playing).unwrap();
    watch_bus(
        &pipeline,
        Duration::from_secs(30),
        "a decoded video and audio pad with 30 buffers each",
        |_| {
            let pads = pads.lock().unwrap();
            pads.len() == 2 && pads.iter().all(|(_, count)| *count.lock().unwrap() >= 30)
        },
    );
    // Decoded: the caps the sinks took.
    let mut kinds: Vec<String> = pads
        .lock()
        .unwrap()
        .iter()
        .map(|(sink, _)| {
            let caps = sink.static_pad("sink").unwrap().current_caps().unwrap();
            caps.structure(0).unwrap().name().to_string()
        })
        .collect();
    kinds.sort();
    assert_eq!(kinds, ["audio/x-raw", "video/x-raw"]);
    pipeline.set_state(gst::State::Null).unwrap();
    publisher.set_state(gst::State::Null).unwrap();
}
