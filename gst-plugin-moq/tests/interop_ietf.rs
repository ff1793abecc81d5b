// SPDX-License-Identifier: MIT OR Apache-2.0

//! Interop with an independent IETF MoQT implementation, aiomoqt (Python,
//! PyPI), through the in-process relay, on drafts 14 and 22, over raw QUIC
//! and WebTransport: its media subscriber reads a moqsink broadcast by the MSF
//! catalog and LOC objects and writes the H.264 it got to a file that
//! GStreamer decodes; its media publisher sends an MP4 that GStreamer made,
//! and moqsrc finds the MSF catalog and decodes the LOC tracks.
//!
//! Needs a Python with aiomoqt 0.13.3: `GST_MOQ_AIOMOQT_PYTHON` names it
//! (`.ci/run` makes a virtual environment with Python 3.12, which aiomoqt
//! needs). Without it the tests say so and pass, unless
//! `GST_MOQ_INTEROP_REQUIRED=1` (set by `.ci/run`).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use common::*;
use gst::prelude::*;

/// One aiomoqt test at a time: aiomoqt 0.13.3 closes its session on a
/// PUBLISH_NAMESPACE_DONE for any namespace, which moq-relay sends to
/// draft-14 sessions whenever any broadcast ends, so a broadcast of one test
/// ending would cut another test's aiomoqt short.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// The Python that has aiomoqt, or `None` (with a message) when there is none
/// and it is not required.
fn aiomoqt() -> Option<PathBuf> {
    let python = std::env::var_os("GST_MOQ_AIOMOQT_PYTHON").map(PathBuf::from);
    let found = python.filter(|python| {
        Command::new(python)
            .args(["-c", "import aiomoqt.tools.sub_media"])
            .output()
            .is_ok_and(|out| out.status.success())
    });
    if found.is_none() {
        let text = "no Python with aiomoqt (set GST_MOQ_AIOMOQT_PYTHON to one; \
                    aiomoqt 0.13 needs Python 3.12)";
        if std::env::var_os("GST_MOQ_INTEROP_REQUIRED").is_some() {
            panic!("{text}");
        }
        eprintln!("skipping: {text}");
    }
    found
}

/// A live H.264 + Opus moqsink publisher. H.264 goes out length-prefixed
/// (stream-format=avc, the LOC "canonical" form with avcC in the catalog):
/// aiomoqt 0.13.3 reads every H.264 LOC payload as length-prefixed.
/// `properties` go on moqsink.
fn publisher(broadcast: &str, properties: &str) -> gst::Pipeline {
    let pipeline = pipeline(&format!(
        "moqsink name=sink url={} broadcast={broadcast} tls-disable-verify=true {properties} \
         videotestsrc is-live=true ! video/x-raw,format=I420,width=320,height=240,framerate=30/1 \
           ! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=30 ! h264parse \
           ! video/x-h264,stream-format=avc ! sink.video_0 \
         audiotestsrc is-live=true samplesperbuffer=960 ! audioconvert ! opusenc ! sink.audio_0",
        RELAY.url()
    ));
    pipeline.set_state(gst::State::Playing).unwrap();
    // Live at the relay, with whole groups behind it, before anyone comes.
    let sink = by_factory(&pipeline, "moqsink");
    wait::until(
        "two published video groups",
        Duration::from_secs(20),
        || {
            sink.property::<gst::Structure>("stats")
                .get::<u64>("groups")
                .unwrap_or(0)
                >= 2
        },
    );
    pipeline
}

/// What aiomoqt's `sub_media` printed for track `name`: frames received and
/// objects it rejected, from its closing line `name: N frames, R rejected`.
fn received(output: &str, name: &str) -> Option<(u64, u64)> {
    let line = output
        .lines()
        .find_map(|l| l.trim().strip_prefix(&format!("{name}: ")))?;
    let mut words = line.split([' ', ',']).filter(|w| !w.is_empty());
    let frames = words.next()?.parse().ok()?;
    let rejected = match (words.next(), words.next()) {
        (Some("frames"), Some(n)) => n.parse().ok()?,
        _ => 0,
    };
    Some((frames, rejected))
}

/// Frames GStreamer decodes from an H.264 byte-stream file.
fn decoded_h264_frames(file: &Path) -> u64 {
    let decode = pipeline(&format!(
        "filesrc location={} ! h264parse ! avdec_h264 ! fakesink name=out",
        file.display()
    ));
    let counted = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let count = counted.clone();
    by_factory(&decode, "fakesink")
        .static_pad("sink")
        .unwrap()
        .add_probe(gst::PadProbeType::BUFFER, move |_, _| {
            count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            gst::PadProbeReturn::Ok
        });
    decode.set_state(gst::State::Playing).unwrap();
    let ended = wait_eos(&decode, Duration::from_secs(30));
    decode.set_state(gst::State::Null).unwrap();
    ended.expect("the H.264 aiomoqt wrote decodes to its end");
    counted.load(std::sync::atomic::Ordering::Relaxed)
}

