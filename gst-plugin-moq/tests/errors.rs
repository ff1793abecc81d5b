// SPDX-License-Identifier: MIT OR Apache-2.0

//! Every failure a user can cause ends as an ERROR on the bus that names it,
//! within a bound: no panic, no hang.

mod common;

use std::time::Duration;

use common::*;
use gst::prelude::*;

fn expect_error(p: &gst::Pipeline, bound: Duration, needles: &[&str]) -> Duration {
    let _ = p.set_state(gst::State::Playing);
    let (text, took) = wait_error(p, bound).unwrap_or_else(|| panic!("no ERROR within {bound:?}"));
    eprintln!("after {took:?}: {text}");
    p.set_state(gst::State::Null).unwrap();
    for needle in needles {
        assert!(
            text.contains(needle),
            "error '{text}' does not mention '{needle}'"
        );
    }
    took
}

const VIDEO: &str = "videotestsrc is-live=true ! video/x-raw,format=I420,width=160,height=120 ! x264enc tune=zerolatency ! h264parse";

#[test]
fn sink_bad_url() {
    for (url, needle) in [
        ("not-a-url", "Invalid relay URL"),
        ("ftp://127.0.0.1:1/anon", "Unsupported URL scheme 'ftp'"),
    ] {
        let p = pipeline(&format!("{VIDEO} ! moqsink url={url} broadcast=x"));
        expect_error(&p, Duration::from_secs(5), &[needle]);
    }
    let p = pipeline(&format!("{VIDEO} ! moqsink broadcast=x"));
    expect_error(&p, Duration::from_secs(5), &["'url' property is not set"]);
    let p = pipeline(&format!("{VIDEO} ! moqsink url={}", RELAY.url()));
    expect_error(
        &p,
        Duration::from_secs(5),
        &["'broadcast' property is not set"],
    );
}

#[test]
fn src_bad_url() {
    let p = pipeline("moqsrc url=https:// broadcast=x ! fakesink");
    expect_error(&p, Duration::from_secs(5), &["Invalid relay URL"]);
}

/// Nothing answers on the port: the element gives up after `connect-timeout`.
fn unreachable(element: &str) {
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let url = format!("https://{}/anon", silent.local_addr().unwrap());
    let description = match element {
        "moqsink" => format!(
            "{VIDEO} ! moqsink url={url} broadcast=x tls-disable-verify=true connect-timeout=1500"
        ),
        _ => format!(
            "moqsrc url={url} broadcast=x tls-disable-verify=true connect-timeout=1500 ! fakesink"
        ),
    };
    let p = pipeline(&description);
    let took = expect_error(
        &p,
        Duration::from_secs(15),
        &["Connection to MoQ relay", "127.0.0.1"],
    );
    assert!(
        took >= Duration::from_millis(1000),
        "gave up too early: {took:?}"
    );
    drop(silent);
}

#[test]
fn sink_unreachable_relay() {
    unreachable("moqsink");
}

#[test]
fn src_unreachable_relay() {
    unreachable("moqsrc");
}

/// A stream that ends before the relay was ever reached is an ERROR that
/// names the relay and says the stream was lost, never a clean EOS.
#[test]
fn sink_eos_without_a_relay_is_an_error() {
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let url = format!("https://{}/anon", silent.local_addr().unwrap());
    let p = pipeline(&format!(
        "videotestsrc is-live=true num-buffers=10 ! video/x-raw,format=I420,width=160,height=120 \
         ! x264enc tune=zerolatency ! h264parse \
         ! moqsink url={url} broadcast=x tls-disable-verify=true connect-timeout=1500"
    ));
    p.set_state(gst::State::Playing).unwrap();
    let ended = wait_eos(&p, Duration::from_secs(15));
    p.set_state(gst::State::Null).unwrap();
    let text = ended.expect_err("an ERROR, not EOS");
    for needle in ["Connection to MoQ relay", "127.0.0.1", "EOS", "lost"] {
        assert!(
            text.contains(needle),
            "'{text}' does not mention '{needle}'"
        );
    }
    drop(silent);
}

