// SPDX-License-Identifier: MIT OR Apache-2.0

//! Interop with MoQ tools we did not write, through the in-process relay:
//! the `moq` CLI (crate moq-cli) exports a moqsink broadcast to fMP4 that
//! ffprobe decodes, and imports an fMP4 stream from ffmpeg that moqsrc plays.
//!
//! Needs `moq` (path in `MOQ_CLI`, or on PATH) and `ffmpeg`/`ffprobe`; `.ci/run`
//! installs them and sets `GST_MOQ_INTEROP_REQUIRED=1`, so CI fails rather than
//! skips when one is missing.

mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use gst::prelude::*;

fn find_tool(name: &str, env: Option<&str>) -> Option<PathBuf> {
    if let Some(path) = env.and_then(std::env::var_os).map(PathBuf::from) {
        return path.is_file().then_some(path);
    }
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// The tools, or `None` (with a message) when they are missing and not required.
fn tools() -> Option<(PathBuf, PathBuf, PathBuf)> {
    let found = (
        find_tool("moq", Some("MOQ_CLI")),
        find_tool("ffmpeg", None),
        find_tool("ffprobe", None),
    );
    match found {
        (Some(moq), Some(ffmpeg), Some(ffprobe)) => Some((moq, ffmpeg, ffprobe)),
        missing => {
            let text = format!("interop tools missing (moq, ffmpeg, ffprobe): {missing:?}");
            if std::env::var_os("GST_MOQ_INTEROP_REQUIRED").is_some() {
                panic!("{text}");
            }
            eprintln!("skipping: {text}; install moq-cli and ffmpeg to run it");
            None
        }
    }
}

/// Frames ffprobe decodes from stream `stream` (`v:0`, `a:0`) of `file`.
fn decoded_frames(ffprobe: &PathBuf, file: &std::path::Path, stream: &str) -> u64 {
    let out = Command::new(ffprobe)
        .args(["-v", "error", "-count_frames", "-select_streams", stream])
        .args(["-show_entries", "stream=nb_read_frames", "-of", "csv=p=0"])
        .arg(file)
        .output()
        .expect("ffprobe runs");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0)
}

fn wait_child(mut child: std::process::Child, timeout: Duration) -> std::process::ExitStatus {
    let (tx, rx) = std::sync::mpsc::channel();
    let pid = child.id();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    match rx.recv_timeout(timeout) {
        Ok(status) => status.expect("child status"),
        Err(_) => {
            let _ = Command::new("kill").arg(pid.to_string()).status();
            panic!("process {pid} did not end within {timeout:?}");
        }
    }
}

/// `moq export fmp4` writes what moqsink published to a file ffprobe decodes,
/// every frame of it: three groups of 30. (An earlier moqsink lost the last
/// video group in this export; a finished track now stays published, its
/// last group closed where its last frame ends, until the element stops.)
#[test]
fn moq_cli_exports_a_moqsink_broadcast() {
    let Some((moq, _, ffprobe)) = tools() else {
        return;
    };
    init();
    let broadcast = unique_broadcast("to-cli");
    let dir = std::env::temp_dir().join(unique_broadcast("export"));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("out.mp4");
    // The CLI waits for the broadcast to be announced, then writes until it ends.
    let export = Command::new(&moq)
        .args([
            "--connect",
            &RELAY.url(),
            "--connect-tls-insecure",
            "--broadcast",
            &broadcast,
        ])
        .args(["export", "fmp4"])
        .stdout(std::fs::File::create(&file).unwrap())
        .stderr(std::fs::File::create(dir.join("moq.log")).unwrap())
        .spawn()
        .expect("moq export starts");

    let pipeline = gst::parse::launch(&format!(
        "moqsink name=sink url={} broadcast={broadcast} tls-disable-verify=true \
         videotestsrc is-live=true num-buffers=90 ! video/x-raw,format=I420,width=320,height=240,framerate=30/1 \
           ! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=30 ! h264parse ! sink.video_0 \
         audiotestsrc is-live=true num-buffers=150 samplesperbuffer=960 ! audioconvert ! opusenc ! sink.audio_0",
        RELAY.url()
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    let published = wait_eos(&pipeline, Duration::from_secs(30));
    pipeline.set_state(gst::State::Null).unwrap();
    published.unwrap();
    // The CLI must end by itself once the broadcast ends. Its exit status is
    // only reported: what counts is what it wrote.
    let status = wait_child(export, Duration::from_secs(20));
    if !status.success() {
        let log = std::fs::read_to_string(dir.join("moq.log")).unwrap_or_default();
        eprintln!("moq export ended with {status}:\n{log}");
    }

    let video = decoded_frames(&ffprobe, &file, "v:0");
    let audio = decoded_frames(&ffprobe, &file, "a:0");
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(video, 90, "ffprobe decoded {video} of 90 video frames");
    assert!(audio >= 135, "ffprobe decoded {audio} of 150 audio packets");
}

/// ffmpeg's fMP4 through `moq import fmp4` plays in moqsrc (a CMAF container).
#[test]
fn moqsrc_plays_a_moq_cli_import() {
    let Some((moq, ffmpeg, _)) = tools() else {
        return;
    };
    init();
    let broadcast = unique_broadcast("from-cli");
    let (pipeline, decoded) = decoding(moqsrc(&broadcast));
    pipeline.set_state(gst::State::Playing).unwrap();

    // Three seconds of 30 fps H.264 and Opus, paced in real time (-re).
    let mut encoder = Command::new(&ffmpeg)
        .args(["-hide_banner", "-loglevel", "error", "-re"])
        .args(["-f", "lavfi", "-i", "testsrc=size=320x240:rate=30"])
        .args([
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=48000",
            "-t",
            "3",
        ])
        .args([
            "-c:v",
            "libx264",
            "-tune",
            "zerolatency",
            "-g",
            "30",
            "-pix_fmt",
            "yuv420p",
        ])
        .args(["-c:a", "libopus"])
        .args([
            "-movflags",
            "cmaf+empty_moov+default_base_moof",
            "-frag_duration",
            "33333",
        ])
        .args(["-f", "mp4", "-"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("ffmpeg starts");
    let import = Command::new(&moq)
        .args([
            "--connect",
            &RELAY.url(),
            "--connect-tls-insecure",
            "--broadcast",
            &broadcast,
        ])
        .args(["import", "fmp4"])
        .stdin(encoder.stdout.take().unwrap())
        .stderr(Stdio::null())
        .spawn()
        .expect("moq import starts");

    let played = wait_eos(&pipeline, Duration::from_secs(30));
    pipeline.set_state(gst::State::Null).unwrap();
    let _ = wait_child(encoder, Duration::from_secs(10));
    let _ = wait_child(import, Duration::from_secs(10));
    played.expect("moqsrc plays the import to its end");
    let [video, audio] = *decoded.lock().unwrap();
    assert!(video >= 80, "decoded {video} of 90 video frames");
    assert!(audio >= 130, "decoded {audio} of ~150 audio frames");
}
