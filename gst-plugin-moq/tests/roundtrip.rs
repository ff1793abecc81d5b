// SPDX-License-Identifier: MIT OR Apache-2.0

//! Every codec through a real relay: encoder -> moqsink -> moq-relay -> moqsrc
//! -> decodebin3 -> appsink, with real GStreamer encoders and decoders.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use gst::prelude::*;

#[derive(Default, Debug)]
struct Track {
    /// Buffers counted going into moqsink.
    sent: u64,
    /// Buffers leaving moqsrc: (pts, keyframe).
    received: Vec<(gst::ClockTime, bool)>,
    /// Buffers leaving the decoder.
    decoded: u64,
    decoded_pts_increasing: bool,
    last_decoded_pts: Option<gst::ClockTime>,
    caps: Option<gst::Caps>,
    /// Widths of every caps event leaving moqsrc (video).
    widths: Vec<i32>,
}

type Tracks = Arc<Mutex<HashMap<String, Track>>>;

fn kind_of(pad_name: &str) -> String {
    pad_name.split('_').next().unwrap_or(pad_name).to_string()
}

/// A subscriber pipeline: moqsrc, and for each pad it adds a decodebin3 and an
/// appsink that counts decoded buffers.
fn subscriber(broadcast: &str, tracks: Tracks) -> gst::Pipeline {
    subscriber_with(broadcast, tracks, &[("tls-disable-verify", "true")])
}

fn subscriber_with(broadcast: &str, tracks: Tracks, props: &[(&str, &str)]) -> gst::Pipeline {
    let pipeline = gst::Pipeline::new();
    let src = gst::ElementFactory::make("moqsrc")
        .property("url", RELAY.url())
        .property("broadcast", broadcast)
        .build()
        .unwrap();
    for (name, value) in props {
        src.set_property_from_str(name, value);
    }
    pipeline.add(&src).unwrap();
    let weak = pipeline.downgrade();
    src.connect_pad_added(move |_, pad| {
        let Some(pipeline) = weak.upgrade() else {
            return;
        };
        let kind = kind_of(&pad.name());
        tracks.lock().unwrap().entry(kind.clone()).or_default().caps = pad.current_caps();
        let probe_tracks = tracks.clone();
        let probe_kind = kind.clone();
        pad.add_probe(
            gst::PadProbeType::BUFFER | gst::PadProbeType::EVENT_DOWNSTREAM,
            move |_, info| {
                let mut t = probe_tracks.lock().unwrap();
                let track = t.entry(probe_kind.clone()).or_default();
                if let Some(buffer) = info.buffer() {
                    let key = !buffer.flags().contains(gst::BufferFlags::DELTA_UNIT);
                    track.received.push((buffer.pts().unwrap_or_default(), key));
                }
                if let Some(gst::EventView::Caps(c)) = info.event().map(|e| e.view())
                    && let Ok(width) = c.caps().structure(0).unwrap().get::<i32>("width")
                {
                    track.widths.push(width);
                }
                gst::PadProbeReturn::Ok
            },
        );
        let queue = gst::ElementFactory::make("queue").build().unwrap();
        let decodebin = gst::ElementFactory::make("decodebin3").build().unwrap();
        let sink = gst_app::AppSink::builder().sync(false).build();
        let sink_tracks = tracks.clone();
        let sink_kind = kind.clone();
        sink.set_callbacks(
            gst_app::AppSinkCallbacks::builder()
                .new_sample(move |sink| {
                    let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                    let pts = sample.buffer().and_then(|b| b.pts());
                    let mut t = sink_tracks.lock().unwrap();
                    let track = t.entry(sink_kind.clone()).or_default();
                    if track.decoded == 0 {
                        track.decoded_pts_increasing = true;
                    }
                    if let (Some(last), Some(pts)) = (track.last_decoded_pts, pts)
                        && pts < last
                    {
                        track.decoded_pts_increasing = false;
                    }
                    track.last_decoded_pts = pts.or(track.last_decoded_pts);
                    track.decoded += 1;
                    Ok(gst::FlowSuccess::Ok)
                })
                .build(),
        );
        pipeline
            .add_many([&queue, &decodebin, sink.upcast_ref()])
            .unwrap();
        queue.link(&decodebin).unwrap();
        let sink_el = sink.upcast_ref::<gst::Element>().clone();
        decodebin.connect_pad_added(move |_, pad| {
            let _ = pad.link(&sink_el.static_pad("sink").unwrap());
        });
        for e in [&queue, &decodebin, sink.upcast_ref()] {
            e.sync_state_with_parent().unwrap();
        }
        pad.link(&queue.static_pad("sink").unwrap()).unwrap();
    });
    pipeline
}