/// The relay refuses a path that is not public: an error, right away.
#[test]
fn refused_connection() {
    let url = format!("https://{}/private", RELAY.addr);
    let p = pipeline(&format!(
        "{VIDEO} ! moqsink url={url} broadcast=x tls-disable-verify=true"
    ));
    expect_error(
        &p,
        Duration::from_secs(8),
        &["Connection to MoQ relay", "unauthorized"],
    );
    let p = pipeline(&format!(
        "moqsrc url={url} broadcast=x tls-disable-verify=true ! fakesink"
    ));
    expect_error(
        &p,
        Duration::from_secs(8),
        &["Connection to MoQ relay", "unauthorized"],
    );
}

/// TLS verification is on by default: the relay's self-signed certificate is
/// refused unless the user disables verification.
#[test]
fn self_signed_certificate_is_refused_by_default() {
    let p = pipeline(&format!(
        "{VIDEO} ! moqsink url={} broadcast=x connect-timeout=3000",
        RELAY.url()
    ));
    expect_error(
        &p,
        Duration::from_secs(15),
        &[
            "Connection to MoQ relay",
            "certificate",
            "tls-disable-verify",
        ],
    );
}

/// Caps moqsink cannot carry are refused with an error that names them.
#[test]
fn unsupported_caps_are_named() {
    let p = pipeline(&format!(
        "appsrc caps=video/x-theora,width=320,height=240 format=time ! moqsink url={} broadcast=x tls-disable-verify=true",
        RELAY.url()
    ));
    let src = p
        .by_name("appsrc0")
        .unwrap()
        .downcast::<gst_app::AppSrc>()
        .unwrap();
    p.set_state(gst::State::Playing).unwrap();
    let mut buffer = gst::Buffer::with_size(16).unwrap();
    buffer.get_mut().unwrap().set_pts(gst::ClockTime::ZERO);
    let _ = src.push_buffer(buffer);
    // accept-caps refuses them (upstream then fails with not-negotiated),
    // and moqsink says why first.
    let bus = p.bus().unwrap();
    let mut warnings = Vec::new();
    let mut failed = false;
    let types = [gst::MessageType::Warning, gst::MessageType::Error];
    while let Some(msg) = bus.timed_pop_filtered(gst::ClockTime::from_seconds(5), &types) {
        match msg.view() {
            gst::MessageView::Warning(w) => {
                warnings.push(format!("{} ({:?})", w.error(), w.debug()))
            }
            _ => {
                failed = true;
                break;
            }
        }
    }
    p.set_state(gst::State::Null).unwrap();
    assert!(failed, "the pipeline fails (not negotiated)");
    assert!(
        warnings.iter().any(|w| w.contains("video/x-theora")),
        "{warnings:?}"
    );

    // Raw audio on a video_%u pad does not even link: gst-launch says so.
    init();
    let err = gst::parse::launch("audiotestsrc ! moqsink url=https://127.0.0.1:1/anon broadcast=x")
        .unwrap_err();
    assert!(
        err.to_string().contains("link") || err.to_string().contains("could not"),
        "{err}"
    );
}

/// Publish a broadcast whose catalog track holds `catalog` as is, with the MoQ
/// library directly; returns what keeps it alive.
fn publish_raw_catalog(broadcast: &str, catalog: Option<&'static str>) -> impl Drop {
    publish_raw_catalog_with(broadcast, catalog, |_| Vec::new())
}

/// Like [`publish_raw_catalog`], with more tracks made by `more` (kept alive
/// with the rest).
fn publish_raw_catalog_with(
    broadcast: &str,
    catalog: Option<&'static str>,
    more: impl FnOnce(&moq_net::broadcast::Producer) -> Vec<Box<dyn std::any::Any>>,
) -> impl Drop {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let guard = runtime.enter();
    let origin = moq_tokio::origin::spawn();
    let producer = origin
        .publish(broadcast, moq_net::origin::Route::default())
        .unwrap();
    let mut track = producer.create_track("catalog.json", None).unwrap();
    if let Some(catalog) = catalog {
        track
            .write_frame(
                moq_net::Timestamp::from_micros(0).unwrap(),
                catalog.as_bytes(),
            )
            .unwrap();
    }
    let extra = more(&producer);
    let mut config = moq_tokio::connect::Config::default();
    config.tls.insecure = Some(true);
    let client = config
        .init(moq_tokio::quic::Config::default())
        .unwrap()
        .with_publisher(origin.consume());
    let connection = client.connect(RELAY.url().parse::<url::Url>().unwrap());
    drop(guard);
    struct Live(Vec<Box<dyn std::any::Any>>);
    impl Drop for Live {
        fn drop(&mut self) {
            // The runtime goes last, after what runs on it.
            let runtime = self.0.remove(0);
            self.0.clear();
            drop(runtime);
        }
    }
    let mut held: Vec<Box<dyn std::any::Any>> =
        vec![Box::new(runtime), Box::new(connection), Box::new(track)];
    held.extend(extra);
    held.push(Box::new(producer));
    held.push(Box::new(origin));
    Live(held)
}

