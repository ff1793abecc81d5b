// SPDX-License-Identifier: MIT OR Apache-2.0

//! `moq-gateway serve`: one HTTP listener for many WebRTC sessions.
//!
//! - `POST /whip/<broadcast>` (an SDP offer) starts that broadcast's ingest:
//!   whipserversrc -> moqsink. One publisher per broadcast.
//! - `POST /whep/<broadcast>` starts one viewer's egress: moqsrc ->
//!   whepserversink. The answer waits (bounded) until the broadcast exists.
//! - Both answer `201 Created` with `Location: /session/<id>`; `DELETE` on it
//!   ends the session. A publisher that goes away ends its broadcast (EOS
//!   reaches moqsink); a viewer that goes away ends its egress.
//! - A viewer's keyframe request (PLI/FIR, which whepserversink turns into an
//!   upstream force-key-unit) and a viewer's arrival are passed on to the
//!   broadcast's publisher when it publishes through this gateway, so nobody
//!   waits for the next natural keyframe.
//! - Every answer carries CORS headers, so pages from other origins can
//!   publish and watch; `GET /` serves a small page that does both.
//!
//! The HTTP side never waits on GStreamer while holding the session table,
//! and pipelines are torn down on their own threads, never on a streaming
//! thread.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, SystemTime};

use anyhow::Context;
use gst::glib;
use gst::prelude::*;
use warp::Filter;
use warp::http::{Method, Response, StatusCode};

use crate::auth::{self, Access, Action, Denied};
use crate::group_length::GroupLength;
use crate::metrics::{self, Direction, Metrics};
use crate::presets::{self, Video};
use crate::sdp;
use crate::tls::{self, Tls};
use crate::viewer_link::{ViewerLink, Wants};

/// How long a WHEP offer waits for its broadcast to appear by default.
pub const DEFAULT_BROADCAST_WAIT: Duration = Duration::from_secs(15);
/// The most sessions a gateway carries at once by default: each is a
/// pipeline with its own threads, and a flood of POSTs must not take the
/// process down with it (150 publishers of 720p filled this machine's two
/// cores; viewers cost less each).
pub const DEFAULT_MAX_SESSIONS: usize = 300;
/// How long an answered session may take to connect by default: ICE and
/// DTLS take well under a second on a LAN and a few over the internet; a
/// peer that rejected the answer, or whose ICE fails, never gets there.
pub const DEFAULT_CONNECT_WAIT: Duration = Duration::from_secs(10);
/// How long a WHEP viewer waits for the relay before its POST fails: a
/// relay that answers at all does so in well under a second.
const RELAY_WAIT: Duration = Duration::from_secs(3);
/// The metrics' cause for answered viewers that never connected.
const NEVER_CONNECTED: &str = "never_connected";
/// The most HTTP connections open at once: each is a task and a descriptor,
/// and browsers keep a few open per page. Past it a connection is closed
/// at once (and counted), so a flood cannot starve the sessions' sockets.
const MAX_CONNECTIONS: usize = 1000;
/// SDP offers are a few kilobytes; refuse anything absurd before reading it.
const MAX_OFFER: u64 = 256 * 1024;

/// A viewer joining a shared egress of a broadcast from elsewhere waits
/// for the next group, at most this long: the 2 s GOP common in live
/// streaming (and moq's own publishers) qualifies, a browser publisher
/// that sends keyframes only when asked does not.
pub const DEFAULT_SHARE_MAX_GROUP: Duration = Duration::from_secs(2);

const PAGE: &str = include_str!("serve.html");

/// What the serve mode needs to know.
#[derive(Clone, Debug)]
pub struct Options {
    pub listen: SocketAddr,
    /// MoQ relay for every session.
    pub relay: String,
    /// STUN server for ICE (`stun://host:port`), none by default.
    pub stun: Option<String>,
    /// How long a WHEP viewer may wait for a broadcast that does not exist yet.
    pub broadcast_wait: Duration,
    /// How long a session that was answered may take to connect (ICE and
    /// DTLS) before it is ended as one that never will.
    pub connect_wait: Duration,
    /// The most sessions (publishers and viewers) at once; a POST past it
    /// is refused with 503 and touches no other session.
    pub max_sessions: usize,
    /// Who may publish and watch what (`Authorization: Bearer`); `None`
    /// lets everyone do anything the relay lets the gateway do.
    pub access: Option<Access>,
    /// HTTPS on the listener (plain HTTP then only from loopback).
    pub tls: Option<Tls>,
    /// Viewers of a broadcast share one egress pipeline (one MoQ
    /// subscription) where nothing differs between them; off, each viewer
    /// gets a pipeline of its own.
    pub share_egress: bool,
    /// Viewers of a broadcast published elsewhere share an egress only
    /// while its groups last at most this long: a joining viewer waits for
    /// the next keyframe. Zero: only broadcasts published here are shared.
    pub share_max_group: Duration,
}

impl Options {
    /// The defaults for a listener and a relay.
    pub fn new(listen: SocketAddr, relay: impl Into<String>) -> Self {
        Self {
            listen,
            relay: relay.into(),
            stun: None,
            broadcast_wait: DEFAULT_BROADCAST_WAIT,
            connect_wait: DEFAULT_CONNECT_WAIT,
            max_sessions: DEFAULT_MAX_SESSIONS,
            access: None,
            tls: None,
            share_egress: true,
            share_max_group: DEFAULT_SHARE_MAX_GROUP,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Ingest,
    Egress,
}

struct Session {
    id: String,
    kind: Kind,
    broadcast: String,
    pipeline: gst::Pipeline,
    /// whipserversrc or whepserversink: its signaller answers the offer.
    webrtc: gst::Element,
    /// Ingest only: moqsink's video pads, where keyframe requests go
    /// upstream: to the publisher, or to the encoders of its ladder (one
    /// request to all of them, which keeps their groups aligned).
    video_sinks: Mutex<Vec<gst::Pad>>,
    ending: AtomicBool,
    /// Egress only: where this viewer's keyframe requests go.
    keyframes: Option<Arc<Keyframes>>,
    /// Egress only: whether other viewers of the broadcast may join this
    /// session's pipeline (see `join_shared`), or will know once it plays.
    shareable: tokio::sync::watch::Sender<Share>,
}

/// Whether viewers may share an egress pipeline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Share {
    No,
    /// Its first viewer has no limits; whether the broadcast has one
    /// rendition is known once its streams are ready.
    Pending,
    Yes,
}

impl Session {
    /// A publisher's session on `pipeline`, whose whipserversrc is `src`.
    fn publisher(
        id: String,
        broadcast: &str,
        pipeline: &gst::Pipeline,
        src: &gst::Element,
    ) -> Arc<Self> {
        Arc::new(Session {
            id,
            kind: Kind::Ingest,
            broadcast: broadcast.to_owned(),
            pipeline: pipeline.clone(),
            webrtc: src.clone(),
            video_sinks: Mutex::default(),
            ending: AtomicBool::new(false),
            keyframes: None,
            shareable: tokio::sync::watch::Sender::new(Share::No),
        })
    }