fn publisher(description: &str, tracks: &Tracks) -> gst::Pipeline {
    let pipeline = gst::parse::launch(description)
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
    let sink = pipeline.by_name("sink").unwrap();
    for pad in sink.sink_pads() {
        let kind = kind_of(&pad.name());
        let tracks = tracks.clone();
        pad.add_probe(gst::PadProbeType::BUFFER, move |_, _| {
            tracks.lock().unwrap().entry(kind.clone()).or_default().sent += 1;
            gst::PadProbeReturn::Ok
        });
    }
    pipeline
}

/// Wait for the publisher and then the subscriber to reach EOS (each within
/// `timeout`), stop both, and fail if either did not.
fn finish(publ: &gst::Pipeline, sub: &gst::Pipeline, timeout: Duration) {
    let published = wait_eos(publ, timeout);
    let played = wait_eos(sub, timeout);
    publ.set_state(gst::State::Null).unwrap();
    sub.set_state(gst::State::Null).unwrap();
    published.expect("publisher reaches EOS");
    played.expect("subscriber reaches EOS");
}

/// Wait until `done` holds for what the subscriber received, failing on a
/// subscriber ERROR or after 20 s.
fn wait_for(
    sub: &gst::Pipeline,
    tracks: &Tracks,
    what: &str,
    done: impl Fn(&HashMap<String, Track>) -> bool,
) {
    let bus = sub.bus().unwrap();
    wait::until(what, Duration::from_secs(20), || {
        if let Some(msg) = bus.pop_filtered(&[gst::MessageType::Error]) {
            panic!("subscriber error: {msg:?}");
        }
        done(&tracks.lock().unwrap())
    });
}

fn sink_props(broadcast: &str) -> String {
    format!(
        "moqsink name=sink url={} broadcast={broadcast} tls-disable-verify=true",
        RELAY.url()
    )
}

/// Publish `video` and/or `audio` branches (encoder chains) for `frames` video
/// frames, play them back, and check what arrives.
fn roundtrip(name: &str, video: Option<&str>, audio: Option<&str>) -> HashMap<String, Track> {
    init();
    let broadcast = unique_broadcast(name);
    let tracks: Tracks = Arc::default();
    let sub = subscriber(&broadcast, tracks.clone());
    // How many pads moqsrc had made when it said no-more-pads.
    let pads_at_no_more_pads: Arc<Mutex<Option<u32>>> = Arc::default();
    let seen = pads_at_no_more_pads.clone();
    let src = sub.iterate_sources().into_iter().flatten().next().unwrap();
    src.connect_no_more_pads(move |src| {
        *seen.lock().unwrap() = Some(src.num_src_pads() as u32);
    });
    sub.set_state(gst::State::Playing).unwrap();

    let mut description = sink_props(&broadcast);
    if let Some(video) = video {
        description.push_str(&format!(
            " videotestsrc is-live=true num-buffers=60 ! video/x-raw,format=I420,width=320,height=240,framerate=30/1 ! {video} ! sink.video_0"
        ));
    }
    if let Some(audio) = audio {
        description.push_str(&format!(
            " audiotestsrc is-live=true num-buffers=100 samplesperbuffer=960 ! audio/x-raw,rate=48000,channels=2 ! audioconvert ! {audio} ! sink.audio_0"
        ));
    }
    let publ = publisher(&description, &tracks);
    publ.set_state(gst::State::Playing).unwrap();

    let published = wait_eos(&publ, Duration::from_secs(60));
    let played = wait_eos(&sub, Duration::from_secs(30));
    let sink = publ.by_name("sink").unwrap();
    assert_eq!(status(&sink), "connected");
    assert!(
        sink.property::<gst::Structure>("stats")
            .get::<u64>("frames")
            .unwrap()
            > 0
    );
    publ.set_state(gst::State::Null).unwrap();
    sub.set_state(gst::State::Null).unwrap();
    published.expect("publisher reaches EOS");
    played.expect("subscriber reaches EOS");

    let tracks = std::mem::take(&mut *tracks.lock().unwrap());
    for (kind, track) in &tracks {
        assert!(track.sent > 0, "{kind}: nothing sent: {track:?}");
        assert!(
            track.decoded * 10 >= track.sent * 9,
            "{kind}: decoded {} of {} sent",
            track.decoded,
            track.sent
        );
        assert!(
            track.decoded_pts_increasing,
            "{kind}: decoded timestamps go backwards"
        );
        let first = track.received.first().expect("received buffers");
        if kind == "video" {
            assert!(first.1, "{kind}: the first buffer is not a keyframe");
        }
        assert!(
            track.received.windows(2).all(|w| w[0].0 <= w[1].0),
            "{kind}: timestamps at moqsrc go backwards"
        );
    }
    let expected = video.is_some() as u32 + audio.is_some() as u32;
    assert_eq!(tracks.len() as u32, expected, "tracks: {:?}", tracks.keys());
    // The broadcast is announced with every rendition in its catalog, so
    // no-more-pads comes after all pads.
    assert_eq!(*pads_at_no_more_pads.lock().unwrap(), Some(expected));
    tracks
}

