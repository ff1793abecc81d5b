// SPDX-License-Identifier: MIT OR Apache-2.0

//! The MoQ project's own browser tools against our elements, through the
//! embedded relay over WebTransport: Debian's Chromium, headless, loads
//! pages built from the npm packages `@moq/watch` (the player) and
//! `@moq/publish` (the publisher) in `tests/web/`.
//!
//! - `@moq/watch` plays what moqsink publishes (H.264, VP8, VP9; Opus, AAC):
//!   the player's own count of frames WebCodecs decoded must pass 30 and
//!   keep growing, and its audio must play on (its playback position moves
//!   only with decoded samples).
//! - `@moq/watch` plays the `ladder` preset's three renditions, starting on
//!   one it picks, and switches to another and back when its rendition
//!   target is pointed there, decoding on.
//! - `@moq/publish` publishes Chromium's fake camera and microphone; moqsrc
//!   must expose both with caps decodebin3 decodes, 30 frames and more.
//!
//! The pages use `http://127.0.0.1:PORT/anon`: the player fetches the relay's
//! `/certificate.sha256` and pins it (`serverCertificateHashes`).
//!
//! Needs Chromium and npm (the pages are bundled with esbuild on first use:
//! `npm ci && npm run build` in `tests/web/`); without them the tests say so
//! and pass, unless `GST_MOQ_BROWSER_REQUIRED=1` (set by CI).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::LazyLock;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

use gst::prelude::*;
use moq_gateway::presets::Video;

mod common;
use common::browser::{Browser, chromium, required_or_skip, serve_folder};
use common::*;

/// The folder with the pages and their bundles, built if missing or older
/// than their sources; `Err` says why they cannot be.
static PAGES: LazyLock<Result<PathBuf, String>> = LazyLock::new(|| {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/web");
    build_pages(&dir).map(|()| dir)
});

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