    /// A viewer's session on the egress `pipeline`, whose whepserversink
    /// (`sink`) may be shared with other viewers.
    fn viewer(
        id: String,
        pipeline: &gst::Pipeline,
        sink: &gst::Element,
        keyframes: Arc<Keyframes>,
        share: Share,
    ) -> Arc<Self> {
        Arc::new(Session {
            id,
            kind: Kind::Egress,
            broadcast: keyframes.broadcast.clone(),
            pipeline: pipeline.clone(),
            webrtc: sink.clone(),
            video_sinks: Mutex::default(),
            ending: AtomicBool::new(false),
            keyframes: Some(keyframes),
            shareable: tokio::sync::watch::Sender::new(share),
        })
    }
}

/// What an egress waits for before its offer can be answered.
struct Ready {
    /// moqsrc made a pad for every track.
    pads: tokio::sync::oneshot::Receiver<()>,
    /// whepserversink knows how to send each of them.
    discovered: tokio::sync::oneshot::Receiver<()>,
}

/// The sessions of one listener.
struct Gateway {
    opts: Options,
    /// The path of `opts.relay`, where tokens are decided (as the relay
    /// decides them when dialed there).
    relay_path: String,
    sessions: Mutex<HashMap<String, Arc<Session>>>,
    /// What `GET /metrics` reports; the per-pad counters hold handles.
    metrics: Arc<Metrics>,
}

/// A running serve mode; dropping it ends every session and the listener.
pub struct Server {
    addr: SocketAddr,
    gateway: Arc<Gateway>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    /// Binds the listener and serves on a thread of its own. GStreamer and
    /// the plugins must be initialized ([`crate::init`]).
    pub fn start(opts: Options) -> anyhow::Result<Server> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("serve")
            .enable_all()
            .build()
            .context("cannot start the HTTP runtime")?;
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind(opts.listen))
            .with_context(|| format!("cannot listen on {}", opts.listen))?;
        let addr = listener.local_addr()?;
        let relay_path = url::Url::parse(&opts.relay)
            .with_context(|| format!("the relay URL {} is not a URL", opts.relay))?
            .path()
            .to_owned();
        let gateway = Arc::new(Gateway {
            opts,
            relay_path,
            sessions: Mutex::default(),
            metrics: Arc::default(),
        });
        let (shutdown, stop) = tokio::sync::oneshot::channel::<()>();
        let accepting = accept(listener, gateway.clone(), stop);
        let thread = std::thread::Builder::new()
            .name("serve".into())
            .spawn(move || runtime.block_on(accepting))?;
        Ok(Server {
            addr,
            gateway,
            shutdown: Some(shutdown),
            thread: Some(thread),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// How many keyframe requests (viewers joining, their PLI/FIR) reached
    /// a publisher of this gateway.
    pub fn keyframe_requests(&self) -> u64 {
        self.gateway.metrics.keyframe_requests().get()
    }

    /// How many estimates of WHEP viewers' links (their browsers'
    /// transport-wide feedback, through whepserversink's congestion
    /// control) reached the rendition choice.
    pub fn link_estimates(&self) -> u64 {
        self.gateway.metrics.link_estimates().get()
    }

    /// How many answered WHEP viewers were ended because their WebRTC
    /// connection never came up within `connect_wait`.
    pub fn never_connected(&self) -> u64 {
        self.gateway.metrics.errors(NEVER_CONNECTED)
    }

    /// How many egress pipelines (MoQ subscriptions) the viewers run on.
    pub fn egress_pipelines(&self) -> usize {
        self.gateway.egress_pipelines()
    }

    /// The sessions running now, as (kind, broadcast) pairs.
    pub fn sessions(&self) -> Vec<(&'static str, String)> {
        let sessions = self
            .gateway
            .sessions
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        sessions
            .values()
            .map(|s| (kind_name(s.kind), s.broadcast.clone()))
            .collect()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        let sessions: Vec<_> = self
            .gateway
            .sessions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .drain()
            .collect();
        for (_, session) in sessions {
            teardown(&session);
        }
    }
}

/// Takes connections on `listener` until `stop`, each served on a task of
/// its own (HTTPS or HTTP, `tls::serve_connection`), at most
/// `MAX_CONNECTIONS` at once.
async fn accept(
    listener: tokio::net::TcpListener,
    gateway: Arc<Gateway>,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) {
    let service = warp::service(routes(gateway.clone()));
    let open = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut stop => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of descriptors, most likely: let connections
                    // close before the next.
                    eprintln!("serve: cannot accept: {err}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = open.clone().try_acquire_owned() else {
            gateway.metrics.error("connections");
            continue;
        };
        let tls = gateway.opts.tls.clone();
        let serve = tls::serve_connection(stream, peer, tls, service.clone());
        tokio::spawn(async move {
            serve.await;
            drop(permit);
        });
    }
}

/// Runs the serve mode until `interrupted`.
pub fn run(opts: Options, interrupted: &AtomicBool) -> anyhow::Result<()> {
    let server = Server::start(opts.clone())?;
    let scheme = if opts.tls.is_some() { "https" } else { "http" };
    println!(
        "serving WHIP on {scheme}://{addr}/whip/<broadcast> and WHEP on {scheme}://{addr}/whep/<broadcast> \
         (a test page on {scheme}://{addr}/), MoQ relay {}; Ctrl-C stops",
        opts.relay,
        addr = server.addr()
    );
    while !interrupted.load(Ordering::SeqCst) {
        std::thread::park_timeout(Duration::from_millis(200));
    }
    eprintln!("interrupt: ending {} session(s)", server.sessions().len());
    drop(server);
    Ok(())
}

type Reply = Response<Vec<u8>>;

fn routes(
    gateway: Arc<Gateway>,
) -> impl Filter<Extract = (Reply,), Error = Infallible> + Clone + Send + Sync + 'static {
    let posts = {
        let gateway = gateway.clone();
        let metrics_for_rejections = gateway.metrics.clone();
        warp::post()
            .and(warp::path::full())
            .and(warp::query::<std::collections::HashMap<String, String>>())
            .and(warp::header::optional::<String>("authorization"))
            .and(warp::body::content_length_limit(MAX_OFFER))
            .and(warp::body::stream())
            .then(
                move |path: warp::path::FullPath,
                      query: std::collections::HashMap<String, String>,
                      authorization: Option<String>,
                      body| {
                    let gateway = gateway.clone();
                    async move {
                        let began = std::time::Instant::now();
                        let reply = match read_body(body).await {
                            Ok(body) => {
                                gateway
                                    .authorized_post(path.as_str(), &query, authorization, &body)
                                    .await
                            }
                            Err(reply) => reply,
                        };
                        gateway.count_post(path.as_str(), reply.status(), began.elapsed());
                        reply
                    }
                },
            )
            .recover(move |rejection: warp::Rejection| {
                let metrics = metrics_for_rejections.clone();
                async move { body_refusal(&metrics, rejection) }
            })
            .unify()
    };
    let others = warp::method().and(warp::path::full()).then(
        move |method: Method, path: warp::path::FullPath| {
            let gateway = gateway.clone();
            async move { gateway.other(&method, path.as_str()).await }
        },
    );
    posts.or(others).unify()
}

/// A POST's body (at most `MAX_OFFER`, which warp checked against its
/// Content-Length), read within `tls::SLOW_CLIENT`: a client that trickles
/// it gets a 408 rather than hold its connection.
async fn read_body<S, B>(body: S) -> Result<Vec<u8>, Reply>
where
    S: futures_util::Stream<Item = Result<B, warp::Error>>,
    B: bytes::Buf,
{
    use futures_util::StreamExt;
    let read = async {
        let mut body = std::pin::pin!(body);
        let mut all = Vec::new();
        while let Some(chunk) = body.next().await {
            let mut chunk = chunk.map_err(|_| ())?;
            while chunk.has_remaining() {
                let part = chunk.chunk();
                all.extend_from_slice(part);
                let n = part.len();
                chunk.advance(n);
            }
        }
        Ok::<_, ()>(all)
    };
    match tokio::time::timeout(tls::SLOW_CLIENT, read).await {
        Ok(Ok(all)) => Ok(all),
        Ok(Err(())) => Err(text_reply(StatusCode::BAD_REQUEST, "the offer was cut off")),
        Err(_) => Err(text_reply(
            StatusCode::REQUEST_TIMEOUT,
            "the offer did not arrive within 10 s",
        )),
    }
}

/// warp's own refusals of a POST body as answers; anything else (not a
/// POST) goes on to the other routes.
fn body_refusal(metrics: &Metrics, rejection: warp::Rejection) -> Result<Reply, warp::Rejection> {
    if rejection.find::<warp::reject::LengthRequired>().is_some() {
        metrics.error("no_length");
        Ok(text_reply(
            StatusCode::LENGTH_REQUIRED,
            "an SDP offer needs a Content-Length",
        ))
    } else if rejection.find::<warp::reject::PayloadTooLarge>().is_some() {
        metrics.error("too_large");
        Ok(text_reply(
            StatusCode::PAYLOAD_TOO_LARGE,
            "that is not an SDP offer: too large",
        ))
    } else {
        Err(rejection)
    }
}

/// Whether a POST asks for `?ladder=1` (a publisher's video encoded into
/// the ladder's renditions), or why the request is refused.
fn wants_ladder(
    kind: Kind,
    query: &std::collections::HashMap<String, String>,
) -> Result<bool, &'static str> {
    match (kind, query.get("ladder").map(String::as_str)) {
        (_, None) => Ok(false),
        (Kind::Ingest, Some("1")) => Ok(true),
        (Kind::Ingest, Some("0")) => Ok(false),
        (Kind::Ingest, Some(_)) => Err("ladder=1 encodes the publisher's video into renditions"),
        (Kind::Egress, Some(_)) => Err("ladder is for publishers (POST /whip/...?ladder=1)"),
    }
}

fn with_cors(mut builder: warp::http::response::Builder) -> warp::http::response::Builder {
    builder = builder
        .header("Access-Control-Allow-Origin", "*")
        .header(
            "Access-Control-Allow-Methods",
            "GET, POST, DELETE, OPTIONS, PATCH",
        )
        .header(
            "Access-Control-Allow-Headers",
            "Content-Type, Authorization, If-Match",
        )
        .header("Access-Control-Expose-Headers", "Location, Link, ETag");
    builder
}