/// One keyframe per 60 frames: the whole 2 s clip is one group, so a
/// subscriber whose track subscription lands late (the catalog names a video
/// track only after its first keyframe) still receives every frame.
const X264: &str = "x264enc tune=zerolatency speed-preset=ultrafast key-int-max=60 ! h264parse";

#[test]
fn h264_byte_stream_and_opus_stay_in_sync() {
    let tracks = roundtrip("h264-opus", Some(X264), Some("opusenc frame-size=20"));
    let caps = tracks["video"].caps.clone().unwrap();
    let s = caps.structure(0).unwrap();
    assert_eq!(s.get::<&str>("stream-format").unwrap(), "byte-stream");
    // Same timeline: the first audio and video buffers are within one video frame.
    let v = tracks["video"].received[0].0;
    let a = tracks["audio"].received[0].0;
    let gap = if v > a { v - a } else { a - v };
    assert!(
        gap <= gst::ClockTime::from_mseconds(34),
        "audio/video start {gap} apart"
    );
    let audio_caps = tracks["audio"].caps.clone().unwrap();
    let s = audio_caps.structure(0).unwrap();
    assert_eq!(s.get::<i32>("rate").unwrap(), 48000);
    assert_eq!(s.get::<i32>("channels").unwrap(), 2);
}

#[test]
fn h264_avc_and_aac() {
    let tracks = roundtrip(
        "avc-aac",
        Some(
            "x264enc tune=zerolatency speed-preset=ultrafast key-int-max=60 ! h264parse ! video/x-h264,stream-format=avc",
        ),
        Some("avenc_aac ! aacparse"),
    );
    let caps = tracks["video"].caps.clone().unwrap();
    let s = caps.structure(0).unwrap();
    assert_eq!(s.get::<&str>("stream-format").unwrap(), "avc");
    assert!(s.get::<gst::Buffer>("codec_data").is_ok());
    let caps = tracks["audio"].caps.clone().unwrap();
    let s = caps.structure(0).unwrap();
    assert_eq!(s.name(), "audio/mpeg");
    assert!(s.get::<gst::Buffer>("codec_data").is_ok());
}

#[test]
fn h265() {
    roundtrip(
        "h265",
        Some("x265enc tune=zerolatency speed-preset=ultrafast key-int-max=60 ! h265parse"),
        None,
    );
}

#[test]
fn vp8() {
    roundtrip("vp8", Some("vp8enc deadline=1 keyframe-max-dist=60"), None);
}

#[test]
fn vp9() {
    roundtrip("vp9", Some("vp9enc deadline=1 keyframe-max-dist=60"), None);
}

#[test]
fn av1() {
    roundtrip(
        "av1",
        Some("av1enc cpu-used=10 usage-profile=realtime keyframe-max-dist=60 ! av1parse"),
        None,
    );
}

/// A subscriber that joins while the broadcast runs starts on a keyframe.
#[test]
fn late_joiner_starts_on_a_keyframe() {
    init();
    let broadcast = unique_broadcast("join");
    let tracks: Tracks = Arc::default();
    let description = format!(
        "{} videotestsrc is-live=true ! video/x-raw,format=I420,width=320,height=240,framerate=30/1 ! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=30 ! h264parse ! sink.video_0",
        sink_props(&broadcast)
    );
    let publ = publisher(&description, &Arc::default());
    publ.set_state(gst::State::Playing).unwrap();
    // Let the broadcast run past a few keyframes (one a second) and into a group.
    let bus = publ.bus().unwrap();
    assert!(
        bus.timed_pop_filtered(
            gst::ClockTime::from_mseconds(1500),
            &[gst::MessageType::Error]
        )
        .is_none(),
        "publisher failed"
    );
    let sub = subscriber(&broadcast, tracks.clone());
    sub.set_state(gst::State::Playing).unwrap();
    wait_for(&sub, &tracks, "video at the late joiner", |t| {
        t.get("video").is_some_and(|t| t.received.len() >= 10)
    });
    publ.set_state(gst::State::Null).unwrap();
    sub.set_state(gst::State::Null).unwrap();
    let t = tracks.lock().unwrap();
    let video = &t["video"];
    assert!(
        video.received[0].1,
        "first buffer of a late joiner is not a keyframe"
    );
}