fn build_pages(dir: &Path) -> Result<(), String> {
    let newest_source = ["watch.js", "publish.js", "page.js", "package-lock.json"]
        .iter()
        .filter_map(|f| modified(&dir.join(f)))
        .max();
    let bundles_fresh = ["dist/watch.js", "dist/publish.js"]
        .iter()
        .all(|f| modified(&dir.join(f)).is_some_and(|t| Some(t) >= newest_source));
    if bundles_fresh {
        return Ok(());
    }
    let npm = |args: &[&str]| -> Result<(), String> {
        let out = Command::new("npm")
            .args(args)
            .current_dir(dir)
            .output()
            .map_err(|e| format!("cannot run npm: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "npm {args:?} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    };
    let lock = modified(&dir.join("package-lock.json"));
    let installed = modified(&dir.join("node_modules/.package-lock.json"));
    if installed.is_none() || installed < lock {
        npm(&["ci", "--no-audit", "--no-fund"])?;
    }
    npm(&["run", "build"])
}

/// Chromium and the built pages, or `None` when the test cannot run here.
fn setup() -> Option<(String, PathBuf)> {
    let binary = chromium()?;
    match &*PAGES {
        Ok(dir) => Some((binary, dir.clone())),
        Err(why) => {
            required_or_skip(&format!("the @moq pages cannot be built: {why}"));
            None
        }
    }
}

/// One page server for the binary.
static PAGE_SERVER: LazyLock<std::net::SocketAddr> = LazyLock::new(|| {
    let dir = PAGES.as_ref().expect("pages built before they are served");
    serve_folder(dir.clone())
});

fn page_url_with(page: &str, broadcast: &str, extra: &str) -> String {
    format!("{}{extra}", page_url(page, broadcast))
}

fn page_url(page: &str, broadcast: &str) -> String {
    format!(
        "http://{}/{page}?url={}&name={broadcast}",
        *PAGE_SERVER,
        RELAY.url()
    )
}

/// `audio`: the GStreamer encoder chain in front of moqsink's audio pad.
fn moq_watch_plays(video: Video, audio: &str) {
    moq_watch_plays_beside(video, audio, "", |_| ());
}

/// As `moq_watch_plays`, with `more` in the publisher's description and
/// `started` called on its pipeline once it runs.
fn moq_watch_plays_beside(
    video: Video,
    audio: &str,
    more: &str,
    started: impl FnOnce(&gst::Pipeline),
) {
    let Some((binary, _)) = setup() else {
        return;
    };
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let broadcast = unique("moq-watch");
    let publisher = moq_publisher_beside(&broadcast, video, audio, more);
    started(&publisher.pipeline);

    let opened = Instant::now();
    let player = Browser::open(&binary, &page_url("watch.html", &broadcast), "moq-web:");
    player.wait_for("frames", 30, Duration::from_secs(40));
    let (first, first_audio) = (player.value("frames"), player.value("audioMs"));
    eprintln!(
        "{video:?}: @moq/watch decoded {first} frames {:?} after the page opened ({:?} / {:?})",
        opened.elapsed(),
        player.word("status"),
        player.word("version"),
    );
    // Playback goes on: 30 more frames (a second at 30 fps) and a second
    // more of audio, each within a few seconds.
    let took = player.wait_for("frames", first + 30, Duration::from_secs(5));
    player.wait_for("audioMs", first_audio + 1000, Duration::from_secs(5));
    eprintln!(
        "{video:?} + {audio}: 30 more frames in {took:?}, then {} frames; audio played {first_audio} -> {} ms",
        player.value("frames"),
        player.value("audioMs")
    );
    publisher.check();
}

#[test]
fn moq_watch_plays_moqsink_h264_opus() {
    moq_watch_plays(Video::H264, "opusenc");
}

#[test]
fn moq_watch_plays_moqsink_vp8_opus() {
    moq_watch_plays(Video::Vp8, "opusenc");
}

#[test]
fn moq_watch_plays_moqsink_vp9_aac() {
    moq_watch_plays(Video::Vp9, "avenc_aac ! aacparse");
}

/// A WebVTT text track and KLV and JSON data tracks beside H.264 and Opus:
/// @moq/watch 0.4 (whose catalog schema knows only video and audio, and
/// passes other sections through) plays the media all the same.
#[test]
fn moq_watch_plays_moqsink_media_beside_text_and_data() {
    let more = "appsrc name=cues is-live=true do-timestamp=true format=time \
                  caps=application/x-subtitle-vtt ! moq.text_0 \
                appsrc name=klv is-live=true do-timestamp=true format=time \
                  caps=meta/x-klv,parsed=true ! moq.data_0 \
                appsrc name=json is-live=true do-timestamp=true format=time \
                  caps=application/x-json ! moq.data_1 ";
    moq_watch_plays_beside(Video::H264, "opusenc", more, |pipeline| {
        let sources: Vec<gst_app::AppSrc> = ["cues", "klv", "json"]
            .iter()
            .map(|name| pipeline.by_name(name).unwrap().downcast().unwrap())
            .collect();
        // A cue, a KLV unit and a document twice a second, for as long as
        // the publisher runs (a push fails once it stops).
        std::thread::spawn(move || {
            for n in 0u64.. {
                let values = [
                    format!(
                        "00:00:{:02}.000 --> 00:00:{:02}.500\ncue {n}\n\n",
                        n % 60,
                        n % 60
                    )
                    .into_bytes(),
                    [&[0x06, 0x0e, 0x2b, 0x34, 0x01][..], &n.to_be_bytes()].concat(),
                    format!("{{\"n\":{n}}}").into_bytes(),
                ];
                for (src, value) in sources.iter().zip(values) {
                    if src.push_buffer(gst::Buffer::from_slice(value)).is_err() {
                        return;
                    }
                }
                std::thread::sleep(Duration::from_millis(500));
            }
        });
    });
}

/// A ladder from moqsink (the `ladder` preset: 720p, 360p, 180p with
/// aligned keyframes) in @moq/watch: it starts on a rendition of its own
/// choice (from the relay's bandwidth estimate), moves to another when the
/// page points its rendition target there, and back, decoding all along.
#[test]
fn moq_watch_switches_between_moqsink_renditions() {
    let Some((binary, _)) = setup() else {
        return;
    };
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let broadcast = unique("moq-watch-ladder");
    let publisher = ladder_publisher(&broadcast);
    let player = Browser::open(
        &binary,
        &page_url_with("watch.html", &broadcast, "&steer=1"),
        "moq-web:",
    );
    player.wait_for("frames", 30, Duration::from_secs(40));
    let first = player.word("track");
    player.wait_for("switches", 2, Duration::from_secs(40));
    let frames = player.value("frames");
    player.wait_for("frames", frames + 30, Duration::from_secs(10));
    eprintln!(
        "@moq/watch on the ladder: first {first:?}, now {:?} after {} switches, {} frames, canvas {:?}",
        player.word("track"),
        player.value("switches"),
        player.value("frames"),
        player.word("canvas")
    );
    assert_eq!(player.word("track"), first, "back on the first rendition");
    publisher.check();
}

#[test]
fn moq_publish_plays_in_moqsrc() {
    let Some((binary, _)) = setup() else {
        return;
    };
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let broadcast = unique("moq-publish");
    let opened = Instant::now();
    let publisher = Browser::open(&binary, &page_url("publish.html", &broadcast), "moq-web:");

    let (subscriber, counts) = moq_subscriber(&broadcast);
    wait::until_else(
        Duration::from_secs(40),
        || {
            subscriber.check();
            counts.video.load(Ordering::Relaxed) >= 30
        },
        || {
            format!(
                "moqsrc decoded {} frames of the @moq/publish broadcast in 40 s; \
                 the page said {:#?}",
                counts.video.load(Ordering::Relaxed),
                publisher.recent(5)
            )
        },
    );
    let src = subscriber.pipeline.by_name("moq").expect("the moqsrc");
    let caps: Vec<String> = src
        .src_pads()
        .iter()
        .map(|p| format!("{}: {:?}", p.name(), p.current_caps()))
        .collect();
    eprintln!(
        "@moq/publish -> moqsrc: 30 frames {:?} after the page opened ({:?}); pads {caps:#?}",
        opened.elapsed(),
        publisher.word("version"),
    );
    // Playback goes on: more video, and the fake microphone's Opus decoded too.
    let first = counts.video.load(Ordering::Relaxed);
    let more = wait::until_else(
        Duration::from_secs(5),
        || {
            subscriber.check();
            counts.video.load(Ordering::Relaxed) > first + 10
                && counts.audio.load(Ordering::Relaxed) > 50
        },
        || {
            format!(
                "moqsrc decoded {first} then {} video frames and {} audio buffers in 5 s",
                counts.video.load(Ordering::Relaxed),
                counts.audio.load(Ordering::Relaxed),
            )
        },
    );
    eprintln!(
        "then {} video frames, {} audio buffers after {more:?} more",
        counts.video.load(Ordering::Relaxed),
        counts.audio.load(Ordering::Relaxed),
    );
    subscriber.check();
}