/// A viewer's egress of `broadcast` that others may join, whose `Share`
/// and keyframe verdict `accept` takes. The verdict: whether a viewer
/// joining gets its first keyframe soon, at once from the broadcast's
/// publisher when it is on this gateway, or with the next group when the
/// broadcast's groups last at most `max_group`; `None` while the egress has
/// not seen a whole group.
fn shared_base(
    sessions: &HashMap<String, Arc<Session>>,
    broadcast: &str,
    max_group: Duration,
    accept: impl Fn(Share, Option<bool>) -> bool,
) -> Option<Arc<Session>> {
    let published_here = sessions
        .values()
        .any(|s| s.kind == Kind::Ingest && s.broadcast == broadcast);
    let keyframe_soon = |session: &Session| {
        if published_here {
            return Some(true);
        }
        session
            .keyframes
            .as_ref()
            .and_then(|k| k.egress.groups_within(max_group))
    };
    sessions
        .values()
        .find(|s| {
            s.kind == Kind::Egress
                && s.broadcast == broadcast
                && !s.ending.load(Ordering::SeqCst)
                && accept(*s.shareable.borrow(), keyframe_soon(s))
        })
        .cloned()
}

/// Whether a pad of moqsrc or whipserversrc carries video (by its name).
fn is_video(pad: &gst::Pad) -> bool {
    gstmoq::TrackKind::of_pad_name(&pad.name()) == gstmoq::TrackKind::Video
}

/// How sessions of `kind` are named in listings and metrics.
fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Ingest => "whip",
        Kind::Egress => "whep",
    }
}

/// A refused POST's cause, for the metrics.
fn cause(status: StatusCode) -> &'static str {
    match status {
        StatusCode::BAD_REQUEST => "bad_request",
        StatusCode::UNAUTHORIZED => "unauthorized",
        StatusCode::FORBIDDEN => "forbidden",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::NOT_ACCEPTABLE => "not_acceptable",
        StatusCode::CONFLICT => "conflict",
        StatusCode::PAYLOAD_TOO_LARGE => "too_large",
        StatusCode::SERVICE_UNAVAILABLE => "unavailable",
        StatusCode::REQUEST_TIMEOUT => "slow_client",
        StatusCode::BAD_GATEWAY => "relay",
        _ if status.is_server_error() => "internal",
        _ => "other",
    }
}

/// A refusal by the access rules: 401 asks for a bearer token (RFC 6750).
fn denied_reply(denied: Denied) -> Reply {
    let (status, text) = match denied {
        Denied::Unauthenticated(text) => (StatusCode::UNAUTHORIZED, text),
        Denied::Forbidden(text) => (StatusCode::FORBIDDEN, text),
    };
    let mut reply = text_reply(status, &text);
    if status == StatusCode::UNAUTHORIZED {
        reply.headers_mut().insert(
            "WWW-Authenticate",
            warp::http::HeaderValue::from_static("Bearer realm=\"moq-gateway\""),
        );
    }
    reply
}

fn text_reply(status: StatusCode, text: &str) -> Reply {
    with_cors(Response::builder().status(status))
        .header("Content-Type", "text/plain; charset=utf-8")
        .body(format!("{text}\n").into_bytes())
        .expect("a valid response")
}

/// A broadcast name from the URL: MoQ names are paths, but nothing that
/// could escape the relay path or hide in logs.
fn broadcast_name(rest: &str) -> Option<String> {
    let name = rest.trim_matches('/');
    let ok = !name.is_empty()
        && name.len() <= 200
        && name
            .split('/')
            .all(|part| !part.is_empty() && part != "." && part != "..")
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c));
    ok.then(|| name.to_owned())
}

/// An id nobody can guess from another one.
fn new_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(NEXT.fetch_add(1, Ordering::Relaxed));
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    hasher.write_u128(nanos);
    let a = hasher.finish();
    hasher.write_u64(a);
    format!("{a:016x}{:016x}", hasher.finish())
}

impl Gateway {
    /// A POST with its `Authorization` header, if any: a header that is
    /// not a bearer JWT is refused, not read as no credentials.
    async fn authorized_post(
        self: &Arc<Self>,
        path: &str,
        query: &std::collections::HashMap<String, String>,
        authorization: Option<String>,
        body: &[u8],
    ) -> Reply {
        match authorization.as_deref().map(|h| auth::bearer(Some(h))) {
            Some(None) => denied_reply(Denied::Unauthenticated(
                "Authorization takes Bearer <token>, a JWT".into(),
            )),
            token => self.post(path, query, token.flatten(), body).await,
        }
    }

    async fn post(
        self: &Arc<Self>,
        path: &str,
        query: &std::collections::HashMap<String, String>,
        token: Option<&str>,
        body: &[u8],
    ) -> Reply {
        let (kind, broadcast, offer) = match parse_post(path, body) {
            Ok(request) => request,
            Err((status, text)) => return text_reply(status, text),
        };
        let expires = match self.admit(kind, &broadcast, token).await {
            Ok(expires) => expires,
            Err(denied) => return denied_reply(denied),
        };
        // A viewer's largest picture and link, for broadcasts with
        // renditions.
        let wants = match Wants::from_query(query) {
            Ok(wants) => wants,
            Err(text) => return text_reply(StatusCode::BAD_REQUEST, text),
        };
        let ladder = match wants_ladder(kind, query) {
            Ok(ladder) => ladder,
            Err(text) => return text_reply(StatusCode::BAD_REQUEST, text),
        };
        let started = match kind {
            Kind::Ingest => self.start_ingest(&broadcast, &offer, ladder, token),
            Kind::Egress => self.start_egress(&broadcast, wants, token).await,
        };
        let session = match started {
            Ok(session) => session,
            Err((status, text)) => return text_reply(status, &text),
        };
        let offer = match kind {
            Kind::Egress => egress_offer(&session, offer),
            Kind::Ingest => offer,
        };
        let reply = self.answer(&session, offer).await;
        self.answered(&session, reply.status());
        if let Some(expires) = expires {
            self.end_at(&session, expires);
        }
        reply
    }

    /// Ends `session` when the token it was admitted with runs out, as the
    /// relay ends a MoQ session then.
    fn end_at(self: &Arc<Self>, session: &Session, expires: SystemTime) {
        let wait = expires
            .duration_since(SystemTime::now())
            .unwrap_or_default();
        let gateway = Arc::downgrade(self);
        let id = session.id.clone();
        tokio::spawn(async move {
            tokio::time::sleep(wait).await;
            if let Some(gateway) = gateway.upgrade()
                && gateway.end(&id)
            {
                eprintln!("session {id}: its token expired");
                gateway.metrics.error("token_expired");
            }
        });
    }

    /// After a session's offer was answered with `status`: a session whose
    /// offer failed ends; a viewer's that never connects will.
    fn answered(self: &Arc<Self>, session: &Arc<Session>, status: StatusCode) {
        let (id, broadcast) = (&session.id, &session.broadcast);
        if status != StatusCode::CREATED {
            eprintln!("session {id} ({broadcast}): the offer was not answered ({status})");
            self.end(id);
        } else if session.kind == Kind::Ingest {
            eprintln!("session {id}: publishing {broadcast}");
        } else {
            eprintln!("session {id}: watching {broadcast}");
            // The keyframe it starts on is asked for once it is connected
            // (follow_viewer).
            self.end_if_never_connected(session);
        }
    }

    /// Counts a POST's outcome: a session started, or the cause of its
    /// refusal.
    fn count_post(&self, path: &str, status: StatusCode, took: Duration) {
        if status == StatusCode::CREATED
            && let Some((kind, _)) = route(path)
        {
            self.metrics.started(kind_name(kind), took);
        } else {
            self.metrics.error(cause(status));
        }
    }

    /// Whether the caller's token (or none) lets it publish (WHIP) or
    /// watch (WHEP) `broadcast`, and until when; everyone may without
    /// access rules.
    async fn admit(
        &self,
        kind: Kind,
        broadcast: &str,
        token: Option<&str>,
    ) -> Result<Option<SystemTime>, Denied> {
        let Some(access) = &self.opts.access else {
            return Ok(None);
        };
        let action = match kind {
            Kind::Ingest => Action::Publish,
            Kind::Egress => Action::Subscribe,
        };
        access
            .check(&self.relay_path, broadcast, action, token)
            .await
    }