/// A branch that needs a keyframe mid-group (a tee's new branch, a WebRTC
/// viewer) cannot ask a publisher across the relay. With
/// `rejoin-for-keyframes`, moqsrc answers the request by subscribing again:
/// the relay re-sends its current group from the keyframe that started it.
/// Off (the default), the request goes nowhere; the publisher here sends one
/// keyframe in 100 s, so only the rejoin can bring one.
#[test]
fn a_keyframe_request_is_answered_by_the_relay() {
    init();
    let broadcast = unique_broadcast("rejoin");
    let publ = pipeline(&format!(
        "videotestsrc is-live=true ! video/x-raw,width=160,height=120,framerate=30/1 ! \
         vp8enc deadline=1 keyframe-max-dist=3000 ! {} max-group-duration=0",
        sink_props(&broadcast)
    ));
    let sub = pipeline(&format!(
        "moqsrc name=src url={} broadcast={broadcast} tls-disable-verify=true ! \
         fakesink name=out sync=false",
        RELAY.url()
    ));
    let moq_caps = gst::Caps::new_empty_simple("timestamp/x-moq");
    // (keyframe, publisher timestamp) of every buffer out of moqsrc.
    let seen = record(&sub, "out", move |b| {
        let ts = b
            .iter_meta::<gst::ReferenceTimestampMeta>()
            .find(|m| m.reference().can_intersect(&moq_caps))
            .map(|m| m.timestamp())?;
        Some((!b.flags().contains(gst::BufferFlags::DELTA_UNIT), ts))
    });
    publ.set_state(gst::State::Playing).unwrap();
    sub.set_state(gst::State::Playing).unwrap();
    wait::until(
        "30 frames at the subscriber",
        Duration::from_secs(20),
        || seen.lock().unwrap().len() >= 30,
    );
    let (first_key, first_ts) = seen.lock().unwrap()[0];
    assert!(first_key, "the subscriber did not start on a keyframe");
    let out = by_factory(&sub, "fakesink").static_pad("sink").unwrap();
    let ask = || {
        out.push_event(
            gst_video::UpstreamForceKeyUnitEvent::builder()
                .all_headers(true)
                .build(),
        )
    };
    let keyframes_from = |from: usize| {
        seen.lock().unwrap()[from..]
            .iter()
            .filter(|(key, _)| *key)
            .map(|(_, ts)| *ts)
            .collect::<Vec<_>>()
    };

    let before = seen.lock().unwrap().len();
    ask();
    wait::until(
        "1.5 s of frames after the request",
        Duration::from_secs(10),
        || seen.lock().unwrap().len() >= before + 45,
    );
    let keyframes = keyframes_from(before);
    assert!(
        keyframes.is_empty(),
        "a keyframe came with rejoin off: {keyframes:?}"
    );

    let src = by_factory(&sub, "moqsrc");
    src.set_property("rejoin-for-keyframes", true);
    let before = seen.lock().unwrap().len();
    // Twice: a consumer waiting for its keyframe asks for every frame it
    // drops; one rejoin a second is taken.
    ask();
    ask();
    wait::until(
        "the group again from its keyframe",
        Duration::from_secs(5),
        || !keyframes_from(before).is_empty(),
    );
    assert_eq!(
        keyframes_from(before)[0],
        first_ts,
        "not the same group's keyframe"
    );
    let stats = src.property::<gst::Structure>("stats");
    assert_eq!(stats.get::<u64>("rejoins").unwrap(), 1, "{stats}");
    // The stream goes on past the re-sent frames.
    let resent = seen.lock().unwrap().len();
    wait::until(
        "live frames after the rejoin",
        Duration::from_secs(5),
        || seen.lock().unwrap().len() > resent + 30,
    );
    let warnings = no_error(&sub, "subscriber");
    assert!(warnings.is_empty(), "{warnings:?}");
    publ.set_state(gst::State::Null).unwrap();
    sub.set_state(gst::State::Null).unwrap();
}