/// aiomoqt's media subscriber on `url` (its scheme picks the transport) and
/// `draft` reads the broadcast for 4 s; every video and audio object it gets
/// is LOC it accepts, and the video decodes.
fn subscribe(python: &Path, url: &str, broadcast: &str, draft: u32) {
    let out = std::env::temp_dir().join(unique_broadcast("aiomoqt"));
    let run = Command::new(python)
        .args(["-m", "aiomoqt.tools.sub_media", url, "-N", broadcast, "-k"])
        .args(["--draft", &draft.to_string(), "-t", "4", "-i", "60"])
        .arg("--out")
        .arg(&out)
        .output()
        .expect("aiomoqt's sub_media runs");
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    let what = format!("sub_media {url} draft {draft}:\n{printed}");
    assert!(
        printed.contains("0.avc1.loc"),
        "no video in the MSF catalog; {what}"
    );
    let video = received(&printed, "0.avc1.loc").unwrap_or_else(|| panic!("{what}"));
    let audio = received(&printed, "1.opus.loc").unwrap_or_else(|| panic!("{what}"));
    // 4 s of 30 fps video and 50 Opus packets a second, with room for the
    // time its session takes to set up.
    assert!(video.0 >= 60 && video.1 == 0, "video {video:?}; {what}");
    assert!(audio.0 >= 100 && audio.1 == 0, "audio {audio:?}; {what}");
    let decoded = decoded_h264_frames(&out.join("video.h264"));
    assert!(decoded >= 60, "{decoded} frames decoded; {what}");
    let _ = std::fs::remove_dir_all(&out);
}

/// aiomoqt reads a moqsink broadcast by its MSF catalog: on drafts 14 and 22,
/// over raw QUIC (`moqt://`) and WebTransport (`https://`). The broadcast has
/// been live for a while when each subscriber comes, so the catalog reaches
/// late joiners. Then, with `catalogs=hang`, there is no MSF catalog for it.
#[test]
fn aiomoqt_reads_a_moqsink_broadcast_by_msf() {
    let Some(python) = aiomoqt() else {
        return;
    };
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    init();
    let broadcast = unique_broadcast("to-aiomoqt");
    let live = publisher(&broadcast, "");
    let addr = RELAY.addr;
    for url in [
        format!("moqt://{addr}/anon"),
        format!("https://{addr}/anon"),
    ] {
        for draft in [14, 22] {
            subscribe(&python, &url, &broadcast, draft);
        }
    }
    let errors = no_error(&live, "moqsink");
    live.set_state(gst::State::Null).unwrap();
    assert!(errors.is_empty(), "{errors:?}");

    let broadcast = unique_broadcast("hang-only");
    let hang_only = publisher(&broadcast, "catalogs=hang");
    let run = Command::new(&python)
        .args([
            "-m",
            "aiomoqt.tools.sub_media",
            &format!("moqt://{addr}/anon"),
        ])
        .args(["-N", &broadcast, "-k", "-t", "2", "--out"])
        .arg(std::env::temp_dir().join(unique_broadcast("aiomoqt-none")))
        .output()
        .expect("aiomoqt's sub_media runs");
    let printed =
        String::from_utf8_lossy(&run.stdout).to_string() + &String::from_utf8_lossy(&run.stderr);
    hang_only.set_state(gst::State::Null).unwrap();
    assert!(
        printed.contains("not found") && !printed.contains(".loc"),
        "catalogs=hang, yet: {printed}"
    );
}