    async fn other(self: &Arc<Self>, method: &Method, path: &str) -> Reply {
        match *method {
            Method::OPTIONS => with_cors(Response::builder().status(StatusCode::NO_CONTENT))
                .body(Vec::new())
                .expect("a valid response"),
            Method::GET if path == "/" => with_cors(Response::builder())
                .header("Content-Type", "text/html; charset=utf-8")
                .body(PAGE.as_bytes().to_vec())
                .expect("a valid response"),
            // For load balancers and probes: the listener answers, and
            // what it carries. (The relay's health is the relay's to say.)
            Method::GET if path == "/healthz" => {
                let sessions = self.sessions.lock().unwrap_or_else(PoisonError::into_inner);
                let publishers = sessions.values().filter(|s| s.kind == Kind::Ingest).count();
                let viewers = sessions.len() - publishers;
                text_reply(
                    StatusCode::OK,
                    &format!(
                        "ok: {publishers} publishers, {viewers} viewers, at most {} sessions",
                        self.opts.max_sessions
                    ),
                )
            }
            Method::GET if path == "/metrics" => {
                let sessions: Vec<_> = self
                    .sessions
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .values()
                    .map(|s| (kind_name(s.kind), s.broadcast.clone()))
                    .collect();
                let text = self.metrics.encode(
                    sessions.iter().map(|(k, b)| (*k, b.as_str())),
                    self.egress_pipelines(),
                );
                with_cors(Response::builder())
                    .header("Content-Type", metrics::CONTENT_TYPE)
                    .body(text.into_bytes())
                    .expect("a valid response")
            }
            Method::DELETE => match path.strip_prefix("/session/") {
                Some(id) if self.end(id) => text_reply(StatusCode::OK, "session ended"),
                _ => text_reply(StatusCode::NOT_FOUND, "no such session"),
            },
            // Trickle ICE: the answer already holds every candidate.
            Method::PATCH => with_cors(Response::builder().status(StatusCode::METHOD_NOT_ALLOWED))
                .header("Allow", "POST, DELETE, OPTIONS")
                .body(Vec::new())
                .expect("a valid response"),
            _ => text_reply(StatusCode::NOT_FOUND, "not here"),
        }
    }

    fn start_ingest(
        self: &Arc<Self>,
        broadcast: &str,
        offer: &str,
        ladder: bool,
        token: Option<&str>,
    ) -> Result<Arc<Session>, (StatusCode, String)> {
        let video = sdp::preferred_video(offer);
        if video.is_none() && !sdp::has_media(offer, "audio") {
            return Err((
                StatusCode::NOT_ACCEPTABLE,
                "the offer has no video in H.264, VP8, VP9 or H.265 and no audio".into(),
            ));
        }
        if let Some(why) = sdp::unroutable(offer) {
            return Err((StatusCode::NOT_ACCEPTABLE, why));
        }
        let mut sessions = self.sessions.lock().unwrap_or_else(PoisonError::into_inner);
        self.room(&sessions)?;
        if sessions
            .values()
            .any(|s| s.kind == Kind::Ingest && s.broadcast == broadcast)
        {
            return Err((
                StatusCode::CONFLICT,
                format!("broadcast '{broadcast}' already has a publisher"),
            ));
        }
        let session = self
            .build_ingest(
                broadcast,
                video,
                ladder,
                sdp::has_media(offer, "audio"),
                token,
            )
            .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")))?;
        sessions.insert(session.id.clone(), session.clone());
        drop(sessions);
        if let Err(err) = self.play(&session) {
            self.end(&session.id);
            return Err((StatusCode::INTERNAL_SERVER_ERROR, err));
        }
        Ok(session)
    }

    fn build_ingest(
        self: &Arc<Self>,
        broadcast: &str,
        video: Option<Video>,
        ladder: bool,
        audio: bool,
        token: Option<&str>,
    ) -> anyhow::Result<Arc<Session>> {
        let id = new_id();
        let pipeline = gst::Pipeline::with_name(&format!("whip-{id}"));
        crate::webrtcbin::without_upnp(pipeline.upcast_ref());
        crate::webrtcbin::with_sender_timestamps(pipeline.upcast_ref());
        crate::trace::arrivals(&pipeline);
        let stun = self.opts.stun.as_deref();
        let src = self.webrtc_element("whipserversrc", presets::ingest_settings(video, stun))?;
        let sink = gst::ElementFactory::make("moqsink")
            .name("moq")
            .property("url", &self.opts.relay)
            .property("broadcast", broadcast)
            // The caller's own token: the gateway publishes with no more
            // than its publisher was granted.
            .property("auth-token", token)
            .build()
            .context("no moqsink")?;
        pipeline.add_many([&src, &sink])?;
        let targets = Mutex::new(IngestPads::request(&sink, video, ladder, audio)?);
        let session = Session::publisher(id, broadcast, &pipeline, &src);
        let weak = Arc::downgrade(&session);
        let pipeline_weak = pipeline.downgrade();
        let metrics = self.metrics.clone();
        // Linked inside pad-added: whipserversrc may add pads from two
        // threads, and an unlinked pad would be a not-linked error.
        src.connect_pad_added(move |_, pad| {
            let (Some(pipeline), Some(session)) = (pipeline_weak.upgrade(), weak.upgrade()) else {
                return;
            };
            let mut targets = targets.lock().unwrap_or_else(PoisonError::into_inner);
            metrics.count_buffers(pad, Direction::In, is_video(pad));
            if let Err(err) = targets.link(&pipeline, pad, video, &session) {
                eprintln!(
                    "session {}: cannot carry {}: {err:#}",
                    session.id,
                    pad.name()
                );
            }
        });
        // A publisher that leaves removes its pads without EOS.
        crate::launch::end_stream_with_session(&src);
        self.watch_bus(&session);
        Ok(session)
    }

    /// A session's WebRTC element (whipserversrc, whepserversink) set up as
    /// the presets set theirs, without a listener of its own: this server
    /// hands it the offers.
    fn webrtc_element(
        &self,
        factory: &str,
        settings: presets::Settings,
    ) -> anyhow::Result<gst::Element> {
        let element = gst::ElementFactory::make(factory)
            .name("webrtc")
            .build()
            .with_context(|| format!("no {factory}"))?;
        apply(&element, settings)?;
        signaller(&element).set_property("host-addr", "");
        Ok(element)
    }