/// A subscriber that joins two seconds into a group first gets the group's
/// older frames in a burst (a decoder needs them); they must not push the
/// whole stream that far behind live. Once the burst is through, frames leave
/// moqsrc with timestamps at their arrival (what a synchronising sink renders
/// on time), and timestamps never go back on the pad.
#[test]
fn late_joiner_plays_at_the_live_edge() {
    init();
    let broadcast = unique_broadcast("edge");
    // One keyframe every 4 s, and moqsink asks for none in between.
    let description = format!(
        "{} max-group-duration=0 videotestsrc is-live=true \
         ! video/x-raw,format=I420,width=320,height=240,framerate=30/1 \
         ! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=120 ! h264parse ! sink.video_0",
        sink_props(&broadcast)
    );
    let publ = publisher(&description, &Arc::default());
    publ.set_state(gst::State::Playing).unwrap();
    // Two seconds into the group: 60 frames published.
    let sink = by_factory(&publ, "moqsink");
    watch_bus(
        &publ,
        Duration::from_secs(20),
        "60 published frames",
        |_| {
            sink.property::<gst::Structure>("stats")
                .get::<u64>("frames")
                .unwrap_or(0)
                >= 60
        },
    );
    let sub = pipeline(&format!(
        "moqsrc name=src url={} broadcast={broadcast} tls-disable-verify=true ! fakesink name=out sync=false",
        RELAY.url()
    ));
    // (pts, running time when it left moqsrc), per buffer.
    let clock_of = sub.by_name("src").unwrap().downgrade();
    let seen = record(&sub, "out", move |b| {
        Some((b.pts()?, clock_of.upgrade()?.current_running_time()?))
    });
    sub.set_state(gst::State::Playing).unwrap();
    watch_bus(&sub, Duration::from_secs(20), "120 frames", |_| {
        seen.lock().unwrap().len() >= 120
    });
    assert!(seen.lock().unwrap().len() >= 120, "too few frames");
    sub.set_state(gst::State::Null).unwrap();
    publ.set_state(gst::State::Null).unwrap();
    let seen = seen.lock().unwrap().clone();
    assert!(
        seen.windows(2).all(|w| w[1].0 >= w[0].0),
        "timestamps went back"
    );
    // How far behind its timestamp each frame left (negative: ahead of it,
    // i.e. a sink would hold it back and play the stream behind live).
    let late_ms: Vec<f64> = seen
        .iter()
        .map(|(pts, now)| (now.nseconds() as f64 - pts.nseconds() as f64) / 1e6)
        .collect();
    let mut tail = late_ms[late_ms.len() - 30..].to_vec();
    tail.sort_by(f64::total_cmp);
    let median = tail[tail.len() / 2];
    eprintln!(
        "first frame {:.1} ms late; the last 30 frames: median {median:.1} ms (min {:.1}, max {:.1})",
        late_ms[0],
        tail[0],
        tail[tail.len() - 1]
    );
    assert!(
        (-20.0..100.0).contains(&median),
        "after the burst frames leave {median:.1} ms behind their timestamps (negative: the stream plays behind live)"
    );
}

/// TLS verified against the relay's certificate fingerprint (no
/// `tls-disable-verify`), and `... ! h264parse ! moqsink` linking without a
/// pad name.
#[test]
fn verified_tls_and_implicit_pad() {
    init();
    let broadcast = unique_broadcast("tls");
    let tracks: Tracks = Arc::default();
    let fingerprint = RELAY.fingerprint.clone();
    let sub = subscriber_with(
        &broadcast,
        tracks.clone(),
        &[("tls-fingerprint", &fingerprint)],
    );
    sub.set_state(gst::State::Playing).unwrap();
    let publ = publisher(
        &format!(
            "videotestsrc is-live=true num-buffers=30 ! video/x-raw,format=I420,width=160,height=120,framerate=30/1 \
             ! {X264} ! moqsink name=sink url={} broadcast={broadcast} tls-fingerprint={fingerprint}",
            RELAY.url()
        ),
        &tracks,
    );
    publ.set_state(gst::State::Playing).unwrap();
    finish(&publ, &sub, Duration::from_secs(30));
    let t = tracks.lock().unwrap();
    assert_eq!(t["video"].sent, 30);
    assert!(t["video"].decoded >= 27, "{:?}", t["video"]);
}

