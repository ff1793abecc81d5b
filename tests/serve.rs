// SPDX-License-Identifier: MIT OR Apache-2.0

//! `moq-gateway serve`: WHIP publishers and WHEP viewers on one listener,
//! through the embedded MoQ relay, with GStreamer WebRTC peers
//! (whipclientsink, whepclientsrc) and a moqsrc subscriber.

use std::sync::LazyLock;
use std::time::{Duration, Instant};

use moq_gateway::presets::Video;
use moq_gateway::serve::{Options, Server};

mod common;
use common::*;

const WANT: u64 = 30;
const TIMEOUT: Duration = Duration::from_secs(30);

fn server(broadcast_wait: Duration) -> Server {
    LazyLock::force(&RELAY);
    Server::start(Options {
        listen: "127.0.0.1:0".parse().unwrap(),
        relay: RELAY.url(),
        stun: None,
        broadcast_wait,
    })
    .expect("the serve mode starts")
}

fn whip_publisher(server: &Server, broadcast: &str, video: Video) -> Running {
    Running::start(
        "whip publisher",
        &format!(
            "{raw} ! ws. audiotestsrc is-live=true wave=ticks ! ws. \
             whipclientsink name=ws stun-server=\"\" congestion-control=disabled \
             video-caps={caps} audio-caps=audio/x-opus \
             signaller::whip-endpoint=http://{addr}/whip/{broadcast}",
            raw = raw_video(),
            caps = webrtc_caps(video),
            addr = server.addr(),
        ),
    )
}

fn whep_viewer(server: &Server, broadcast: &str) -> (Running, Counts) {
    let viewer = Running::start(
        "whep viewer",
        &format!(
            "whepclientsrc name=wc stun-server=\"\" \
             signaller::whep-endpoint=http://{addr}/whep/{broadcast} \
             wc.video_0 ! queue ! videoconvert ! appsink name=video sync=false \
             wc.audio_0 ! queue ! audioconvert ! appsink name=audio sync=false",
            addr = server.addr(),
        ),
    );
    let counts = count(&viewer.pipeline);
    (viewer, counts)
}

fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < timeout,
            "{what} did not happen within {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A browser-like round trip: publish over WHIP, a MoQ subscriber and a
/// WHEP viewer (H.264, which whepclientsrc cannot take from a plain
/// whepserversink) both decode it; the publisher leaving ends the broadcast.
fn publish_and_watch(video: Video) {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let server = server(Duration::from_secs(10));
    let broadcast = unique("serve");
    let publisher = whip_publisher(&server, &broadcast, video);
    let (subscriber, moq_counts) = moq_subscriber(&broadcast);
    wait_for_frames(&moq_counts, WANT, TIMEOUT, &[&publisher, &subscriber]);

    let joined = Instant::now();
    let (viewer, whep_counts) = whep_viewer(&server, &broadcast);
    wait_for_frames(
        &whep_counts,
        1,
        TIMEOUT,
        &[&publisher, &subscriber, &viewer],
    );
    eprintln!(
        "late WHEP viewer: first decoded frame {:?} after joining",
        joined.elapsed()
    );
    wait_for_frames(
        &whep_counts,
        WANT,
        TIMEOUT,
        &[&publisher, &subscriber, &viewer],
    );
    let mut sessions = server.sessions();
    sessions.sort();
    assert_eq!(
        sessions,
        [("whep", broadcast.clone()), ("whip", broadcast.clone())]
    );

    // A second publisher for the same broadcast is refused.
    let offer = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 opus/48000/2\r\n";
    let (status, _, body) = http(server.addr(), "POST", &format!("/whip/{broadcast}"), offer);
    assert_eq!(status, 409, "{body}");

    // The publisher leaves (whipclientsink DELETEs its session): the
    // broadcast ends cleanly for the MoQ subscriber.
    drop(publisher);
    wait_until("EOS at the MoQ subscriber", Duration::from_secs(10), || {
        subscriber.ended()
    });
    wait_until("the ingest session to end", Duration::from_secs(10), || {
        !server.sessions().iter().any(|(kind, _)| *kind == "whip")
    });
    subscriber.check();
    drop(viewer);
}

#[test]
fn whip_h264_to_moq_and_whep() {
    publish_and_watch(Video::H264);
}

#[test]
fn whip_vp8_to_moq_and_whep() {
    publish_and_watch(Video::Vp8);
}

/// A viewer may ask before the broadcast exists: the answer waits for it.
#[test]
fn whep_viewer_before_the_broadcast() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let server = server(Duration::from_secs(15));
    let broadcast = unique("early");
    let (viewer, counts) = whep_viewer(&server, &broadcast);
    // The viewer's offer is in: its session waits for the broadcast.
    wait_until("the viewer's session", TIMEOUT, || {
        server.sessions().iter().any(|(_, b)| *b == broadcast)
    });
    let publisher = moq_publisher(&broadcast, Video::H264);
    wait_for_frames(&counts, WANT, TIMEOUT, &[&viewer, &publisher]);
}

#[test]
fn http_answers_and_refusals() {
    let server = server(Duration::from_millis(500));
    let addr = server.addr();

    // CORS preflight from a page of another origin.
    let (status, headers, _) = http(addr, "OPTIONS", "/whip/cam", "");
    assert_eq!(status, 204);
    assert_eq!(header(&headers, "access-control-allow-origin"), Some("*"));
    assert!(header(&headers, "access-control-allow-methods").is_some_and(|m| m.contains("POST")));
    assert!(
        header(&headers, "access-control-expose-headers").is_some_and(|h| h.contains("Location"))
    );

    // The test page.
    let (status, _, body) = http(addr, "GET", "/", "");
    assert_eq!(status, 200);
    assert!(body.contains("RTCPeerConnection"));

    // Not an offer, a bad name, an unknown session, trickle ICE.
    let (status, headers, body) = http(addr, "POST", "/whip/cam", "hello");
    assert_eq!(status, 400, "{body}");
    assert_eq!(header(&headers, "access-control-allow-origin"), Some("*"));
    let (status, _, _) = http(addr, "POST", "/whip/a/../b", "v=0\r\n");
    assert_eq!(status, 400);
    let (status, _, _) = http(addr, "POST", "/elsewhere", "v=0\r\n");
    assert_eq!(status, 404);
    let (status, _, _) = http(addr, "DELETE", "/session/0123", "");
    assert_eq!(status, 404);
    let (status, _, _) = http(addr, "PATCH", "/session/0123", "");
    assert_eq!(status, 405);
    let (status, _, body) = http(
        addr,
        "POST",
        "/whip/cam",
        "v=0\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n",
    );
    assert_eq!(status, 406, "{body}");

    // A viewer of a broadcast that never appears gets a 404 naming it once
    // the wait is over, and its session is gone.
    let offer = "v=0\r\no=- 1 0 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n\
                 m=audio 9 UDP/TLS/RTP/SAVPF 97\r\na=rtpmap:97 OPUS/48000/2\r\n";
    let (status, _, body) = http(addr, "POST", "/whep/nobody-here", offer);
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("nobody-here"), "{body}");
    wait_until("the session to go", Duration::from_secs(5), || {
        server.sessions().is_empty()
    });
}
