// SPDX-License-Identifier: MIT OR Apache-2.0

//! Liveness: a relay or a publisher that vanishes without closing anything
//! (a relay process killed with SIGKILL, a publisher whose link blackholes)
//! is noticed within the QUIC idle timeout (`idle-timeout`, 2 s), not
//! moq-tokio's 10 s, and playback resumes soon after it is back, without an
//! ERROR. A graceful stop is told at once and is covered by `restart.rs`;
//! these tests only ever cut things off silently.
//!
//! The time bounds asserted here are several times the expected figures
//! (printed): they tell "noticed within a few seconds" from the ~11 s it
//! took before, not how fast it is.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::proxy::{Impairment, Proxy};
use common::relay::Process;
use common::*;
use gst::prelude::*;

/// A live H.264 publisher (a group a second) and a subscriber that counts
/// the frames it receives.
struct Stream {
    publisher: gst::Pipeline,
    subscriber: gst::Pipeline,
    frames: Arc<AtomicU64>,
}

impl Stream {
    fn start(publish_url: &str, subscribe_url: &str, broadcast: &str) -> Stream {
        let publisher = pipeline(&format!(
            "videotestsrc is-live=true ! video/x-raw,format=I420,width=160,height=120,framerate=30/1 \
             ! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=30 ! h264parse \
             ! moqsink name=sink url={publish_url} broadcast={broadcast} tls-disable-verify=true"
        ));
        let subscriber = pipeline(&format!(
            "moqsrc name=src url={subscribe_url} broadcast={broadcast} tls-disable-verify=true \
             broadcast-timeout=0 ! fakesink name=out sync=false"
        ));
        let frames = Arc::new(AtomicU64::new(0));
        let counted = frames.clone();
        subscriber
            .by_name("out")
            .unwrap()
            .static_pad("sink")
            .unwrap()
            .add_probe(gst::PadProbeType::BUFFER, move |_, _| {
                counted.fetch_add(1, Ordering::Relaxed);
                gst::PadProbeReturn::Ok
            });
        publisher.set_state(gst::State::Playing).unwrap();
        subscriber.set_state(gst::State::Playing).unwrap();
        Stream {
            publisher,
            subscriber,
            frames,
        }
    }

    fn frames(&self) -> u64 {
        self.frames.load(Ordering::Relaxed)
    }

    /// Waits until `done` holds and returns how long it took, panicking on
    /// an ERROR from either side or, naming `what`, after `timeout`. The
    /// WARNINGs seen go to `warnings`.
    fn wait(
        &self,
        what: &str,
        timeout: Duration,
        warnings: &mut Vec<String>,
        mut done: impl FnMut(&Stream, &[String]) -> bool,
    ) -> Duration {
        wait::until(what, timeout, || {
            warnings.extend(no_error(&self.publisher, "publisher"));
            warnings.extend(no_error(&self.subscriber, "subscriber"));
            done(self, warnings)
        })
    }

    fn element(&self, name: &str) -> gst::Element {
        self.publisher
            .by_name(name)
            .or_else(|| self.subscriber.by_name(name))
            .unwrap()
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        let _ = self.subscriber.set_state(gst::State::Null);
        let _ = self.publisher.set_state(gst::State::Null);
    }
}

#[test]
fn playback_resumes_after_a_relay_crash() {
    Process::serve_if_child();
    init();
    let mut relay = Process::start("playback_resumes_after_a_relay_crash").expect("relay starts");
    let stream = Stream::start(&relay.url(), &relay.url(), &unique_broadcast("crash"));
    let mut warnings = Vec::new();
    stream.wait(
        "frames through the relay process",
        Duration::from_secs(30),
        &mut warnings,
        |s, _| s.frames() >= 30,
    );

    // When each element first says it lost the relay.
    let lost_at: Arc<std::sync::Mutex<Vec<Instant>>> = Arc::default();
    let (sink, src) = (stream.element("sink"), stream.element("src"));
    for element in [&sink, &src] {
        let lost_at = lost_at.clone();
        let reported = Arc::new(std::sync::atomic::AtomicBool::new(false));
        element.connect_notify(Some("status"), move |element, _| {
            if status(element) != "connected" && !reported.swap(true, Ordering::SeqCst) {
                lost_at.lock().unwrap().push(Instant::now());
            }
        });
    }
    relay.kill();
    let killed = Instant::now();
    // Down for 2 s, then back on the same port, noticed or not.
    std::thread::sleep(Duration::from_secs(2));
    relay.restart().expect("relay starts again");
    let before = stream.frames();
    let resumed = stream.wait(
        "playback resumes",
        Duration::from_secs(30),
        &mut warnings,
        |s, _| s.frames() >= before + 10,
    );
    let noticed: Vec<Duration> = lost_at
        .lock()
        .unwrap()
        .iter()
        .map(|at| at.duration_since(killed))
        .collect();
    eprintln!(
        "relay killed, back 2 s later: lost noticed after {noticed:?}; 10 frames played \
         {resumed:?} after the relay was back; warnings: {warnings:?}"
    );
    assert_eq!(noticed.len(), 2, "both elements say they lost the relay");
    assert!(
        noticed.iter().all(|n| *n < Duration::from_secs(6)),
        "noticed after {noticed:?}: the idle timeout is not applied"
    );
    assert!(
        resumed < Duration::from_secs(8),
        "playback resumed only {resumed:?} after the relay was back"
    );
    stream.wait(
        "both reconnected",
        Duration::from_secs(5),
        &mut warnings,
        |_, _| status(&sink) == "connected" && status(&src) == "connected",
    );
}