/// A resolution change mid-stream updates the catalog: the subscriber gets the
/// new caps on the same pad and keeps decoding.
#[test]
fn caps_change_updates_the_catalog() {
    init();
    let broadcast = unique_broadcast("resize");
    let tracks: Tracks = Arc::default();
    let sub = subscriber(&broadcast, tracks.clone());
    sub.set_state(gst::State::Playing).unwrap();
    let publ = publisher(
        &format!(
            "{} videotestsrc is-live=true ! capsfilter name=size caps=video/x-raw,format=I420,width=320,height=240,framerate=30/1 \
             ! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=30 ! h264parse ! sink.video_0",
            sink_props(&broadcast)
        ),
        &tracks,
    );
    publ.set_state(gst::State::Playing).unwrap();
    let wait_decoded = |n: u64| {
        wait_for(&sub, &tracks, "decoded video", |t| {
            t.get("video").is_some_and(|t| t.decoded >= n)
        })
    };
    wait_decoded(20);
    let before = tracks.lock().unwrap()["video"].decoded;
    publ.by_name("size")
        .unwrap()
        .set_property("caps", i420(640, 480));
    wait_decoded(before + 30);
    publ.send_event(gst::event::Eos::new());
    finish(&publ, &sub, Duration::from_secs(20));
    let t = tracks.lock().unwrap();
    let widths = &t["video"].widths;
    assert_eq!(widths.first(), Some(&320), "{widths:?}");
    assert_eq!(widths.last(), Some(&640), "{widths:?}");
}

/// A pad whose downstream does not take buffers holds up its own track
/// only: catalog updates (here a new size on both tracks) still reach the
/// other pads.
#[test]
fn a_blocked_pad_does_not_hold_up_the_catalog() {
    init();
    let broadcast = unique_broadcast("blocked");
    let branch = |name: &str, pad: &str| {
        format!(
            "videotestsrc is-live=true ! capsfilter name={name} \
             caps=video/x-raw,format=I420,width=160,height=120,framerate=30/1 \
             ! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=30 ! h264parse ! sink.{pad} "
        )
    };
    let publ = pipeline(&format!(
        "{} {} {}",
        sink_props(&broadcast),
        branch("a", "video_0"),
        branch("b", "video_1")
    ));
    let sub = gst::Pipeline::new();
    let src = moqsrc(&broadcast);
    src.set_property("renditions-per-pad", true);
    sub.add(&src).unwrap();
    // Widths of the caps reaching each pad's sink, by moqsrc pad name.
    let widths: Arc<Mutex<HashMap<String, Vec<i32>>>> = Arc::default();
    let (pipeline, kept) = (sub.downgrade(), widths.clone());
    src.connect_pad_added(move |_, pad| {
        let Some(pipeline) = pipeline.upgrade() else {
            return;
        };
        // Not waiting to preroll: the blocked pad's sink never would.
        let sink = gst::ElementFactory::make("fakesink")
            .property("sync", false)
            .property("async", false)
            .build()
            .unwrap();
        pipeline.add(&sink).unwrap();
        sink.sync_state_with_parent().unwrap();
        let sink_pad = sink.static_pad("sink").unwrap();
        let (name, kept) = (pad.name().to_string(), kept.clone());
        sink_pad.add_probe(gst::PadProbeType::EVENT_DOWNSTREAM, move |_, info| {
            if let Some(gst::EventView::Caps(caps)) = info.event().map(|e| e.view())
                && let Ok(width) = caps.caps().structure(0).unwrap().get::<i32>("width")
            {
                kept.lock()
                    .unwrap()
                    .entry(name.clone())
                    .or_default()
                    .push(width);
            }
            gst::PadProbeReturn::Ok
        });
        if pad.name() == "video_0" {
            // Its streaming thread blocks on the first buffer, for good.
            pad.add_probe(
                gst::PadProbeType::BLOCK_DOWNSTREAM | gst::PadProbeType::BUFFER,
                |_, _| gst::PadProbeReturn::Ok,
            );
        }
        pad.link(&sink_pad).unwrap();
    });
    sub.set_state(gst::State::Playing).unwrap();
    publ.set_state(gst::State::Playing).unwrap();
    // (The blocked pad's caps never get out: they go with its first buffer.)
    wait::until(
        "both pads, video_1 playing",
        Duration::from_secs(20),
        || src.pads().len() == 2 && widths.lock().unwrap().contains_key("video_1"),
    );
    // Two seconds of frames through the pad that plays: the blocked track's
    // reader has had as many, more than its channel to the pad holds.
    wait::until("60 frames through moqsrc", Duration::from_secs(10), || {
        src.property::<gst::Structure>("stats")
            .get::<u64>("frames")
            .unwrap_or(0)
            >= 60
    });
    for name in ["a", "b"] {
        publ.by_name(name)
            .unwrap()
            .set_property("caps", i420(320, 240));
    }
    wait::until(
        "the new size on the pad that plays",
        Duration::from_secs(10),
        || {
            widths
                .lock()
                .unwrap()
                .get("video_1")
                .and_then(|w| w.last().copied())
                == Some(320)
        },
    );
    publ.set_state(gst::State::Null).unwrap();
    sub.set_state(gst::State::Null).unwrap();
}