/// A publisher whose catalog is not JSON: moqsrc says so on the bus, no panic,
/// no hang.
#[test]
fn garbage_catalog_is_an_error() {
    init();
    let broadcast = unique_broadcast("garbage");
    let _live = publish_raw_catalog(&broadcast, Some("{ this is not a catalog"));
    let p = pipeline(&format!(
        "moqsrc url={} broadcast={broadcast} tls-disable-verify=true ! fakesink",
        RELAY.url()
    ));
    expect_error(&p, Duration::from_secs(10), &["catalog", &broadcast]);
}

/// A rendition with a codec moqsrc cannot carry is a WARNING naming it; the
/// element keeps running.
#[test]
fn unknown_codec_is_a_warning() {
    init();
    let broadcast = unique_broadcast("theora");
    let _live = publish_raw_catalog(
        &broadcast,
        Some(
            r#"{"video":{"renditions":{"0.theora":{"codec":"theora","container":{"kind":"legacy"}}}}}"#,
        ),
    );
    let p = pipeline(&format!(
        "moqsrc url={} broadcast={broadcast} tls-disable-verify=true ! fakesink",
        RELAY.url()
    ));
    p.set_state(gst::State::Playing).unwrap();
    let bus = p.bus().unwrap();
    let msg = bus
        .timed_pop_filtered(
            gst::ClockTime::from_seconds(10),
            &[gst::MessageType::Warning, gst::MessageType::Error],
        )
        .expect("a warning");
    let text = match msg.view() {
        gst::MessageView::Warning(w) => w.error().to_string(),
        other => panic!("expected a warning, got {other:?}"),
    };
    assert!(
        text.contains("0.theora") && text.contains("theora"),
        "{text}"
    );
    // Skipping is not failing: no error follows.
    assert!(
        bus.timed_pop_filtered(
            gst::ClockTime::from_mseconds(500),
            &[gst::MessageType::Error]
        )
        .is_none()
    );
    p.set_state(gst::State::Null).unwrap();
}

/// A broadcast nobody publishes: an ERROR naming it once broadcast-timeout
/// has passed, instead of waiting forever.
#[test]
fn missing_broadcast_times_out() {
    init();
    let broadcast = unique_broadcast("nobody");
    let p = pipeline(&format!(
        "moqsrc url={} broadcast={broadcast} tls-disable-verify=true broadcast-timeout=700 ! fakesink",
        RELAY.url()
    ));
    let took = expect_error(
        &p,
        Duration::from_secs(10),
        &[&broadcast, "did not appear", "broadcast-timeout"],
    );
    assert!(took >= Duration::from_millis(700), "{took:?}");
}

/// A broadcast that is announced but never sends its catalog: an ERROR
/// once catalog-timeout has passed.
#[test]
fn missing_catalog_times_out() {
    init();
    let broadcast = unique_broadcast("nocatalog");
    let _live = publish_raw_catalog(&broadcast, None);
    let p = pipeline(&format!(
        "moqsrc url={} broadcast={broadcast} tls-disable-verify=true catalog-timeout=700 ! fakesink",
        RELAY.url()
    ));
    expect_error(
        &p,
        Duration::from_secs(10),
        &[&broadcast, "No catalog", "catalog-timeout"],
    );
}

