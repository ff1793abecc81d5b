// SPDX-License-Identifier: MIT OR Apache-2.0

//! Text and data tracks: WebVTT cues on a `text_%u` pad, KLV and JSON on
//! `data_%u` pads, published beside H.264 and given back by moqsrc on pads of
//! their own, byte for byte, on the media's timeline. Real relay and encoder.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use gst::prelude::*;

/// One buffer out of moqsrc: its pad, running time, the publisher's
/// timestamp (the `timestamp/x-moq` meta) and its bytes.
#[derive(Clone, Debug)]
struct Seen {
    pad: String,
    pts: gst::ClockTime,
    published: gst::ClockTime,
    payload: Vec<u8>,
}

/// A subscriber that links every pad moqsrc adds to a fakesink and keeps
/// what reaches it, and the caps of each pad with its language tag.
type Caps = Arc<Mutex<BTreeMap<String, (gst::Caps, Option<String>)>>>;

fn subscriber(broadcast: &str) -> (gst::Pipeline, Arc<Mutex<Vec<Seen>>>, Caps) {
    let pipeline = gst::Pipeline::new();
    let src = moqsrc(broadcast);
    pipeline.add(&src).unwrap();
    let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let caps: Caps = Arc::default();
    let (kept, pipe) = (seen.clone(), pipeline.downgrade());
    let caps_kept = caps.clone();
    src.connect_pad_added(move |_, pad| {
        let Some(pipeline) = pipe.upgrade() else {
            return;
        };
        let name = pad.name().to_string();
        let lang = pad
            .sticky_event::<gst::event::Tag>(0)
            .and_then(|tag| Some(tag.tag().get::<gst::tags::LanguageCode>()?.get().to_owned()));
        if let Some(c) = pad.sticky_event::<gst::event::Caps>(0) {
            caps_kept
                .lock()
                .unwrap()
                .insert(name.clone(), (c.caps_owned(), lang));
        }
        let sink = gst::ElementFactory::make("fakesink")
            .property("sync", true)
            .build()
            .unwrap();
        pipeline.add(&sink).unwrap();
        sink.sync_state_with_parent().unwrap();
        let kept = kept.clone();
        let moq = gst::Caps::new_empty_simple("timestamp/x-moq");
        pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            if let Some(buffer) = info.buffer() {
                let published = buffer
                    .iter_meta::<gst::ReferenceTimestampMeta>()
                    .find(|m| m.reference().can_intersect(&moq))
                    .map(|m| m.timestamp());
                if let (Some(pts), Some(published), Ok(map)) =
                    (buffer.pts(), published, buffer.map_readable())
                {
                    kept.lock().unwrap().push(Seen {
                        pad: name.clone(),
                        pts,
                        published,
                        payload: map.to_vec(),
                    });
                }
            }
            gst::PadProbeReturn::Ok
        });
        pad.link(&sink.static_pad("sink").unwrap()).unwrap();
    });
    (pipeline, seen, caps)
}

/// A KLV unit (Universal Label key, BER length, value) holding `n`.
fn klv(n: u64) -> Vec<u8> {
    let mut unit = vec![
        0x06, 0x0e, 0x2b, 0x34, 0x02, 0x0b, 0x01, 0x01, 0x0e, 0x01, 0x03, 0x01, 0x01, 0x00, 0x00,
        0x00, 8,
    ];
    unit.extend_from_slice(&n.to_be_bytes());
    unit
}

/// A WebVTT cue shown for 1 s from `at`, saying `n`.
fn cue(n: u64, at: gst::ClockTime) -> Vec<u8> {
    let (start, end) = (at.mseconds(), at.mseconds() + 1000);
    let stamp = |ms: u64| {
        format!(
            "{:02}:{:02}:{:02}.{:03}",
            ms / 3_600_000,
            ms / 60_000 % 60,
            ms / 1000 % 60,
            ms % 1000
        )
    };
    format!("{} --> {}\ncue {n}\n\n", stamp(start), stamp(end)).into_bytes()
}