/// Ends aiomoqt the way Ctrl-C does, so it closes its session and the relay
/// ends its broadcast now: killed, the relay would notice only at its idle
/// timeout, and then cut the aiomoqt of the next test short (see
/// `ONE_AT_A_TIME`).
fn stop(mut child: std::process::Child) {
    let _ = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    for _ in 0..100 {
        if child.try_wait().ok().flatten().is_some() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// An MP4 of 5 s of H.264 (320x240, 30 fps, a keyframe a second) and AAC,
/// made by GStreamer.
fn mp4(dir: &Path) -> PathBuf {
    let file = dir.join("clip.mp4");
    let make = pipeline(&format!(
        "videotestsrc num-buffers=150 pattern=ball ! video/x-raw,format=I420,width=320,height=240,framerate=30/1 \
           ! x264enc speed-preset=ultrafast key-int-max=30 ! h264parse ! mp4mux name=mux \
           ! filesink location={} \
         audiotestsrc num-buffers=250 samplesperbuffer=960 ! audioconvert ! avenc_aac ! aacparse ! mux.",
        file.display()
    ));
    make.set_state(gst::State::Playing).unwrap();
    let made = wait_eos(&make, Duration::from_secs(30));
    make.set_state(gst::State::Null).unwrap();
    made.expect("GStreamer writes the MP4");
    file
}

/// moqsrc plays aiomoqt's media publisher: an MP4's H.264 and AAC as LOC
/// or CMAF tracks of an MSF catalog (no hang catalog), looped and paced, on
/// drafts 14 and 22, over raw QUIC and WebTransport; the default
/// `catalog=auto` finds the MSF catalog.
#[test]
fn moqsrc_plays_aiomoqt_media_publisher_by_msf() {
    let Some(python) = aiomoqt() else {
        return;
    };
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    init();
    let dir = std::env::temp_dir().join(unique_broadcast("aiomoqt-pub"));
    std::fs::create_dir_all(&dir).unwrap();
    let clip = mp4(&dir);
    let addr = RELAY.addr;
    let quic = format!("moqt://{addr}/anon");
    let webtransport = format!("https://{addr}/anon");
    // Every transport and draft with LOC; CMAF on one draft of each
    // transport, since the packaging and the transport are independent.
    let cases = [
        (&quic, 14, "loc"),
        (&quic, 22, "loc"),
        (&webtransport, 14, "loc"),
        (&webtransport, 22, "loc"),
        (&quic, 22, "cmaf"),
        (&webtransport, 14, "cmaf"),
    ];
    for (url, draft, packaging) in cases {
        let broadcast = unique_broadcast("from-aiomoqt");
        let publisher = Command::new(&python)
            .args(["-m", "aiomoqt.tools.pub_media", url, "-N", &broadcast, "-k"])
            .args(["--draft", &draft.to_string(), "--packaging", packaging])
            .arg("--mp4")
            .arg(&clip)
            // PUBLISH_NAMESPACE, and the relay forwards each SUBSCRIBE:
            // moq-relay 0.17.10 does not route aiomoqt's default, a
            // bare PUBLISH per track ("unroutable").
            .args(["--loop", "-t", "30", "--stats", "0", "--pub-ns"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("pub_media.log")).unwrap())
            .spawn()
            .expect("aiomoqt's pub_media starts");
        let (pipeline, decoded) = decoding(moqsrc(&broadcast));
        pipeline.set_state(gst::State::Playing).unwrap();
        let watched = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            watch_bus(
                &pipeline,
                Duration::from_secs(20),
                "60 decoded frames of each",
                |_| {
                    let [video, audio] = *decoded.lock().unwrap();
                    video >= 60 && audio >= 60
                },
            )
        }));
        pipeline.set_state(gst::State::Null).unwrap();
        stop(publisher);
        if let Err(panic) = watched {
            let log = std::fs::read_to_string(dir.join("pub_media.log")).unwrap_or_default();
            eprintln!(
                "{url} draft {draft} {packaging}: decoded {:?}; pub_media said:\n{log}",
                decoded.lock().unwrap()
            );
            std::panic::resume_unwind(panic);
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// moqsrc with `catalog=msf` plays a moqsink broadcast by its MSF catalog:
/// the IETF LOC twins, fed on demand, decode (H.264 byte-stream and Opus).
/// Needs no aiomoqt; one at a time with the others all the same, since its
/// broadcast's end would cut their aiomoqt short.
#[test]
fn moqsrc_reads_a_moqsink_broadcast_by_msf() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    init();
    let broadcast = unique_broadcast("msf-loop");
    let publisher = pipeline(&format!(
        "moqsink name=sink url={} broadcast={broadcast} tls-disable-verify=true \
         videotestsrc is-live=true ! video/x-raw,format=I420,width=320,height=240,framerate=30/1 \
           ! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=30 ! h264parse ! sink.video_0 \
         audiotestsrc is-live=true samplesperbuffer=960 ! audioconvert ! opusenc ! sink.audio_0",
        RELAY.url()
    ));
    publisher.set_state(gst::State::Playing).unwrap();
    let src = moqsrc(&broadcast);
    src.set_property_from_str("catalog", "msf");
    let (subscriber, decoded) = decoding(src);
    subscriber.set_state(gst::State::Playing).unwrap();
    watch_bus(
        &subscriber,
        Duration::from_secs(20),
        "60 decoded frames of each",
        |_| {
            let [video, audio] = *decoded.lock().unwrap();
            video >= 60 && audio >= 60
        },
    );
    let src = by_factory(&subscriber, "moqsrc");
    let pads: Vec<String> = src
        .src_pads()
        .iter()
        .map(|p| p.name().to_string())
        .collect();
    subscriber.set_state(gst::State::Null).unwrap();
    publisher.set_state(gst::State::Null).unwrap();
    assert_eq!(pads, ["video_0", "audio_0"]);
}