    /// Whether one more session fits under `max_sessions` (checked with
    /// the sessions locked, where it is then added).
    fn room(&self, sessions: &HashMap<String, Arc<Session>>) -> Result<(), (StatusCode, String)> {
        if sessions.len() >= self.opts.max_sessions {
            return Err((
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "the gateway carries {} sessions, its most (--max-sessions); try later",
                    sessions.len()
                ),
            ));
        }
        Ok(())
    }

    async fn start_egress(
        self: &Arc<Self>,
        broadcast: &str,
        wants: Wants,
        token: Option<&str>,
    ) -> Result<Arc<Session>, (StatusCode, String)> {
        if let Some(session) = self.join_shared(broadcast, wants).await? {
            return Ok(session);
        }
        let (session, ready, link) = self
            .build_egress(broadcast, wants, token)
            .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")))?;
        {
            let mut sessions = self.sessions.lock().unwrap_or_else(PoisonError::into_inner);
            self.room(&sessions)?;
            sessions.insert(session.id.clone(), session.clone());
        }
        if let Err(err) = self.play(&session) {
            self.end(&session.id);
            return Err((StatusCode::INTERNAL_SERVER_ERROR, err));
        }
        match self.wait_streams(&session, broadcast, ready).await {
            Ok(()) => {
                link.prepare(&session.webrtc, wants);
                // One rendition and no limits: nothing differs between this
                // viewer and the next ones.
                let share = wants == Wants::default() && !link.adapts();
                session
                    .shareable
                    .send_replace(if share { Share::Yes } else { Share::No });
                Ok(session)
            }
            Err(err) => {
                session.shareable.send_replace(Share::No);
                self.end(&session.id);
                Err(err)
            }
        }
    }

    /// A viewer joining the egress another viewer of `broadcast` made: one
    /// more consumer of its whepserversink, over the same moqsrc (one MoQ
    /// subscription and one pipeline for all of them). Only when nothing
    /// differs between them: the broadcast has one rendition and neither
    /// asked for limits (`Share`). And only when the joining viewer's first
    /// keyframe comes soon: its publisher is on this gateway, where the
    /// request goes, or its groups are short (`share_max_group`), and the
    /// viewer waits for the next one (a moqsrc rejoining for a keyframe
    /// would re-send the group to every viewer). A viewer arriving while
    /// such an egress is being made waits for it, and for its first whole
    /// group when the publisher is elsewhere (a burst of viewers at a
    /// broadcast's start is when sharing matters most).
    async fn join_shared(
        self: &Arc<Self>,
        broadcast: &str,
        wants: Wants,
    ) -> Result<Option<Arc<Session>>, (StatusCode, String)> {
        if !self.opts.share_egress || wants != Wants::default() {
            return Ok(None);
        }
        let base = |accept: &dyn Fn(Share, Option<bool>) -> bool| {
            let sessions = self.sessions.lock().unwrap_or_else(PoisonError::into_inner);
            shared_base(&sessions, broadcast, self.opts.share_max_group, accept)
        };
        let mut share = match base(&|share, soon| share != Share::No && soon != Some(false)) {
            Some(base) => base.shareable.subscribe(),
            None => return Ok(None),
        };
        // Bounded by the base's own wait for its streams; a base that
        // ends drops its sender, which reads as No.
        let verdict = share
            .wait_for(|share| *share != Share::Pending)
            .await
            .map(|share| *share)
            .unwrap_or(Share::No);
        if verdict != Share::Yes {
            return Ok(None);
        }
        // A group is at most `share_max_group` long, or too long to share.
        let known = tokio::time::Instant::now() + self.opts.share_max_group;
        while base(&|share, soon| share == Share::Yes && soon.is_some()).is_none()
            && tokio::time::Instant::now() < known
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut sessions = self.sessions.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(base) = shared_base(
            &sessions,
            broadcast,
            self.opts.share_max_group,
            |share, soon| share == Share::Yes && soon == Some(true),
        ) else {
            return Ok(None);
        };
        let Some(theirs) = base.keyframes.clone() else {
            return Ok(None);
        };
        let keyframes = Keyframes::new(self, broadcast, theirs.egress.clone());
        let session = Session::viewer(
            new_id(),
            &base.pipeline,
            &base.webrtc,
            keyframes.clone(),
            Share::Yes,
        );
        self.room(&sessions)?;
        keyframes.egress.share();
        sessions.insert(session.id.clone(), session.clone());
        Ok(Some(session))
    }

    /// Waits until whepserversink can answer an offer for the broadcast:
    /// moqsrc has made its pads and whepserversink has found how to send
    /// each stream (its codec discovery, which needs the first buffers).
    /// An offer handed over before that is answered, but the discovery that
    /// ends later adds its stream to the session a second time, and the
    /// answer grows an extra m-line that the peer rejects.
    async fn wait_streams(
        &self,
        session: &Session,
        broadcast: &str,
        ready: Ready,
    ) -> Result<(), (StatusCode, String)> {
        let moqsrc = session.pipeline.by_name("moq");
        let relay_state = || {
            moqsrc
                .as_ref()
                .map(|src| {
                    let value = src.property_value("status");
                    glib::EnumValue::from_value(&value)
                        .map(|(_, v)| v.nick().to_string())
                        .unwrap_or_default()
                })
                .unwrap_or_default()
        };
        let streams = async {
            ready.pads.await.map_err(|_| ())?;
            ready.discovered.await.map_err(|_| ())
        };
        tokio::pin!(streams);
        let started = tokio::time::Instant::now();
        let mut ticks = tokio::time::interval(Duration::from_millis(50));
        loop {
            tokio::select! {
                done = &mut streams => {
                    return done.map_err(|()| (
                        StatusCode::INTERNAL_SERVER_ERROR,
                        format!("the egress of '{broadcast}' stopped before it could answer"),
                    ));
                }
                _ = ticks.tick() => {}
            }
            self.still_waiting(&relay_state(), started.elapsed(), broadcast)?;
        }
    }

    /// Whether waiting for a viewer's streams may go on: not when the relay
    /// failed or was never reached, or the broadcast did not appear in time.
    fn still_waiting(
        &self,
        relay_state: &str,
        waited: Duration,
        broadcast: &str,
    ) -> Result<(), (StatusCode, String)> {
        match relay_state {
            "failed" => {
                return Err((
                    StatusCode::BAD_GATEWAY,
                    format!(
                        "the MoQ relay {} refused or failed the connection",
                        self.opts.relay
                    ),
                ));
            }
            "connected" => {}
            _ if waited >= RELAY_WAIT => {
                return Err((
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!(
                        "the MoQ relay {} cannot be reached (no connection after {:?})",
                        self.opts.relay, RELAY_WAIT
                    ),
                ));
            }
            _ => {}
        }
        if waited >= self.opts.broadcast_wait {
            return Err((
                StatusCode::NOT_FOUND,
                format!(
                    "broadcast '{broadcast}' did not appear within {:?}",
                    self.opts.broadcast_wait
                ),
            ));
        }
        Ok(())
    }

    fn build_egress(
        self: &Arc<Self>,
        broadcast: &str,
        wants: Wants,
        token: Option<&str>,
    ) -> anyhow::Result<(Arc<Session>, Ready, Arc<ViewerLink>)> {
        let id = new_id();
        let pipeline = gst::Pipeline::with_name(&format!("whep-{id}"));
        crate::webrtcbin::without_upnp(pipeline.upcast_ref());
        let src = egress_source(&self.opts.relay, broadcast, wants)?;
        // A token of the gateway's for this broadcast alone, which other
        // viewers' sessions may outlast (see `end_at` for this viewer's),
        // or else the viewer's own: never more than it was granted.
        let own = self
            .opts
            .access
            .as_ref()
            .and_then(|access| access.egress_token(&self.relay_path, broadcast));
        src.set_property("auth-token", own.as_deref().or(token));
        let link = Arc::new(ViewerLink::new(
            format!("session {id} ({broadcast})"),
            &src,
            self.metrics.link_estimates().clone(),
        ));
        // The codec is the catalog's, known only once moqsrc has read it.
        let sink = self.webrtc_element(
            "whepserversink",
            presets::egress_settings(None, self.opts.stun.as_deref()),
        )?;
        pipeline.add_many([&src, &sink])?;
        crate::trace::egress(&sink, broadcast);
        let name = broadcast.to_owned();
        let keyframes = Keyframes::new(self, broadcast, Egress::new(&src));
        let share = if self.opts.share_egress && wants == Wants::default() {
            Share::Pending
        } else {
            Share::No
        };
        let session = Session::viewer(id, &pipeline, &sink, keyframes.clone(), share);
        let pipeline_weak = pipeline.downgrade();
        let sink_for_pads = sink.clone();
        let keyframes_for_pads = keyframes.clone();
        let metrics = self.metrics.clone();
        src.connect_pad_added(move |_, pad| {
            let Some(pipeline) = pipeline_weak.upgrade() else {
                return;
            };
            metrics.count_buffers(pad, Direction::Out, is_video(pad));
            let keyframes = keyframes_for_pads.clone();
            if let Err(err) = link_egress(&pipeline, pad, &sink_for_pads, keyframes) {
                eprintln!("egress of {name}: cannot carry {}: {err:#}", pad.name());
            }
        });
        let ready = ready_signals(&src, &sink);
        self.follow_viewer(&sink, link.clone());
        self.watch_bus(&session);
        Ok((session, ready, link))
    }

    /// Follows each viewer's connection on whepserversink (one, or several
    /// sharing it): its keyframe is asked for once it is connected, its
    /// link picks its rendition, and its session ends when it leaves (ICE
    /// failed, the peer closed). Consumers are named by their session ids.
    fn follow_viewer(self: &Arc<Self>, sink: &gst::Element, link: Arc<ViewerLink>) {
        // Called from an async handler: the server's runtime.
        let runtime = tokio::runtime::Handle::current();
        let gateway = Arc::downgrade(self);
        sink.connect("consumer-added", false, move |args| {
            let id = args.get(1).and_then(|v| v.get::<String>().ok())?;
            let webrtcbin = args.get(2).and_then(|v| v.get::<gst::Element>().ok())?;
            // Only the viewer that made the pipeline can adapt (a shared
            // one has a single rendition, see `join_shared`).
            link.follow(&webrtcbin, &runtime);
            let keyframes = gateway
                .upgrade()
                .and_then(|gateway| gateway.session(&id))
                .and_then(|session| session.keyframes.clone())?;
            webrtcbin.connect_notify(Some("connection-state"), move |webrtcbin, _| {
                let state = webrtcbin.property_value("connection-state");
                if glib::EnumValue::from_value(&state).is_some_and(|(_, v)| v.nick() == "connected")
                {
                    keyframes.viewer_connected();
                }
            });
            None
        });
        let gateway = Arc::downgrade(self);
        sink.connect("consumer-removed", false, move |args| {
            let id = args.get(1).and_then(|v| v.get::<String>().ok());
            if let (Some(gateway), Some(id)) = (gateway.upgrade(), id) {
                gateway.end(&id);
            }
            None
        });
    }

    /// How many egress pipelines the viewers run on (each one moqsrc, one
    /// MoQ subscription).
    fn egress_pipelines(&self) -> usize {
        let sessions = self.sessions.lock().unwrap_or_else(PoisonError::into_inner);
        let mut pipelines: Vec<&gst::Pipeline> = sessions
            .values()
            .filter(|s| s.kind == Kind::Egress)
            .map(|s| &s.pipeline)
            .collect();
        pipelines.sort_by_key(|p| p.as_ptr() as usize);
        pipelines.dedup();
        pipelines.len()
    }

    /// The session `id`, if it is running.
    fn session(&self, id: &str) -> Option<Arc<Session>> {
        self.sessions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(id)
            .cloned()
    }

    fn play(&self, session: &Session) -> Result<(), String> {
        session
            .pipeline
            .set_state(gst::State::Playing)
            .map(|_| ())
            .map_err(|_| "the session's pipeline did not start".to_string())
    }

    /// Hands the offer to the WebRTC element's signaller and turns its
    /// reply into ours.
    async fn answer(&self, session: &Session, offer: String) -> Reply {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let tx = Mutex::new(Some(tx));
        let promise = gst::Promise::with_change_func(move |reply| {
            let reply = reply.ok().flatten().map(std::borrow::ToOwned::to_owned);
            if let Some(tx) = tx.lock().unwrap_or_else(PoisonError::into_inner).take() {
                let _ = tx.send(reply);
            }
        });
        let offer_text = offer.clone();
        signaller(&session.webrtc).emit_by_name::<()>(
            "post",
            &[
                &Some(session.id.clone()),
                &glib::Bytes::from_owned(offer.into_bytes()),
                &promise,
            ],
        );
        let Ok(Some(reply)) = rx.await else {
            return text_reply(
                StatusCode::INTERNAL_SERVER_ERROR,
                "no answer from the WebRTC element",
            );
        };
        let status = reply
            .get::<u32>("status")
            .ok()
            .and_then(|s| u16::try_from(s).ok())
            .and_then(|s| StatusCode::from_u16(s).ok())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut body = reply
            .get::<glib::Bytes>("body")
            .map(|b| b.to_vec())
            .unwrap_or_default();
        if status == StatusCode::CREATED {
            body = match aligned_answer(&session.id, &offer_text, &body) {
                Ok(aligned) => aligned,
                // The peer would reject it and wait forever: fail the POST
                // (the caller ends the session) instead.
                Err(why) => {
                    return text_reply(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        &format!("the WebRTC element's answer does not fit the offer: {why}"),
                    );
                }
            };
        }
        element_reply(status, &reply, &session.id, body)
    }

    /// Ends an answered session whose peer never connects (its ICE or DTLS
    /// failed, or it rejected the answer) after `connect_wait`, and counts it.
    fn end_if_never_connected(self: &Arc<Self>, session: &Arc<Session>) {
        let gateway = Arc::downgrade(self);
        let session = Arc::downgrade(session);
        let wait = self.opts.connect_wait;
        tokio::spawn(async move {
            tokio::time::sleep(wait).await;
            let (Some(gateway), Some(session)) = (gateway.upgrade(), session.upgrade()) else {
                return;
            };
            let connected = session
                .keyframes
                .as_ref()
                .is_some_and(|k| k.connected.load(Ordering::SeqCst));
            if connected || session.ending.load(Ordering::SeqCst) {
                return;
            }
            if gateway.end(&session.id) {
                gateway.metrics.error(NEVER_CONNECTED);
                eprintln!(
                    "session {} ({}): the viewer did not connect within {wait:?}, ended",
                    session.id, session.broadcast
                );
            }
        });
    }

    /// Ends a session; false if there is none with that id. A viewer that
    /// shares its pipeline leaves it (its consumer is removed); the last
    /// one out stops it.
    fn end(&self, id: &str) -> bool {
        let (session, shared) = {
            let mut sessions = self.sessions.lock().unwrap_or_else(PoisonError::into_inner);
            let Some(session) = sessions.remove(id) else {
                return false;
            };
            let shared = sessions.values().any(|s| s.pipeline == session.pipeline);
            (session, shared)
        };
        // Never block the caller: it may be a streaming thread or the
        // HTTP runtime.
        let _ = std::thread::Builder::new()
            .name("session-end".into())
            .spawn(move || {
                if shared {
                    leave(&session);
                } else {
                    teardown(&session);
                }
            });
        true
    }

    /// Ends every session on `pipeline` (the viewers sharing it, or its one
    /// session).
    fn end_pipeline(&self, pipeline: &gst::Pipeline) {
        let ids: Vec<String> = self
            .sessions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .filter(|s| &s.pipeline == pipeline)
            .map(|s| s.id.clone())
            .collect();
        for id in ids {
            self.end(&id);
        }
    }

    /// A keyframe request to `broadcast`'s publisher, if it publishes
    /// through this gateway: whether it did.
    fn request_keyframe(&self, broadcast: &str) -> bool {
        let pads = self
            .sessions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .find(|s| s.kind == Kind::Ingest && s.broadcast == broadcast)
            .map(|s| {
                s.video_sinks
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .clone()
            })
            .unwrap_or_default();
        let event = gst_video::UpstreamForceKeyUnitEvent::builder()
            .all_headers(true)
            .build();
        // Every pad is asked (no short-circuit): a ladder's renditions
        // start their groups together.
        let pushed = pads
            .iter()
            .map(|pad| pad.push_event(event.clone()))
            .filter(|pushed| *pushed)
            .count()
            > 0;
        if pushed {
            self.metrics.keyframe_requests().inc();
        }
        pushed
    }

    /// Ends the session when its pipeline ends (EOS: the publisher left;
    /// ERROR: say why).
    fn watch_bus(self: &Arc<Self>, session: &Arc<Session>) {
        let gateway: Weak<Gateway> = Arc::downgrade(self);
        let id = session.id.clone();
        let pipeline = session.pipeline.downgrade();
        let bus = session.pipeline.bus().expect("a pipeline has a bus");
        bus.set_sync_handler(move |_, msg| {
            let done = match msg.view() {
                gst::MessageView::Eos(_) => true,
                gst::MessageView::Error(err) => {
                    eprintln!(
                        "session {id}: {} ({})",
                        err.error(),
                        err.src().map(GstObjectExt::path_string).unwrap_or_default()
                    );
                    if let Some(gateway) = gateway.upgrade() {
                        gateway.metrics.error("pipeline");
                    }
                    true
                }
                _ => false,
            };
            // Everyone on the pipeline: the viewers sharing it too.
            if done && let (Some(gateway), Some(pipeline)) = (gateway.upgrade(), pipeline.upgrade())
            {
                gateway.end_pipeline(&pipeline);
            }
            gst::BusSyncReply::Drop
        });
    }
}