#[test]
fn text_and_data_come_back_on_the_media_timeline() {
    let broadcast = unique_broadcast("data");
    let publ = pipeline(&format!(
        "moqsink name=sink url={} broadcast={broadcast} tls-disable-verify=true \
         videotestsrc is-live=true ! video/x-raw,format=I420,width=160,height=120,framerate=30/1 \
           ! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=30 ! h264parse ! sink.video_0 \
         appsrc name=vtt is-live=true format=time caps=application/x-subtitle-vtt \
           ! taginject tags=\"language-code=(string)de\" ! sink.text_0 \
         appsrc name=klv is-live=true format=time caps=meta/x-klv,parsed=true ! sink.data_0 \
         appsrc name=json is-live=true format=time caps=application/x-json ! sink.data_1",
        RELAY.url()
    ));
    let (sub, seen, caps) = subscriber(&broadcast);
    publ.set_state(gst::State::Playing).unwrap();
    let sources: Vec<gst_app::AppSrc> = ["vtt", "klv", "json"]
        .iter()
        .map(|name| publ.by_name(name).unwrap().downcast().unwrap())
        .collect();
    // What was pushed, by the subscriber's pad it comes out of: (running
    // time, bytes). moqsrc adds data pads in catalog order, binary first.
    let mut sent: BTreeMap<&str, Vec<(gst::ClockTime, Vec<u8>)>> = BTreeMap::new();
    let push_at = |src: &gst_app::AppSrc, bytes: Vec<u8>, at: gst::ClockTime| {
        let mut buffer = gst::Buffer::from_slice(bytes);
        buffer.get_mut().unwrap().set_pts(at);
        src.push_buffer(buffer).unwrap();
    };
    // As webvttenc streams WebVTT: the header alone, then cue blocks. (Each
    // frame of a hang `vtt` track is a whole segment, header and cue;
    // moqsrc gives the header once and then the cues, as it came.)
    push_at(&sources[0], b"WEBVTT\n\n".to_vec(), gst::ClockTime::ZERO);
    let mut push = |n: u64| {
        let now = publ.current_running_time().unwrap_or(gst::ClockTime::ZERO);
        let json = format!("{{\"n\":{n},\"at_ms\":{}}}", now.mseconds()).into_bytes();
        let cue = cue(n, now);
        for (src, (pad, bytes, expected)) in sources.iter().zip([
            ("text_0", cue.clone(), cue),
            ("data_0", klv(n), klv(n)),
            ("data_1", json.clone(), json),
        ]) {
            push_at(src, bytes, now);
            sent.entry(pad).or_default().push((now, expected));
        }
    };
    // The first values go out before anyone subscribes, so that the
    // broadcast is complete (every pad in the catalog) when moqsrc looks.
    push(0);
    wait::until("the publisher connected", Duration::from_secs(10), || {
        status(&publ.by_name("sink").unwrap()) == "connected"
    });
    sub.set_state(gst::State::Playing).unwrap();
    wait::until("the subscriber's pads", Duration::from_secs(10), || {
        caps.lock().unwrap().len() >= 4
    });
    for n in 1..=15 {
        // Pacing, not waiting: values 100 ms apart, as a live feed sends them.
        std::thread::sleep(Duration::from_millis(100));
        push(n);
    }
    wait::until("the last values", Duration::from_secs(10), || {
        let seen = seen.lock().unwrap();
        sent.iter().all(|(pad, values)| {
            let last = &values.last().unwrap().1;
            seen.iter().any(|s| s.pad == *pad && s.payload == *last)
        })
    });
    no_error(&sub, "subscriber");
    no_error(&publ, "publisher");
    sub.set_state(gst::State::Null).unwrap();
    publ.set_state(gst::State::Null).unwrap();

    let caps = caps.lock().unwrap().clone();
    let name = |pad: &str| caps[pad].0.structure(0).unwrap().name().to_string();
    // The language its tags gave the text track, through the catalog.
    assert_eq!(caps["text_0"].1.as_deref(), Some("de"), "{caps:?}");
    assert_eq!(caps["data_0"].1, None, "{caps:?}");
    assert_eq!(name("text_0"), "application/x-subtitle-vtt", "{caps:?}");
    // Data pads in catalog order: binary (KLV) before JSON.
    assert_eq!(name("data_0"), "meta/x-klv", "{caps:?}");
    assert_eq!(name("data_1"), "application/x-json", "{caps:?}");
    assert!(name("video_0").starts_with("video/x-h264"), "{caps:?}");

    let seen = seen.lock().unwrap().clone();
    // The subscriber's running time of a publisher timestamp, from video.
    let offsets: Vec<i128> = seen
        .iter()
        .filter(|s| s.pad == "video_0")
        .map(|s| s.pts.nseconds() as i128 - s.published.nseconds() as i128)
        .collect();
    assert!(!offsets.is_empty(), "no video came");
    let (low, high) = (
        *offsets.iter().min().unwrap(),
        *offsets.iter().max().unwrap(),
    );
    let text: Vec<&Seen> = seen.iter().filter(|s| s.pad == "text_0").collect();
    assert_eq!(text[0].payload, b"WEBVTT\n\n", "the WebVTT header first");
    assert!(
        text[1..].iter().all(|s| !s.payload.starts_with(b"WEBVTT")),
        "the header once"
    );
    for (pad, values) in &sent {
        let got: Vec<&Seen> = seen
            .iter()
            .filter(|s| s.pad == *pad && s.payload != b"WEBVTT\n\n")
            .collect();
        assert!(got.len() >= 10, "{pad}: only {} buffers", got.len());
        for s in got {
            // Byte for byte, with the timestamp it was pushed with.
            let index = values
                .iter()
                .position(|(_, bytes)| *bytes == s.payload)
                .unwrap_or_else(|| panic!("{pad}: a buffer nobody sent: {:?}", s.payload));
            let at = values[index].0;
            assert_eq!(
                s.published.useconds(),
                at.useconds(),
                "{pad}: the publisher's timestamp"
            );
            if index == 0 {
                // Sent before the subscriber came: it gets the value late,
                // as the track's latest.
                continue;
            }
            // Played on the video's timeline: the same mapping from the
            // publisher's time (within the video's own spread).
            let offset = s.pts.nseconds() as i128 - s.published.nseconds() as i128;
            let slack = 50_000_000;
            assert!(
                offset >= low - slack && offset <= high + slack,
                "{pad}: played at {} for publisher time {}, video maps with {low}..{high} ns",
                s.pts,
                s.published
            );
        }
    }
}