#[test]
fn a_publisher_gone_silent_is_dropped_and_played_again() {
    init();
    let clean = Impairment {
        loss: 0.0,
        delay: Duration::ZERO,
        jitter: Duration::ZERO,
        reorder: 0.0,
        seed: 1,
    };
    // Only the publisher's link goes through the proxy.
    let proxy = Proxy::start(RELAY.addr, clean);
    let stream = Stream::start(
        &format!("https://{}/anon", proxy.addr),
        &RELAY.url(),
        &unique_broadcast("silent"),
    );
    let mut warnings = Vec::new();
    stream.wait(
        "frames through the proxy",
        Duration::from_secs(30),
        &mut warnings,
        |s, _| s.frames() >= 30,
    );

    // The publisher's link blackholes: the relay hears nothing more from it
    // and, after the idle timeout the publisher asked for, drops it and
    // with it the broadcast, which the subscriber reports.
    proxy.cut(true);
    let lost = stream.wait(
        "the subscriber reports the broadcast lost",
        Duration::from_secs(20),
        &mut warnings,
        |_, w| w.iter().any(|w| w.contains("Lost broadcast")),
    );
    eprintln!("publisher cut off: the subscriber reported it lost after {lost:?}");
    assert!(
        lost < Duration::from_secs(8),
        "lost reported after {lost:?}: the relay kept a dead publisher"
    );

    proxy.cut(false);
    let before = stream.frames();
    let resumed = stream.wait(
        "playback resumes when the publisher is back",
        Duration::from_secs(20),
        &mut warnings,
        |s, _| s.frames() >= before + 10,
    );
    eprintln!("link back: 10 frames played {resumed:?} later");
    assert!(
        resumed < Duration::from_secs(8),
        "playback resumed only {resumed:?} after the link was back"
    );
}

/// moqsink reaching EOS before the relay was ever reached holds EOS until
/// it is, then posts it (the stream was handed over, not lost).
#[test]
fn eos_waits_for_the_relay() {
    Process::serve_if_child();
    init();
    let mut relay = Process::start("eos_waits_for_the_relay").expect("relay starts");
    // Keep its port, with nothing listening on it for now.
    relay.kill();
    let publisher = pipeline(&format!(
        "videotestsrc is-live=true num-buffers=15 ! video/x-raw,format=I420,width=160,height=120,framerate=30/1 \
         ! x264enc tune=zerolatency speed-preset=ultrafast ! h264parse \
         ! moqsink url={} broadcast={} tls-disable-verify=true connect-timeout=20000",
        relay.url(),
        unique_broadcast("held")
    ));
    publisher.set_state(gst::State::Playing).unwrap();
    let bus = publisher.bus().unwrap();
    let held = bus
        .timed_pop_filtered(
            gst::ClockTime::from_seconds(10),
            &[
                gst::MessageType::Warning,
                gst::MessageType::Eos,
                gst::MessageType::Error,
            ],
        )
        .expect("a message about the held EOS");
    match held.view() {
        gst::MessageView::Warning(w) => {
            assert!(
                w.error()
                    .to_string()
                    .contains("End of stream before MoQ relay")
            )
        }
        other => panic!("expected the held-EOS WARNING, got {other:?}"),
    }
    relay.restart().expect("relay starts");
    let posted = wait_eos(&publisher, Duration::from_secs(20));
    publisher.set_state(gst::State::Null).unwrap();
    posted.expect("EOS once the relay is reached");
}