/// Both elements speak an IETF moq-transport draft with the relay when told
/// to (`moq-version=ietf`), and say which one they negotiated.
#[test]
fn ietf_moq_transport() {
    init();
    let broadcast = unique_broadcast("ietf");
    let tracks: Tracks = Arc::default();
    let sub = subscriber_with(
        &broadcast,
        tracks.clone(),
        &[("tls-disable-verify", "true"), ("moq-version", "ietf")],
    );
    sub.set_state(gst::State::Playing).unwrap();
    let publ = publisher(
        &format!(
            "{} moq-version=ietf videotestsrc is-live=true num-buffers=30 \
             ! video/x-raw,format=I420,width=160,height=120,framerate=30/1 ! {X264} ! sink.video_0 \
             audiotestsrc is-live=true num-buffers=50 samplesperbuffer=960 ! audioconvert ! opusenc ! sink.audio_0",
            sink_props(&broadcast)
        ),
        &tracks,
    );
    publ.set_state(gst::State::Playing).unwrap();
    // Read the negotiated versions while both sessions are live.
    wait_for(&sub, &tracks, "video", |t| {
        t.get("video").is_some_and(|t| t.received.len() >= 5)
    });
    let version = |e: &gst::Element| {
        e.property::<gst::Structure>("stats")
            .get::<String>("version")
            .ok()
    };
    let sink_version = version(&publ.by_name("sink").unwrap());
    let src_version = version(&sub.iterate_sources().into_iter().flatten().next().unwrap());
    finish(&publ, &sub, Duration::from_secs(30));
    for version in [&sink_version, &src_version] {
        assert!(
            version
                .as_deref()
                .is_some_and(|v| v.starts_with("moq-transport-")),
            "negotiated {version:?}"
        );
    }
    let t = tracks.lock().unwrap();
    assert!(t["video"].decoded >= 27, "{:?}", t["video"]);
    assert!(t["audio"].decoded >= 45, "{:?}", t["audio"]);
}

/// With `stats-interval`, both elements post their stats as element messages.
#[test]
fn stats_messages() {
    init();
    let broadcast = unique_broadcast("stats");
    let tracks: Tracks = Arc::default();
    let sub = subscriber_with(
        &broadcast,
        tracks.clone(),
        &[("tls-disable-verify", "true"), ("stats-interval", "200")],
    );
    let publ = publisher(
        &format!(
            "{} stats-interval=200 videotestsrc is-live=true num-buffers=45 \
             ! video/x-raw,format=I420,width=160,height=120,framerate=30/1 ! {X264} ! sink.video_0",
            sink_props(&broadcast)
        ),
        &tracks,
    );
    let frames_seen = |pipeline: &gst::Pipeline, name: &'static str| {
        let seen: Arc<Mutex<Vec<u64>>> = Arc::default();
        let sink_seen = seen.clone();
        pipeline.bus().unwrap().set_sync_handler(move |_, msg| {
            if let gst::MessageView::Element(e) = msg.view()
                && let Some(s) = e.structure()
                && s.name() == name
            {
                sink_seen
                    .lock()
                    .unwrap()
                    .push(s.get::<u64>("frames").unwrap());
            }
            gst::BusSyncReply::Pass
        });
        seen
    };
    // The fields a dashboard reads, on both sides.
    let fields = |pipeline: &gst::Pipeline, factory: &str| {
        by_factory(pipeline, factory).property::<gst::Structure>("stats")
    };
    let sink_stats = frames_seen(&publ, "application/x-moqsink-stats");
    let src_stats = frames_seen(&sub, "application/x-moqsrc-stats");
    sub.set_state(gst::State::Playing).unwrap();
    publ.set_state(gst::State::Playing).unwrap();
    // Mid-stream: frames flowed, so groups and a delay are there.
    wait_for(&sub, &tracks, "10 decoded video frames", |t| {
        t.get("video").is_some_and(|v| v.decoded >= 10)
    });
    let (sink_now, src_now) = (fields(&publ, "moqsink"), fields(&sub, "moqsrc"));
    eprintln!("{sink_now}\n{src_now}");
    for (stats, names) in [
        (
            &sink_now,
            &["frames", "bytes", "groups", "dropped", "reconnects"][..],
        ),
        (
            &src_now,
            &[
                "frames",
                "bytes",
                "groups",
                "discontinuities",
                "resubscriptions",
                "rejoins",
                "reconnects",
            ][..],
        ),
    ] {
        for name in names {
            assert!(stats.get::<u64>(*name).is_ok(), "no {name} in {stats}");
        }
        assert!(stats.get::<u64>("groups").unwrap() > 0, "{stats}");
        assert_eq!(stats.get::<u64>("reconnects").unwrap(), 0, "{stats}");
        // Loopback and a tiny stream: well under a second either way.
        let delay = stats.get::<i64>("delay-us").unwrap();
        assert!(delay.abs() < 1_000_000, "{stats}");
        assert!(stats.get::<u64>("rtt-us").is_ok(), "{stats}");
    }
    finish(&publ, &sub, Duration::from_secs(30));
    for (side, seen) in [("sink", sink_stats), ("src", src_stats)] {
        let seen = seen.lock().unwrap();
        assert!(
            seen.len() >= 4,
            "{side}: {} stats messages in 1.5 s",
            seen.len()
        );
        assert!(seen.windows(2).all(|w| w[0] <= w[1]), "{side}: {seen:?}");
        assert!(seen.last().copied().unwrap_or(0) > 0, "{side}: {seen:?}");
    }
}