#[test]
fn text_caps_moqsink_cannot_carry_are_an_error() {
    let broadcast = unique_broadcast("data-refused");
    let publ = pipeline(&format!(
        "moqsink name=sink url={} broadcast={broadcast} tls-disable-verify=true \
         appsrc name=text is-live=true format=time caps=text/x-raw,format=pango-markup ! sink.text_0",
        RELAY.url()
    ));
    publ.set_state(gst::State::Playing).unwrap();
    let src: gst_app::AppSrc = publ.by_name("text").unwrap().downcast().unwrap();
    let mut buffer = gst::Buffer::from_slice(b"<b>hi</b>".to_vec());
    buffer.get_mut().unwrap().set_pts(gst::ClockTime::ZERO);
    let _ = src.push_buffer(buffer);
    // The reason goes on the bus as a WARNING, then upstream fails with
    // not-negotiated: no silent stall.
    let bus = publ.bus().unwrap();
    let mut warnings = Vec::new();
    let error = loop {
        let msg = bus
            .timed_pop_filtered(
                gst::ClockTime::from_seconds(10),
                &[gst::MessageType::Warning, gst::MessageType::Error],
            )
            .expect("an error on the bus");
        match msg.view() {
            gst::MessageView::Warning(w) => warnings.push(w.error().to_string()),
            gst::MessageView::Error(e) => break e.error().to_string(),
            _ => {}
        }
    };
    publ.set_state(gst::State::Null).unwrap();
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("text_0") && w.contains("utf8")),
        "the warning names the pad and what it takes: {warnings:?} (error: {error})"
    );
}