/// One frame a hostile publisher writes.
enum Raw {
    /// A well-formed legacy frame with this timestamp (µs).
    At(u64),
    /// Bytes that are not a frame of the container at all.
    Garbage(&'static [u8]),
    /// A well-formed frame with this timestamp (µs) and this many bytes.
    Big(u64, usize),
    /// Ends the track here, with this group left unfinished (a publisher
    /// that stops mid-group).
    Cut,
}

/// A catalog of Opus renditions (legacy container) with these track names.
fn opus_catalog(names: &[&str]) -> &'static str {
    let opus =
        r#"{"codec":"opus","sampleRate":48000,"numberOfChannels":2,"container":{"kind":"legacy"}}"#;
    let renditions: Vec<String> = names.iter().map(|n| format!(r#""{n}":{opus}"#)).collect();
    let catalog = format!(
        r#"{{"audio":{{"renditions":{{{}}}}}}}"#,
        renditions.join(",")
    );
    // The publisher's task holds it for as long as the test runs.
    Box::leak(catalog.into_boxed_str())
}

/// Publishes `catalog` and, per track, groups of frames written as given.
fn publish_hostile(
    broadcast: &str,
    catalog: &'static str,
    tracks: Vec<(&'static str, Vec<Vec<Raw>>)>,
) -> impl Drop {
    publish_raw_catalog_with(broadcast, Some(catalog), move |producer| {
        let mut keep: Vec<Box<dyn std::any::Any>> = Vec::new();
        for (name, groups) in tracks {
            let track = producer.create_track(name, None).unwrap();
            'groups: for (sequence, frames) in groups.into_iter().enumerate() {
                let mut group = track
                    .create_group(moq_net::group::Info {
                        sequence: sequence as u64,
                    })
                    .unwrap();
                for frame in frames {
                    match frame {
                        Raw::At(us) => hang::container::Frame {
                            timestamp: moq_net::Timestamp::from_micros(us).unwrap(),
                            payload: bytes::Bytes::from_static(&[0xfc, 0xff, 0xfe]),
                        }
                        .write_to(&mut group)
                        .unwrap(),
                        Raw::Big(us, size) => hang::container::Frame {
                            timestamp: moq_net::Timestamp::from_micros(us).unwrap(),
                            payload: bytes::Bytes::from(vec![0xfc; size]),
                        }
                        .write_to(&mut group)
                        .unwrap(),
                        Raw::Garbage(bytes) => group
                            .write_frame(moq_net::Timestamp::from_micros(0).unwrap(), bytes)
                            .unwrap(),
                        Raw::Cut => {
                            track.finish().unwrap();
                            keep.push(Box::new(group));
                            break 'groups;
                        }
                    }
                }
                group.finish().unwrap();
            }
            keep.push(Box::new(track));
        }
        keep
    })
}

/// Frames whose timestamps jump forward by hours play on with sane times
/// (a WARNING); a track whose timestamps go back by hours, and one whose
/// frames do not parse, are each skipped with a WARNING; the good track
/// plays on, no ERROR, no crash.
#[test]
fn hostile_frames_are_warnings() {
    init();
    let broadcast = unique_broadcast("hostile");
    // Renditions come out in name order: audio_0, audio_1, audio_2.
    let catalog = opus_catalog(&["a-jumpy", "b-backwards", "c-broken"]);
    let hours = 3 * 3600 * 1_000_000u64;
    let _live = publish_hostile(
        &broadcast,
        catalog,
        vec![
            (
                "a-jumpy",
                // Forward by three hours within one group: moq-net evicts
                // whole groups by media time, so a jump across groups may
                // drop the older one before moqsrc ever sees the jump.
                vec![vec![
                    Raw::At(hours),
                    Raw::At(hours + 20_000),
                    Raw::At(hours + 40_000),
                    Raw::At(2 * hours),
                    Raw::At(2 * hours + 20_000),
                    Raw::At(2 * hours + 40_000),
                ]],
            ),
            (
                "b-backwards",
                vec![
                    vec![Raw::At(hours), Raw::At(hours + 20_000)],
                    vec![Raw::At(0), Raw::At(20_000)],
                ],
            ),
            (
                "c-broken",
                // A varint that promises more bytes than there are.
                vec![vec![Raw::Garbage(&[0xff]), Raw::Garbage(&[0xc0, 0x01])]],
            ),
        ],
    );
    let p = pipeline(&format!(
        "moqsrc name=src url={} broadcast={broadcast} tls-disable-verify=true renditions-per-pad=true \
         src.audio_0 ! fakesink name=jumpy sync=false async=false \
         src.audio_1 ! fakesink sync=false async=false \
         src.audio_2 ! fakesink sync=false async=false",
        RELAY.url()
    ));
    let pts = record(&p, "jumpy", |b| b.pts());
    p.set_state(gst::State::Playing).unwrap();
    let warnings = watch_bus(
        &p,
        Duration::from_secs(10),
        "six frames and three warnings",
        |w| pts.lock().unwrap().len() >= 6 && w.len() >= 3,
    );
    p.set_state(gst::State::Null).unwrap();
    eprintln!("warnings: {warnings:#?}");
    let pts = pts.lock().unwrap().clone();
    assert_eq!(pts.len(), 6, "the jumpy track lost frames: {pts:?}");
    // Played in order, within a second: no three-hour gap.
    assert!(pts.windows(2).all(|w| w[1] >= w[0]), "{pts:?}");
    assert!(pts[5] - pts[0] < gst::ClockTime::from_seconds(1), "{pts:?}");
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("audio_0") && w.contains("jumped by 10800")),
        "{warnings:#?}"
    );
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("'b-backwards'") && w.contains("skipped")),
        "{warnings:#?}"
    );
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("'c-broken'") && w.contains("skipped")),
        "{warnings:#?}"
    );
}