/// What `gst-launch-1.0 -e` does on Ctrl-C: an EOS sent to the pipeline
/// reaches moqsrc, which ends every pad after the frames it already has, so
/// the pipeline posts EOS and stops cleanly.
#[test]
fn eos_sent_to_the_pipeline_ends_moqsrc() {
    init();
    let broadcast = unique_broadcast("eos-sent");
    let tracks: Tracks = Arc::default();
    let description = format!(
        "{} videotestsrc is-live=true ! video/x-raw,format=I420,width=160,height=120,framerate=30/1 \
           ! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=30 ! h264parse ! sink.video_0 \
         audiotestsrc is-live=true ! opusenc ! sink.audio_0",
        sink_props(&broadcast)
    );
    let publ = publisher(&description, &Arc::default());
    publ.set_state(gst::State::Playing).unwrap();
    let sub = subscriber(&broadcast, tracks.clone());
    sub.set_state(gst::State::Playing).unwrap();
    wait_for(&sub, &tracks, "video and audio", |t| {
        ["video", "audio"]
            .iter()
            .all(|kind| t.get(*kind).is_some_and(|t| t.received.len() >= 5))
    });
    assert!(sub.send_event(gst::event::Eos::new()), "EOS taken");
    let ended = wait_eos(&sub, Duration::from_secs(10));
    sub.set_state(gst::State::Null).unwrap();
    publ.set_state(gst::State::Null).unwrap();
    ended.expect("the subscriber's pipeline ends with EOS");
}

/// The hang catalog's `clock` gives the wall-clock time of timestamp zero,
/// which for moqsink is running time zero: a reader adds a frame's
/// timestamp to it and gets when the frame entered the publisher.
#[test]
fn the_catalog_clock_is_running_time_zero() {
    init();
    let broadcast = unique_broadcast("clock");
    let publ = publisher(
        &format!(
            "{} audiotestsrc is-live=true ! opusenc ! sink.audio_0",
            sink_props(&broadcast)
        ),
        &Arc::default(),
    );
    publ.set_state(gst::State::Playing).unwrap();
    let _ = publ.state(gst::ClockTime::from_seconds(5));
    let running = publ.current_running_time().expect("playing");
    let zero = std::time::SystemTime::now() - Duration::from_nanos(running.nseconds());

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let clock = runtime.block_on(async {
        let origin = moq_tokio::origin::spawn();
        let consumer = origin.consume();
        let mut config = moq_tokio::connect::Config::default();
        config.tls.insecure = Some(true);
        let client = config
            .init(moq_tokio::quic::Config::default())
            .unwrap()
            .with_subscriber(origin);
        let _connection = client.connect(RELAY.url().parse::<url::Url>().unwrap());
        let read = async {
            let broadcast = consumer.routed_broadcast(broadcast.as_str()).await.unwrap();
            let track = broadcast
                .track("catalog.json")
                .unwrap()
                .subscribe(hang::catalog::Catalog::default_subscription())
                .await
                .unwrap();
            let mut catalog = moq_mux::catalog::hang::Consumer::<()>::new(track);
            loop {
                let next = catalog.next().await.unwrap().expect("a catalog");
                if let Some(clock) = next.clock {
                    return clock;
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(10), read)
            .await
            .expect("a catalog with a clock within 10 s")
    });
    publ.set_state(gst::State::Null).unwrap();
    let wall = clock
        .wall_clock(moq_net::Timestamp::from_micros(0).unwrap())
        .unwrap();
    let off = wall.duration_since(zero).unwrap_or_else(|e| e.duration());
    assert!(
        off < Duration::from_millis(100),
        "the catalog's zero is {wall:?}, running time zero was {zero:?}"
    );
}