/// The viewer's offer with one video payload type left: the one the
/// broadcast's video can be sent as (see `sdp::keep_one_video_payload`).
fn egress_offer(session: &Session, offer: String) -> String {
    let caps = session
        .webrtc
        .sink_pads()
        .into_iter()
        .filter_map(|pad| pad.current_caps())
        .find(|caps| {
            caps.structure(0)
                .is_some_and(|s| s.name().starts_with("video/"))
        });
    let Some(caps) = caps else {
        return offer;
    };
    let Some(s) = caps.structure(0) else {
        return offer;
    };
    let codec = match s.name().as_str() {
        "video/x-h264" => Video::H264,
        "video/x-h265" => Video::H265,
        "video/x-vp8" => Video::Vp8,
        "video/x-vp9" => Video::Vp9,
        _ => return offer,
    };
    let profile = s.get::<&str>("profile").ok();
    sdp::keep_one_video_payload(&offer, codec, profile)
}

/// A callback that fires a oneshot channel the first time it is called
/// (GStreamer signals may fire again, from any thread), and its receiver.
fn once() -> (
    impl Fn() + Send + Sync + 'static,
    tokio::sync::oneshot::Receiver<()>,
) {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let tx = Mutex::new(Some(tx));
    let fire = move || {
        if let Some(tx) = tx.lock().unwrap_or_else(PoisonError::into_inner).take() {
            let _ = tx.send(());
        }
    };
    (fire, rx)
}

/// The element's answer with its m-lines in the offer's order (see
/// `sdp::align_answer`), or why it cannot fit the offer.
fn aligned_answer(id: &str, offer: &str, body: &[u8]) -> Result<Vec<u8>, String> {
    let answer = String::from_utf8_lossy(body);
    let aligned = sdp::align_answer(offer, &answer)?;
    if aligned != answer {
        eprintln!("session {id}: the answer's m-lines put in the offer's order");
    }
    Ok(aligned.into_bytes())
}

/// What a POST asks for: publish (WHIP) or watch (WHEP), which broadcast,
/// and its SDP offer with `sdp::fix_offer` applied; or the status and text refusing it.
/// Which kind of session a POST path asks for, and the rest of the path.
fn route(path: &str) -> Option<(Kind, &str)> {
    if let Some(rest) = path.strip_prefix("/whip/") {
        Some((Kind::Ingest, rest))
    } else {
        path.strip_prefix("/whep/").map(|rest| (Kind::Egress, rest))
    }
}