/// Catalogs with absurd sizes or missing fields: each is a WARNING (that
/// rendition skipped) or an ERROR naming the catalog, never a crash or a hang.
#[test]
fn odd_catalogs_are_reported() {
    init();
    let cases: [(&str, &'static str); 5] = [
        (
            // Found by fuzzing: hang 0.21 panics on this codec string.
            "nonascii",
            r#"{"video":{"renditions":{"v":{"codec":"avc1.4Φ01f","container":{"kind":"legacy"}}}}}"#,
        ),
        (
            "huge",
            r#"{"video":{"renditions":{"v":{"codec":"avc1.42c01f","codedWidth":4294967295,"codedHeight":4294967295,"framerate":1e300,"container":{"kind":"legacy"}}}}}"#,
        ),
        (
            "nocodec",
            r#"{"video":{"renditions":{"v":{"codedWidth":640,"container":{"kind":"legacy"}}}}}"#,
        ),
        (
            "noaudiofields",
            r#"{"audio":{"renditions":{"a":{"codec":"opus","container":{"kind":"legacy"}}}}}"#,
        ),
        (
            "zerochannels",
            r#"{"audio":{"renditions":{"a":{"codec":"opus","sampleRate":0,"numberOfChannels":0,"container":{"kind":"legacy"}}}}}"#,
        ),
    ];
    for (name, catalog) in cases {
        let broadcast = unique_broadcast(name);
        let _live = publish_raw_catalog(&broadcast, Some(catalog));
        let p = pipeline(&format!(
            "moqsrc url={} broadcast={broadcast} tls-disable-verify=true catalog-timeout=3000 ! fakesink",
            RELAY.url()
        ));
        p.set_state(gst::State::Playing).unwrap();
        let msg = p
            .bus()
            .unwrap()
            .timed_pop_filtered(
                gst::ClockTime::from_seconds(10),
                &[gst::MessageType::Warning, gst::MessageType::Error],
            )
            .unwrap_or_else(|| panic!("{name}: no message about the catalog"));
        let text = match msg.view() {
            gst::MessageView::Warning(w) => format!("WARNING {}", w.error()),
            gst::MessageView::Error(e) => format!("ERROR {}", e.error()),
            _ => unreachable!(),
        };
        eprintln!("{name}: {text}");
        // Refused as a catalog, skipped as a rendition, or (sizes that
        // parse) a track that is not there: each said, none a crash.
        assert!(
            text.contains("catalog") || text.contains("track '") || text.contains("panicked"),
            "{name}: {text}"
        );
        p.set_state(gst::State::Null).unwrap();
    }
}

/// A track that ends in the middle of a group: what arrived of it plays, its
/// pad ends with EOS, the broadcast's other track plays on; no ERROR, no hang.
#[test]
fn track_ending_mid_group() {
    init();
    let broadcast = unique_broadcast("cut");
    let catalog = opus_catalog(&["a-cut", "b-good"]);
    let _live = publish_hostile(
        &broadcast,
        catalog,
        vec![
            (
                "a-cut",
                vec![
                    vec![Raw::At(0), Raw::At(20_000)],
                    vec![Raw::At(40_000), Raw::At(60_000), Raw::Cut],
                ],
            ),
            (
                "b-good",
                vec![
                    vec![Raw::At(0), Raw::At(20_000)],
                    vec![Raw::At(40_000), Raw::At(60_000)],
                    vec![Raw::At(80_000)],
                ],
            ),
        ],
    );
    let p = pipeline(&format!(
        "moqsrc name=src url={} broadcast={broadcast} tls-disable-verify=true renditions-per-pad=true \
         src.audio_0 ! fakesink name=cut sync=false async=false \
         src.audio_1 ! fakesink name=good sync=false async=false",
        RELAY.url()
    ));
    let cut = record(&p, "cut", |_| Some(()));
    let good = record(&p, "good", |_| Some(()));
    let cut_eos = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let ended = cut_eos.clone();
    p.by_name("cut")
        .unwrap()
        .static_pad("sink")
        .unwrap()
        .add_probe(gst::PadProbeType::EVENT_DOWNSTREAM, move |_, info| {
            if info
                .event()
                .is_some_and(|e| e.type_() == gst::EventType::Eos)
            {
                ended.store(true, std::sync::atomic::Ordering::SeqCst);
            }
            gst::PadProbeReturn::Ok
        });
    let ended = || cut_eos.load(std::sync::atomic::Ordering::SeqCst);
    let load = |n: &std::sync::Mutex<Vec<()>>| n.lock().unwrap().len();
    p.set_state(gst::State::Playing).unwrap();
    watch_bus(
        &p,
        Duration::from_secs(10),
        "the cut track ended and the good one played on",
        |_| ended() && load(&good) >= 5,
    );
    p.set_state(gst::State::Null).unwrap();
    eprintln!(
        "cut track: {} frames, EOS {}; good track: {} frames",
        load(&cut),
        ended(),
        load(&good)
    );
    assert!(ended(), "the cut track's pad never ended");
    // Its first group whole; of the cut one, what was written (or nothing,
    // if the relay dropped the unfinished group).
    assert!((2..=4).contains(&load(&cut)), "{} frames", load(&cut));
    assert_eq!(load(&good), 5, "the other track lost frames");
}

/// A frame of 24 MiB (moq-net refuses more than 32 MiB before allocating, at
/// the relay and here) in a small audio track: it arrives whole, the frames
/// after it too; no ERROR, no crash.
#[test]
fn oversized_frame_passes_through() {
    init();
    let broadcast = unique_broadcast("big");
    let catalog = opus_catalog(&["a"]);
    const BIG: usize = 24 << 20;
    let _live = publish_hostile(
        &broadcast,
        catalog,
        vec![(
            "a",
            vec![
                vec![Raw::At(0)],
                vec![Raw::Big(20_000, BIG)],
                vec![Raw::At(40_000), Raw::At(60_000)],
            ],
        )],
    );
    let p = pipeline(&format!(
        "moqsrc url={} broadcast={broadcast} tls-disable-verify=true \
         ! fakesink name=out sync=false async=false",
        RELAY.url()
    ));
    let sizes = record(&p, "out", |b| Some(b.size()));
    p.set_state(gst::State::Playing).unwrap();
    watch_bus(&p, Duration::from_secs(15), "four frames", |_| {
        sizes.lock().unwrap().len() >= 4
    });
    p.set_state(gst::State::Null).unwrap();
    let sizes = sizes.lock().unwrap().clone();
    eprintln!("buffer sizes: {sizes:?}");
    assert_eq!(sizes.len(), 4, "{sizes:?}");
    assert_eq!(sizes[1], BIG);
}
