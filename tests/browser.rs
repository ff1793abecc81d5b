// SPDX-License-Identifier: MIT OR Apache-2.0

//! A real browser against the serve mode: Debian's Chromium, headless, with
//! its fake camera, publishes over WHIP from the gateway's own page; a MoQ
//! subscriber (moqsrc) decodes the broadcast, and a second Chromium page
//! watches it over WHEP. The viewer's `getStats()` `framesDecoded` must grow.
//!
//! Needs `chromium` (or `CHROMIUM=/path`); without it the test says so and
//! passes, unless `GST_MOQ_BROWSER_REQUIRED=1` (set by CI) makes it fail.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use moq_gateway::serve::{Options, Server};

mod common;
use common::*;

fn chromium() -> Option<String> {
    let path = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    if std::path::Path::new(&path).exists() {
        return Some(path);
    }
    assert!(
        std::env::var("GST_MOQ_BROWSER_REQUIRED").as_deref() != Ok("1"),
        "GST_MOQ_BROWSER_REQUIRED=1 but there is no Chromium at {path}"
    );
    eprintln!("SKIPPED: no Chromium at {path} (install Debian's chromium or set CHROMIUM)");
    None
}

/// A headless Chromium on one page, killed when dropped. Keeps the last
/// number its page logged after `label`.
struct Browser {
    child: Child,
    profile: std::path::PathBuf,
    last: Arc<AtomicU64>,
}

impl Browser {
    fn open(binary: &str, url: &str, label: &'static str) -> Browser {
        let profile = std::env::temp_dir().join(unique("chromium-profile"));
        let mut child = Command::new(binary)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--use-fake-device-for-media-stream",
                "--use-fake-ui-for-media-stream",
                "--autoplay-policy=no-user-gesture-required",
                "--enable-logging=stderr",
                "--v=0",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg(url)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("Chromium starts");
        let last = Arc::new(AtomicU64::new(0));
        let seen = last.clone();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                // console.log lines: ... "moq-gateway: framesDecoded 42", source: ...
                let Some(at) = line.find("moq-gateway:") else {
                    continue;
                };
                let text = &line[at..];
                if text.contains("error") {
                    eprintln!("page: {text}");
                }
                if let Some(rest) = text.split(label).nth(1)
                    && let Some(n) = rest
                        .split(|c: char| !c.is_ascii_digit())
                        .find(|s| !s.is_empty())
                        .and_then(|s| s.parse().ok())
                {
                    seen.store(n, Ordering::SeqCst);
                }
            }
        });
        Browser {
            child,
            profile,
            last,
        }
    }

    fn last(&self) -> u64 {
        self.last.load(Ordering::SeqCst)
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

fn browser_round_trip(codec: &str) {
    let Some(binary) = chromium() else {
        return;
    };
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    LazyLock::force(&RELAY);
    let server = Server::start(Options {
        listen: "127.0.0.1:0".parse().unwrap(),
        relay: RELAY.url(),
        stun: None,
        broadcast_wait: Duration::from_secs(15),
    })
    .expect("the serve mode starts");
    let broadcast = unique("browser");
    let page = format!("http://{}/", server.addr());

    let publisher = Browser::open(
        &binary,
        &format!("{page}?publish={broadcast}&codec={codec}"),
        "framesEncoded",
    );
    // The browser's camera reaches MoQ: a moqsrc decodes it.
    let (subscriber, counts) = moq_subscriber(&broadcast);
    wait_for_frames(&counts, 30, Duration::from_secs(40), &[&subscriber]);
    assert!(publisher.last() > 0, "the publishing page logged no frames");

    // A second page watches over WHEP.
    let viewer = Browser::open(
        &binary,
        &format!("{page}?watch={broadcast}"),
        "framesDecoded",
    );
    let start = Instant::now();
    while viewer.last() < 30 {
        assert!(
            start.elapsed() < Duration::from_secs(40),
            "the WHEP page decoded {} frames in {:?}",
            viewer.last(),
            start.elapsed()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let first = viewer.last();
    std::thread::sleep(Duration::from_secs(2));
    let later = viewer.last();
    eprintln!("{codec}: the WHEP page decoded {first} then {later} frames");
    assert!(later > first, "framesDecoded stopped at {first}");
    subscriber.check();
}

#[test]
fn chromium_publishes_h264_and_watches() {
    browser_round_trip("h264");
}

#[test]
fn chromium_publishes_vp8_and_watches() {
    browser_round_trip("vp8");
}