fn parse_post(
    path: &str,
    body: &[u8],
) -> Result<(Kind, String, String), (StatusCode, &'static str)> {
    let Some((kind, rest)) = route(path) else {
        return Err((
            StatusCode::NOT_FOUND,
            "POST an SDP offer to /whip/<broadcast> or /whep/<broadcast>",
        ));
    };
    let Some(broadcast) = broadcast_name(rest) else {
        return Err((
            StatusCode::BAD_REQUEST,
            "a broadcast name is letters, digits and - _ . /",
        ));
    };
    let Ok(offer) = std::str::from_utf8(body) else {
        return Err((StatusCode::BAD_REQUEST, "the offer is not UTF-8 text"));
    };
    if !offer.starts_with("v=0") {
        return Err((StatusCode::BAD_REQUEST, "the body is not an SDP offer"));
    }
    let offer = sdp::fix_offer(offer);
    Ok((kind, broadcast, offer))
}

/// Our HTTP reply from the WebRTC element's: its status, body and
/// headers, with our session's resource as the Location.
fn element_reply(status: StatusCode, reply: &gst::Structure, id: &str, body: Vec<u8>) -> Reply {
    let mut builder = with_cors(Response::builder().status(status));
    if let Ok(headers) = reply.get::<gst::Structure>("headers") {
        for (name, value) in headers.iter() {
            let Ok(value) = value.get::<&str>() else {
                continue;
            };
            // The element's own resource path means nothing here.
            if name.eq_ignore_ascii_case("location") {
                continue;
            }
            builder = builder.header(name.as_str(), value);
        }
    }
    if status == StatusCode::CREATED {
        builder = builder.header("Location", format!("/session/{id}"));
    }
    // A header the element made that HTTP cannot carry is its bug, not
    // a reason to drop the connection.
    builder.body(body).unwrap_or_else(|err| {
        text_reply(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("the WebRTC element's answer is not valid HTTP: {err}"),
        )
    })
}

/// An egress's moqsrc, playing no rendition taller or above the bitrate
/// than the viewer wants.
fn egress_source(relay: &str, broadcast: &str, wants: Wants) -> anyhow::Result<gst::Element> {
    gst::ElementFactory::make("moqsrc")
        .name("moq")
        .property("url", relay)
        .property("broadcast", broadcast)
        .property("max-video-height", wants.max_height)
        .property("max-bitrate", wants.video_bitrate())
        // Its link is the gateway's to the relay, not the viewer's: adapting
        // to it would only ever pick the best.
        .property("abr", false)
        .build()
        .context("no moqsrc")
}

/// When an egress can take an offer: moqsrc has made its pads and
/// whepserversink has finished its codec discovery.
fn ready_signals(src: &gst::Element, sink: &gst::Element) -> Ready {
    let (pads_tx, pads) = once();
    src.connect_no_more_pads(move |_| pads_tx());
    // webrtcsink starts its signaller once every stream's codec
    // discovery is done: that is when it can take an offer.
    let (discovered_tx, discovered) = once();
    signaller(sink).connect("start", false, move |_| {
        discovered_tx();
        // The first handler's value ends the emission, so this stands in
        // for the signaller's own start, which only opens its HTTP
        // server: disabled here (host-addr ""), this server routes.
        Some(false.to_value())
    });
    Ready { pads, discovered }
}

fn signaller(webrtc: &gst::Element) -> glib::Object {
    webrtc.property::<glib::Object>("signaller")
}

/// Stops a session's pipeline; an ingest first lets moqsink end the
/// broadcast (EOS), so subscribers see it end rather than stall.
/// A viewer leaving a pipeline that others share: its consumer of
/// whepserversink is removed, the rest goes on.
fn leave(session: &Session) {
    if session.ending.swap(true, Ordering::SeqCst) {
        return;
    }
    signaller(&session.webrtc).emit_by_name::<()>("delete", &[&session.id, &gst::Promise::new()]);
    eprintln!(
        "session {} ({}) left its shared egress",
        session.id, session.broadcast
    );
}

fn teardown(session: &Session) {
    if session.ending.swap(true, Ordering::SeqCst) {
        return;
    }
    if session.kind == Kind::Ingest
        && let Some(sink) = session.pipeline.by_name("moq")
    {
        // Synchronous: when it returns, moqsink has closed the tracks and
        // the catalog; stopping then lets the relay take what is queued.
        for pad in sink.sink_pads() {
            pad.send_event(gst::event::Eos::new());
        }
    }
    let _ = session.pipeline.set_state(gst::State::Null);
    eprintln!("session {} ({}) ended", session.id, session.broadcast);
}

/// Sets the presets' settings of a WebRTC element (see `presets::Settings`).
fn apply(element: &gst::Element, settings: presets::Settings) -> anyhow::Result<()> {
    for (name, text) in settings {
        let pspec = element
            .find_property(name)
            .with_context(|| format!("{} has no property {name}", element.name()))?;
        let value = glib::Value::deserialize_with_pspec(&text, &pspec)
            .with_context(|| format!("{name}={text}"))?;
        element.set_property_from_value(name, &value);
    }
    Ok(())
}

/// moqsink's pads for what a publisher's offer sends, requested before any
/// of it arrives: moqsink announces the broadcast once every pad it has
/// carries caps (or after 2 s), so the first catalog lists every track.
/// Requested as whipserversrc's pads came, a ladder's video (decoded and
/// encoded first) was not yet in the catalog that viewers joining early
/// read, and they were answered without it.
struct IngestPads {
    /// One pad, or one per rendition with `?ladder=1`.
    video: Vec<gst::Pad>,
    audio: Option<gst::Pad>,
    ladder: bool,
}

impl IngestPads {
    fn request(
        sink: &gst::Element,
        video: Option<Video>,
        ladder: bool,
        audio: bool,
    ) -> anyhow::Result<Self> {
        let one = |template: &str| {
            sink.request_pad_simple(template)
                .context("moqsink gave no pad")
        };
        let video = match (video, ladder) {
            (None, _) => Vec::new(),
            (Some(_), true) => crate::ingest_ladder::request_pads(sink)?,
            (Some(_), false) => vec![one("video_%u")?],
        };
        let audio = if audio { Some(one("audio_%u")?) } else { None };
        Ok(Self {
            video,
            audio,
            ladder,
        })
    }

    /// whipserversrc `pad` -> queue -> parser/caps -> its moqsink pad;
    /// with `ladder`, video goes through `ingest_ladder` instead.
    fn link(
        &mut self,
        pipeline: &gst::Pipeline,
        pad: &gst::Pad,
        video: Option<Video>,
        session: &Session,
    ) -> anyhow::Result<()> {
        let is_video = is_video(pad);
        let targets = if is_video {
            std::mem::take(&mut self.video)
        } else {
            self.audio.take().into_iter().collect()
        };
        let Some(first) = targets.first().cloned() else {
            anyhow::bail!("a second stream, or one the offer did not send");
        };
        if is_video && self.ladder {
            let video = video.context("video the offer did not carry")?;
            crate::ingest_ladder::link(pipeline, pad, &targets, video)?;
        } else {
            // The same chain the presets use, so both gateways carry alike.
            let chain = if is_video {
                video
                    .context("video the offer did not carry")?
                    .ingest_chain()
            } else {
                presets::AUDIO_INGEST_CHAIN
            };
            let shape = gst::parse::bin_from_description(&format!("queue ! {chain}"), true)?
                .upcast::<gst::Element>();
            pipeline.add(&shape)?;
            shape
                .static_pad("src")
                .context("no src pad")?
                .link(&first)?;
            shape.sync_state_with_parent()?;
            pad.link(&shape.static_pad("sink").context("no sink pad")?)?;
        }
        if is_video {
            crate::trace::probe(pad, &session.broadcast, crate::trace::Stage::Rtp);
            crate::trace::probe(&first, &session.broadcast, crate::trace::Stage::MoqSink);
            *session
                .video_sinks
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = targets;
        }
        Ok(())
    }
}

/// What the viewers on one egress pipeline share: its moqsrc, and whether
/// and when they may be more than one.
struct Egress {
    /// Told to rejoin for keyframes when no publisher here can take the
    /// requests and one viewer is on it.
    moqsrc: glib::WeakRef<gst::Element>,
    /// Set once a second viewer joins: whepserversink's requests (one
    /// probe for all its consumers) then pass whoever's connection is up,
    /// and moqsrc no longer rejoins (that would re-send the group to all).
    shared: AtomicBool,
    /// The broadcast's groups as received here, by which a viewer may join
    /// when the publisher is elsewhere (see `join_shared`).
    groups: Mutex<GroupLength>,
}

impl Egress {
    fn new(moqsrc: &gst::Element) -> Arc<Self> {
        Arc::new(Self {
            moqsrc: moqsrc.downgrade(),
            shared: AtomicBool::new(false),
            groups: Mutex::default(),
        })
    }

    /// A viewer joins: from now on its keyframe comes with the next group
    /// when the publisher is elsewhere.
    fn share(&self) {
        self.shared.store(true, Ordering::SeqCst);
        if let Some(moqsrc) = self.moqsrc.upgrade() {
            moqsrc.set_property("rejoin-for-keyframes", false);
        }
    }

    /// Whether a viewer joining now would wait at most `limit` for a
    /// keyframe of the broadcast's own; `None` before a whole group.
    fn groups_within(&self, limit: Duration) -> Option<bool> {
        let limit = gst::ClockTime::try_from(limit).unwrap_or(gst::ClockTime::ZERO);
        self.groups
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .within(limit)
    }

    /// Follows the group lengths of the video moqsrc gives on `pad`.
    fn measure_groups(self: &Arc<Self>, pad: &gst::Pad) {
        // Held by the probe: the pad goes with moqsrc, which `self` holds
        // weakly only.
        let egress = self.clone();
        pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            if let Some(buffer) = info.buffer() {
                egress
                    .groups
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .observe(
                        buffer.pts(),
                        !buffer.flags().contains(gst::BufferFlags::DELTA_UNIT),
                    );
            }
            gst::PadProbeReturn::Ok
        });
    }
}

/// Where a viewer's keyframe requests go, once its connection is up: to the
/// broadcast's WHIP publisher when it publishes here, else to the viewer's
/// moqsrc, which has the relay re-send its current group from the keyframe
/// (`rejoin-for-keyframes`): a publisher elsewhere (another gateway, the moq
/// CLI, a browser on @moq/publish) may send its next keyframe in seconds, or
/// only when asked. Not so when viewers share the egress: then a viewer of
/// a broadcast from elsewhere waits for the next group.
struct Keyframes {
    gateway: Weak<Gateway>,
    broadcast: String,
    /// The viewer's WebRTC connection came up (ICE and DTLS done); also
    /// read by the never-connected watchdog.
    connected: AtomicBool,
    egress: Arc<Egress>,
}

impl Keyframes {
    fn new(gateway: &Arc<Gateway>, broadcast: &str, egress: Arc<Egress>) -> Arc<Self> {
        Arc::new(Self {
            gateway: Arc::downgrade(gateway),
            broadcast: broadcast.to_owned(),
            connected: AtomicBool::new(false),
            egress,
        })
    }

    /// The viewer's connection is up: its first picture must be a
    /// keyframe, and the publisher's next one may be seconds away.
    fn viewer_connected(&self) {
        if !self.connected.swap(true, Ordering::SeqCst)
            && !self.request()
            && !self.egress.shared.load(Ordering::SeqCst)
            && let Some(moqsrc) = self.egress.moqsrc.upgrade()
        {
            // whepserversink asks again for every frame it drops while it
            // waits: those requests now reach the relay. One viewer on the
            // egress, so the re-sent frames reach only the one waiting.
            moqsrc.set_property("rejoin-for-keyframes", true);
        }
    }

    /// whepserversink asked (the viewer's PLI/FIR, or its consumer
    /// starting). Before the viewer is connected the request is dropped:
    /// the one made on connecting covers it, and one that went out first
    /// would make that one wait, as the publisher's RTCP allows one early
    /// feedback packet per regular report interval.
    fn viewer_asked(&self) {
        if self.connected.load(Ordering::SeqCst) || self.egress.shared.load(Ordering::SeqCst) {
            self.request();
        }
    }

    /// Whether the broadcast's publisher here took the request.
    fn request(&self) -> bool {
        self.gateway
            .upgrade()
            .is_some_and(|gateway| gateway.request_keyframe(&self.broadcast))
    }
}

/// moqsrc pad -> queue -> whepserversink; audio that is not Opus is decoded
/// so whepserversink encodes it to Opus. Keyframe requests from the viewer
/// go on to the publisher.
fn link_egress(
    pipeline: &gst::Pipeline,
    pad: &gst::Pad,
    sink: &gst::Element,
    keyframes: Arc<Keyframes>,
) -> anyhow::Result<()> {
    let broadcast = keyframes.broadcast.as_str();
    let is_video = is_video(pad);
    let queue = gst::ElementFactory::make("queue").build()?;
    pipeline.add(&queue)?;
    let target = sink
        .request_pad_simple(if is_video { "video_%u" } else { "audio_%u" })
        .context("whepserversink gave no pad")?;
    if is_video {
        let video = pad
            .current_caps()
            .and_then(|caps| caps.structure(0).map(|s| s.name().to_string()))
            .and_then(|name| Video::parse(name.trim_start_matches("video/x-")))
            .context("moqsrc's video pad has no caps of a codec WebRTC carries")?;
        let shape =
            gst::parse::bin_from_description(video.egress_chain(), true)?.upcast::<gst::Element>();
        pipeline.add(&shape)?;
        queue.link(&shape)?;
        shape
            .static_pad("src")
            .context("no src pad")?
            .link(&target)?;
        shape.sync_state_with_parent()?;
        crate::trace::probe(pad, broadcast, crate::trace::Stage::MoqSrc);
        keyframes.egress.measure_groups(pad);
        crate::trace::probe(&target, broadcast, crate::trace::Stage::WhepSink);
        pad.add_probe(gst::PadProbeType::EVENT_UPSTREAM, move |_, info| {
            if let Some(event) = info.event()
                && gst_video::UpstreamForceKeyUnitEvent::parse(event).is_ok()
            {
                keyframes.viewer_asked();
            }
            gst::PadProbeReturn::Ok
        });
    } else {
        let decode = gst::ElementFactory::make("decodebin3")
            .property("caps", presets::AUDIO_EGRESS_CAPS.parse::<gst::Caps>()?)
            .build()?;
        let out = gst::ElementFactory::make("queue").build()?;
        pipeline.add_many([&decode, &out])?;
        queue.link(&decode)?;
        out.static_pad("src").context("no src pad")?.link(&target)?;
        let out_sink = out.static_pad("sink").context("no sink pad")?;
        decode.connect_pad_added(move |_, pad| {
            if !out_sink.is_linked() {
                let _ = pad.link(&out_sink);
            }
        });
        decode.sync_state_with_parent()?;
        out.sync_state_with_parent()?;
    }
    queue.sync_state_with_parent()?;
    pad.link(&queue.static_pad("sink").context("no sink pad")?)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcast_names() {
        assert_eq!(broadcast_name("cam"), Some("cam".into()));
        assert_eq!(broadcast_name("room/cam-1/"), Some("room/cam-1".into()));
        assert_eq!(broadcast_name(""), None);
        assert_eq!(broadcast_name("a/../b"), None);
        assert_eq!(broadcast_name("a//b"), None);
        assert_eq!(broadcast_name("a?jwt=x"), None);
        assert_eq!(broadcast_name(&"x".repeat(201)), None);
    }

    /// The presets' settings fit the elements serve makes, including the
    /// forms only serve uses (no video codec, any carried codec).
    #[test]
    fn preset_settings_apply_to_the_elements() {
        crate::init().unwrap();
        let src = gst::ElementFactory::make("whipserversrc").build().unwrap();
        apply(&src, presets::ingest_settings(None, None)).unwrap();
        assert!(src.property::<gst::Array>("video-codecs").is_empty());
        apply(&src, presets::ingest_settings(Some(Video::Vp9), None)).unwrap();
        let codecs = src.property::<gst::Array>("video-codecs");
        assert_eq!(
            codecs
                .iter()
                .map(|v| v.get::<String>().unwrap())
                .collect::<Vec<_>>(),
            ["VP9"]
        );
        let sink = gst::ElementFactory::make("whepserversink").build().unwrap();
        apply(
            &sink,
            presets::egress_settings(None, Some("stun://127.0.0.1:3478")),
        )
        .unwrap();
        let caps = sink.property::<gst::Caps>("video-caps");
        assert_eq!(caps.size(), 4, "{caps}");
        assert!(
            caps.iter().all(|s| s.name().starts_with("video/x-")),
            "{caps}"
        );
        assert_eq!(
            sink.property::<gst::Caps>("audio-caps").to_string(),
            "audio/x-opus"
        );
        assert_eq!(
            sink.property::<Option<String>>("stun-server").as_deref(),
            Some("stun://127.0.0.1:3478")
        );
        let bad = vec![("video-caps", "not caps ((".to_owned())];
        assert!(apply(&sink, bad).is_err());
    }

    #[test]
    fn ids_differ() {
        let a = new_id();
        assert_eq!(a.len(), 32);
        assert_ne!(a, new_id());
    }
}
