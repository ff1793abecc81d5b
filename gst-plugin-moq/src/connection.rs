// SPDX-License-Identifier: MIT OR Apache-2.0

//! Everything about reaching a relay that both elements share: the connection
//! properties, URL validation, and dialing through `moq-tokio`.

use std::sync::Arc;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::time::Duration;

use gst::glib;
use gst::prelude::*;

use crate::runtime::RUNTIME;

pub const DEFAULT_TLS_DISABLE_VERIFY: bool = false;
/// How long to keep trying to reach the relay before giving up with an error.
pub const DEFAULT_CONNECT_TIMEOUT_MS: u32 = 10_000;
/// Offer every wire protocol version and let the relay pick.
pub const DEFAULT_MOQ_VERSION: &str = "auto";
/// How long the relay may stay silent before the connection counts as lost.
/// A relay that crashes or a link that blackholes sends no close, so this is
/// how long a stall lasts before redialing starts. moq-tokio's 10 s suits a
/// relay mesh; live media wants to notice in about two seconds. QUIC uses
/// the smaller of both ends' values, so the relay drops a vanished element
/// just as fast.
pub const DEFAULT_IDLE_TIMEOUT_MS: u32 = 2_000;
/// Keep-alive pings, several per idle timeout so one lost ping (or two)
/// does not end a healthy but quiet connection (a subscriber between groups,
/// an audio-only publisher on a lossy link).
pub const DEFAULT_KEEP_ALIVE_MS: u32 = 500;
/// First pause before redialing a relay that went away; redials after that
/// double it up to `REDIAL_MAX`. moq-tokio's 1 s start and 5 s cap leave a
/// restarted relay unused for up to 5 s; a live stream wants it back at once,
/// and one small QUIC handshake a second costs a relay nothing.
const REDIAL_FIRST: Duration = Duration::from_millis(200);
const REDIAL_MAX: Duration = Duration::from_secs(1);

/// URL schemes the MoQ client can dial without extra features.
const SCHEMES: &[&str] = &["https", "http", "moqt", "moql", "wss", "ws"];

/// The connection properties of an element, as the user set them.
#[derive(Debug, Clone)]
pub struct Settings {
    pub url: Option<String>,
    pub broadcast: Option<String>,
    pub tls_disable_verify: bool,
    pub tls_root_cert: Option<String>,
    pub tls_fingerprint: Option<String>,
    /// Never logged, never read back.
    pub auth_token: Option<String>,
    pub connect_timeout_ms: u32,
    pub idle_timeout_ms: u32,
    pub keep_alive_ms: u32,
    pub moq_version: String,
    pub reconnect: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            url: None,
            broadcast: None,
            tls_disable_verify: DEFAULT_TLS_DISABLE_VERIFY,
            tls_root_cert: None,
            tls_fingerprint: None,
            auth_token: None,
            connect_timeout_ms: DEFAULT_CONNECT_TIMEOUT_MS,
            idle_timeout_ms: DEFAULT_IDLE_TIMEOUT_MS,
            keep_alive_ms: DEFAULT_KEEP_ALIVE_MS,
            moq_version: DEFAULT_MOQ_VERSION.to_string(),
            reconnect: true,
        }
    }
}

/// The versions to offer for a `moq-version` value: `auto` (all), `lite` or
/// `ietf` (a family), or one version by name (`moq-lite-05`, `moq-transport-14`).
pub fn parse_versions(value: &str) -> Result<Vec<moq_net::Version>, String> {
    let value = value.trim();
    let family = |prefix: &str| {
        moq_net::Version::names()
            .filter(|name| name.starts_with(prefix))
            .filter_map(|name| name.parse().ok())
            .collect::<Vec<moq_net::Version>>()
    };
    match value {
        "" | "auto" => Ok(Vec::new()),
        "lite" | "moq-lite" => Ok(family("moq-lite-")),
        "ietf" | "moq-transport" => Ok(family("moq-transport-")),
        name => name.parse().map(|v| vec![v]).map_err(|_| {
            format!(
                "unknown moq-version '{name}': use auto, lite, ietf or one of {}",
                moq_net::Version::names().collect::<Vec<_>>().join(", ")
            )
        }),
    }
}

/// Validated settings: what a session is started from.
#[derive(Clone)]
pub struct Target {
    /// The relay URL as dialed: with the auth token in its query, so only ever
    /// shown through `display_url`.
    pub url: url::Url,
    pub broadcast: String,
    pub tls_disable_verify: bool,
    pub tls_root_cert: Option<std::path::PathBuf>,
    pub tls_fingerprint: Option<String>,
    pub connect_timeout: Duration,
    /// Silence after which the relay counts as gone (QUIC idle timeout).
    pub idle_timeout: Duration,
    /// Interval of keep-alive pings; zero sends none.
    pub keep_alive: Duration,
    /// Whether losing the relay is survived (redial) or an error.
    pub reconnect: bool,
    /// Wire versions to offer; empty offers all.
    pub versions: Vec<moq_net::Version>,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("url", &self.display_url())
            .field("broadcast", &self.broadcast)
            .field("tls_disable_verify", &self.tls_disable_verify)
            .field("tls_root_cert", &self.tls_root_cert)
            .field("connect_timeout", &self.connect_timeout)
            .field("idle_timeout", &self.idle_timeout)
            .field("keep_alive", &self.keep_alive)
            .finish_non_exhaustive()
    }
}

impl Target {
    /// The URL without its query string (which may carry a token), for logs
    /// and messages.
    pub fn display_url(&self) -> String {
        display_url(&self.url)
    }
}

/// A URL as it may appear in logs and messages: query and credentials removed.
pub fn display_url(url: &url::Url) -> String {
    let mut shown = url.clone();
    shown.set_query(None);
    shown.set_fragment(None);
    let _ = shown.set_password(None);
    let _ = shown.set_username("");
    shown.to_string()
}

impl Settings {
    /// Check the properties before anything is started, so a mistake is an
    /// error message that names it rather than a connection that never comes.
    pub fn validate(&self) -> Result<Target, gst::ErrorMessage> {
        let mut url = self.relay_url()?;
        let broadcast = self.broadcast.as_deref().unwrap_or("").trim();
        if broadcast.is_empty() {
            return Err(gst::error_msg!(
                gst::ResourceError::Settings,
                ("The 'broadcast' property is not set")
            ));
        }
        let (tls_root_cert, tls_fingerprint) = self.tls_trust()?;
        self.check_timing()?;
        let versions = parse_versions(&self.moq_version)
            .map_err(|err| gst::error_msg!(gst::ResourceError::Settings, ("{}", err)))?;
        if let Some(token) = self.auth_token.as_deref().filter(|t| !t.is_empty()) {
            // moq-relay reads the JWT from the `jwt` query parameter.
            url.query_pairs_mut().append_pair("jwt", token);
        }
        Ok(Target {
            url,
            broadcast: broadcast.to_string(),
            tls_disable_verify: self.tls_disable_verify,
            tls_root_cert,
            tls_fingerprint,
            connect_timeout: Duration::from_millis(self.connect_timeout_ms.into()),
            idle_timeout: Duration::from_millis(self.idle_timeout_ms.into()),
            keep_alive: Duration::from_millis(self.keep_alive_ms.into()),
            reconnect: self.reconnect,
            versions,
        })
    }

    /// The `url` property parsed, with a scheme we dial and a host.
    fn relay_url(&self) -> Result<url::Url, gst::ErrorMessage> {
        let raw = self.url.as_deref().unwrap_or("").trim();
        if raw.is_empty() {
            return Err(gst::error_msg!(
                gst::ResourceError::Settings,
                ("The 'url' property is not set: name the relay, e.g. https://localhost:4443/anon")
            ));
        }
        let url = url::Url::parse(raw).map_err(|err| {
            gst::error_msg!(
                gst::ResourceError::Settings,
                ("Invalid relay URL '{}': {}", raw, err)
            )
        })?;
        if !SCHEMES.contains(&url.scheme()) {
            return Err(gst::error_msg!(
                gst::ResourceError::Settings,
                (
                    "Unsupported URL scheme '{}' in '{}': use one of {}",
                    url.scheme(),
                    display_url(&url),
                    SCHEMES.join(", ")
                )
            ));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(gst::error_msg!(
                gst::ResourceError::Settings,
                ("Relay URL '{}' has no host", display_url(&url))
            ));
        }
        Ok(url)
    }

    /// The certificate or fingerprint to trust instead of the system's roots,
    /// checked to be usable before anything is dialed.
    fn tls_trust(&self) -> Result<(Option<std::path::PathBuf>, Option<String>), gst::ErrorMessage> {
        let tls_root_cert = self
            .tls_root_cert
            .as_deref()
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(std::path::PathBuf::from);
        if let Some(path) = &tls_root_cert
            && !path.is_file()
        {
            return Err(gst::error_msg!(
                gst::ResourceError::Settings,
                ("tls-root-cert '{}' is not a readable file", path.display())
            ));
        }
        let tls_fingerprint = self
            .tls_fingerprint
            .as_deref()
            .map(str::trim)
            .filter(|f| !f.is_empty())
            .map(str::to_string);
        if let Some(fp) = &tls_fingerprint
            && moq_tokio::tls::parse_fingerprint(fp).is_err()
        {
            return Err(gst::error_msg!(
                gst::ResourceError::Settings,
                ("tls-fingerprint '{}' is not a hex SHA-256 fingerprint", fp)
            ));
        }
        Ok((tls_root_cert, tls_fingerprint))
    }

    /// Timeouts that can notice a dead relay, and pings that keep a live
    /// one from looking dead.
    fn check_timing(&self) -> Result<(), gst::ErrorMessage> {
        if self.idle_timeout_ms == 0 {
            return Err(gst::error_msg!(
                gst::ResourceError::Settings,
                ("idle-timeout must be above 0 ms: a dead relay would never be noticed")
            ));
        }
        if self.keep_alive_ms >= self.idle_timeout_ms {
            return Err(gst::error_msg!(
                gst::ResourceError::Settings,
                (
                    "keep-alive ({} ms) must be shorter than idle-timeout ({} ms), or a quiet \
                     connection is dropped between pings",
                    self.keep_alive_ms,
                    self.idle_timeout_ms
                )
            ));
        }
        Ok(())
    }
}

/// The property specs both elements share, with the same names and defaults.
pub fn properties() -> Vec<glib::ParamSpec> {
    let mut specs = relay_properties();
    specs.extend(trust_properties());
    specs.extend(timing_properties());
    specs
}

/// What to reach and how to speak to it.
fn relay_properties() -> Vec<glib::ParamSpec> {
    vec![
        glib::ParamSpecString::builder("url")
            .nick("Relay URL")
            .blurb(
                "URL of the MoQ relay, e.g. https://relay.example:4443/anon \
                 (http:// fetches and pins the relay's self-signed certificate)",
            )
            .mutable_ready()
            .build(),
        glib::ParamSpecString::builder("broadcast")
            .nick("Broadcast")
            .blurb("Name of the broadcast, relative to the URL's path")
            .mutable_ready()
            .build(),
        glib::ParamSpecString::builder("moq-version")
            .nick("MoQ version")
            .blurb(
                "Wire protocol to offer: auto (every version), lite, ietf, or one version \
                 such as moq-lite-05 or moq-transport-14",
            )
            .default_value(Some(DEFAULT_MOQ_VERSION))
            .mutable_ready()
            .build(),
        glib::ParamSpecEnum::builder::<Status>("status")
            .nick("Connection status")
            .blurb("Where the connection to the relay stands")
            .read_only()
            .build(),
    ]
}

/// Whom to trust and what to show: TLS and the relay's token.
fn trust_properties() -> Vec<glib::ParamSpec> {
    vec![
        glib::ParamSpecBoolean::builder("tls-disable-verify")
            .nick("Disable TLS verification")
            .blurb(
                "Accept any server certificate. Only for local relays with \
                 self-signed certificates: it makes the connection insecure",
            )
            .default_value(DEFAULT_TLS_DISABLE_VERIFY)
            .mutable_ready()
            .build(),
        glib::ParamSpecString::builder("tls-root-cert")
            .nick("TLS root certificate")
            .blurb("PEM file with the CA certificate(s) to trust for the relay (private CAs); the system roots are used otherwise")
            .mutable_ready()
            .build(),
        glib::ParamSpecString::builder("tls-fingerprint")
            .nick("TLS certificate fingerprint")
            .blurb(
                "Hex SHA-256 fingerprint of the relay's certificate to trust instead of a CA \
                 (what moq-relay serves at /certificate.sha256)",
            )
            .mutable_ready()
            .build(),
        glib::ParamSpecString::builder("auth-token")
            .nick("Auth token")
            .blurb(
                "JWT sent to the relay (as moq-relay expects, in the URL's jwt parameter); \
                 write-only, never logged",
            )
            .write_only()
            .mutable_ready()
            .build(),
    ]
}

/// How long to wait, how to notice a dead relay, whether to come back.
fn timing_properties() -> Vec<glib::ParamSpec> {
    vec![
        glib::ParamSpecUInt::builder("connect-timeout")
            .nick("Connect timeout")
            .blurb(
                "Milliseconds to keep trying to reach the relay (and to reconnect \
                 after it went away) before failing with an error; 0 retries forever",
            )
            .default_value(DEFAULT_CONNECT_TIMEOUT_MS)
            .mutable_ready()
            .build(),
        glib::ParamSpecUInt::builder("idle-timeout")
            .nick("Idle timeout")
            .blurb(
                "Milliseconds without a packet from the relay after which it counts as gone \
                 and redialing starts (the QUIC idle timeout)",
            )
            .minimum(1)
            .default_value(DEFAULT_IDLE_TIMEOUT_MS)
            .mutable_ready()
            .build(),
        glib::ParamSpecUInt::builder("keep-alive")
            .nick("Keep-alive interval")
            .blurb(
                "Milliseconds between QUIC keep-alive pings, which keep a quiet connection \
                 from reaching idle-timeout; 0 sends none. Must be below idle-timeout",
            )
            .default_value(DEFAULT_KEEP_ALIVE_MS)
            .mutable_ready()
            .build(),
        glib::ParamSpecBoolean::builder("reconnect")
            .nick("Reconnect")
            .blurb(
                "Survive losing the relay: redial it (see connect-timeout) and carry on \
                 (moqsrc subscribes again, on the same pads). Off: losing the relay is an error",
            )
            .default_value(true)
            .mutable_ready()
            .build(),
    ]
}

/// Set one of the shared properties; returns false if `pspec` is not one of them.
pub fn set_property(settings: &mut Settings, value: &glib::Value, pspec: &glib::ParamSpec) -> bool {
    match pspec.name() {
        "url" => settings.url = value.get().unwrap_or_default(),
        "broadcast" => settings.broadcast = value.get().unwrap_or_default(),
        "tls-disable-verify" => settings.tls_disable_verify = value.get().unwrap_or_default(),
        "tls-root-cert" => settings.tls_root_cert = value.get().unwrap_or_default(),
        "tls-fingerprint" => settings.tls_fingerprint = value.get().unwrap_or_default(),
        "auth-token" => settings.auth_token = value.get().unwrap_or_default(),
        "moq-version" => {
            settings.moq_version = value
                .get::<Option<String>>()
                .ok()
                .flatten()
                .unwrap_or_else(|| DEFAULT_MOQ_VERSION.to_string());
        }
        "connect-timeout" => {
            settings.connect_timeout_ms = value.get().unwrap_or(DEFAULT_CONNECT_TIMEOUT_MS);
        }
        "idle-timeout" => settings.idle_timeout_ms = value.get().unwrap_or(DEFAULT_IDLE_TIMEOUT_MS),
        "keep-alive" => settings.keep_alive_ms = value.get().unwrap_or(DEFAULT_KEEP_ALIVE_MS),
        "reconnect" => settings.reconnect = value.get().unwrap_or(true),
        _ => return false,
    }
    true
}

/// Read one of the shared properties; `None` if `pspec` is not one of them.
pub fn property(settings: &Settings, pspec: &glib::ParamSpec) -> Option<glib::Value> {
    Some(match pspec.name() {
        "url" => settings.url.to_value(),
        "broadcast" => settings.broadcast.to_value(),
        "tls-disable-verify" => settings.tls_disable_verify.to_value(),
        "tls-root-cert" => settings.tls_root_cert.to_value(),
        "tls-fingerprint" => settings.tls_fingerprint.to_value(),
        // Write-only: the token is never handed back.
        "auth-token" => None::<String>.to_value(),
        "moq-version" => settings.moq_version.to_value(),
        "connect-timeout" => settings.connect_timeout_ms.to_value(),
        "idle-timeout" => settings.idle_timeout_ms.to_value(),
        "keep-alive" => settings.keep_alive_ms.to_value(),
        "reconnect" => settings.reconnect.to_value(),
        _ => return None,
    })
}

/// An origin whose cache forgets groups nobody touched for `keep` (wall
/// clock). moq-net's default keeps them 30 s, and every holder of a track
/// (publisher, relay, each subscriber) keeps its own copy: for a live
/// stream that is tens of megabytes per element, all of it stale.
pub fn spawn_origin(keep: Duration) -> moq_net::origin::Producer {
    let mut config = moq_net::origin::Config::default();
    config.pool = moq_net::cache::Pool::new(moq_net::cache::Config::default().with_expiry(keep));
    moq_tokio::origin::spawn_config(config)
}

/// Which way the media flows over the connection.
pub enum Role {
    /// Announce and serve the broadcasts of this origin.
    Publish(moq_net::origin::Consumer),
    /// Receive announcements and broadcasts into this origin.
    Subscribe(moq_net::origin::Producer),
}

/// Start dialing the relay. The returned connection redials by itself when the
/// relay goes away, until `connect_timeout` passes without success; then its
/// `closed()` resolves with the reason.
pub fn connect(target: &Target, role: Role) -> Result<moq_tokio::Connection, gst::ErrorMessage> {
    let _guard = RUNTIME.enter();
    let mut config = moq_tokio::connect::Config::default();
    config.tls.insecure = Some(target.tls_disable_verify);
    config.tls.root = target.tls_root_cert.iter().cloned().collect();
    config.tls.fingerprint = target.tls_fingerprint.iter().cloned().collect();
    config.backoff.timeout = target.connect_timeout;
    config.backoff.initial = REDIAL_FIRST;
    config.backoff.max = REDIAL_MAX;
    config.version = target.versions.clone();
    let mut quic = moq_tokio::quic::Config::default();
    quic.idle_timeout = target.idle_timeout;
    quic.keep_alive = target.keep_alive;
    let client = config.init(quic).map_err(|err| {
        gst::error_msg!(
            gst::ResourceError::Settings,
            (
                "Cannot set up a MoQ client for {}: {}",
                target.display_url(),
                err
            )
        )
    })?;
    let client = match role {
        Role::Publish(origin) => client.with_publisher(origin),
        Role::Subscribe(origin) => client.with_subscriber(origin),
    };
    Ok(client.connect(target.url.clone()))
}

/// Where a connection stands, as the read-only `status` property shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, glib::Enum)]
#[repr(i32)]
#[enum_type(name = "GstMoqConnectionStatus")]
pub enum Status {
    #[default]
    #[enum_value(name = "Not started", nick = "idle")]
    Idle = 0,
    #[enum_value(name = "Connecting to the relay", nick = "connecting")]
    Connecting = 1,
    #[enum_value(name = "Connected to the relay", nick = "connected")]
    Connected = 2,
    #[enum_value(name = "Lost the relay, reconnecting", nick = "reconnecting")]
    Reconnecting = 3,
    #[enum_value(name = "Gave up (see the error message)", nick = "failed")]
    Failed = 4,
}

/// The status of an element's connection, shared with its session task.
#[derive(Default)]
pub struct StatusCell {
    status: AtomicI32,
    /// Times the connection came back after it was lost.
    reconnects: AtomicU64,
    /// Woken each time the connection is (re)established.
    connected: tokio::sync::Notify,
    /// Watches the live session (without keeping the connection alive).
    monitor: std::sync::Mutex<Option<moq_tokio::connection::Monitor>>,
}

impl StatusCell {
    fn snapshot(&self) -> Option<moq_tokio::connection::Snapshot> {
        self.monitor
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_ref()
            .and_then(moq_tokio::connection::Monitor::snapshot)
    }

    /// The wire version of the live session, if connected.
    pub fn version(&self) -> Option<&'static str> {
        self.snapshot().map(|s| s.version.as_str())
    }

    /// Round-trip time to the relay, if connected and measured.
    pub fn rtt(&self) -> Option<Duration> {
        self.snapshot().and_then(|s| s.stats.rtt)
    }

    /// The relay's estimate of what it can send us (moq-lite's PROBE), if
    /// connected and a reader asked for it.
    pub fn recv_rate(&self) -> Option<moq_net::bandwidth::Rate> {
        self.snapshot().and_then(|s| s.stats.estimated_recv_rate)
    }

    /// Bytes sent over the live connection (QUIC: headers, retransmissions
    /// and all), if connected.
    pub fn bytes_sent(&self) -> Option<u64> {
        self.snapshot().and_then(|s| s.stats.bytes_sent)
    }

    /// Times the connection was lost and established again.
    pub fn reconnects(&self) -> u64 {
        self.reconnects.load(Ordering::Relaxed)
    }

    pub fn get(&self) -> Status {
        match self.status.load(Ordering::SeqCst) {
            1 => Status::Connecting,
            2 => Status::Connected,
            3 => Status::Reconnecting,
            4 => Status::Failed,
            _ => Status::Idle,
        }
    }

    pub fn set(&self, status: Status) {
        self.status.store(status as i32, Ordering::SeqCst);
        match status {
            Status::Idle => {
                *self
                    .monitor
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = None
            }
            Status::Connected => self.connected.notify_waiters(),
            _ => {}
        }
    }

    /// Resolves once the connection is up (at once if it is now).
    pub async fn wait_connected(&self) {
        loop {
            // Created before the check: a wake-up between the two is kept.
            let woken = self.connected.notified();
            if self.get() == Status::Connected {
                return;
            }
            woken.await;
        }
    }
}

/// Follow the connection until it gives up, keeping `status` current and
/// notifying the element's `status` property; returns why it gave up, or
/// `None` when it was lost and `reconnect` is off.
pub async fn monitor<E: IsA<gst::Element>>(
    mut connection: moq_tokio::Connection,
    status: Arc<StatusCell>,
    element: glib::WeakRef<E>,
    cat: gst::DebugCategory,
    target: Target,
) -> Option<moq_tokio::Error> {
    status.set(Status::Connecting);
    let mut was_connected = false;
    *status
        .monitor
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(connection.monitor());
    loop {
        let (next, err) = match connection.status().await {
            Ok(moq_tokio::connection::Status::Connected) => (Status::Connected, None),
            Ok(_) => (Status::Reconnecting, None),
            Err(err) => (Status::Failed, Some(err)),
        };
        status.set(next);
        if let Some(obj) = element.upgrade() {
            match next {
                Status::Connected => {
                    gst::info!(cat, obj = obj, "connected to {}", target.display_url());
                }
                Status::Reconnecting => {
                    gst::warning!(
                        cat,
                        obj = obj,
                        "lost {}, reconnecting",
                        target.display_url()
                    );
                }
                _ => {}
            }
            obj.notify("status");
        }
        if let Some(err) = err {
            return Some(err);
        }
        if next == Status::Connected {
            if was_connected {
                status.reconnects.fetch_add(1, Ordering::Relaxed);
            }
            was_connected = true;
        } else if was_connected && !target.reconnect {
            return None;
        }
    }
}

/// The error message for a connection lost while `reconnect` is off.
pub fn lost_message(target: &Target, write: bool) -> gst::ErrorMessage {
    let text = format!(
        "Lost the connection to MoQ relay {} (reconnect is off)",
        target.display_url()
    );
    if write {
        gst::error_msg!(gst::ResourceError::Write, ("{}", text))
    } else {
        gst::error_msg!(gst::ResourceError::Read, ("{}", text))
    }
}

/// Why a connection gave up, naming the relay and the cause, with a hint
/// for the causes users meet most.
pub fn failure_text(target: &Target, err: &moq_tokio::Error) -> String {
    let cause = err.to_string();
    let hint = if cause.contains("certificate") {
        " (for a local relay with a self-signed certificate set tls-disable-verify=true, or use an http:// URL to pin it)"
    } else if cause.contains("unauthorized") || cause.contains("forbidden") {
        " (the relay refused this URL path: check the path and the token)"
    } else {
        ""
    };
    format!(
        "Connection to MoQ relay {} failed: {cause}{hint}",
        target.display_url()
    )
}

/// The error message for a connection that gave up, naming the relay and cause.
pub fn failure_message(target: &Target, err: &moq_tokio::Error, write: bool) -> gst::ErrorMessage {
    let text = failure_text(target, err);
    if write {
        gst::error_msg!(gst::ResourceError::OpenWrite, ("{}", text))
    } else {
        gst::error_msg!(gst::ResourceError::OpenRead, ("{}", text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(url: &str, broadcast: &str) -> Settings {
        Settings {
            url: Some(url.into()),
            broadcast: Some(broadcast.into()),
            ..Default::default()
        }
    }

    #[test]
    fn accepts_relay_urls() {
        gst::init().unwrap();
        let target = settings("https://localhost:4443/anon", "cam")
            .validate()
            .unwrap();
        assert_eq!(target.broadcast, "cam");
        assert_eq!(target.connect_timeout, Duration::from_secs(10));
        assert!(settings("http://127.0.0.1:1/anon", "x").validate().is_ok());
    }

    #[test]
    fn refuses_bad_urls_with_a_reason() {
        gst::init().unwrap();
        for (url, needle) in [
            ("", "not set"),
            ("not a url", "Invalid relay URL"),
            ("ftp://relay/anon", "Unsupported URL scheme 'ftp'"),
            ("https://", "Invalid relay URL"),
        ] {
            let err = settings(url, "cam").validate().unwrap_err();
            let text = format!("{err:?}");
            assert!(text.contains(needle), "{url}: {text}");
        }
        let err = settings("https://localhost/anon", "")
            .validate()
            .unwrap_err();
        assert!(format!("{err:?}").contains("broadcast"));
    }

    #[test]
    fn auth_token_goes_in_the_url_and_never_in_logs() {
        gst::init().unwrap();
        let mut s = settings("https://relay:4443/anon", "cam");
        s.auth_token = Some("secret.jwt.token".into());
        let target = s.validate().unwrap();
        assert_eq!(target.url.query(), Some("jwt=secret.jwt.token"));
        assert!(!target.display_url().contains("secret"));
        assert!(!format!("{target:?}").contains("secret"));
    }

    #[test]
    fn tls_options_are_checked() {
        gst::init().unwrap();
        let mut s = settings("https://relay:4443/anon", "cam");
        s.tls_root_cert = Some("/nonexistent/ca.pem".into());
        assert!(format!("{:?}", s.validate().unwrap_err()).contains("tls-root-cert"));
        let mut s = settings("https://relay:4443/anon", "cam");
        s.tls_fingerprint = Some("zz".into());
        assert!(format!("{:?}", s.validate().unwrap_err()).contains("tls-fingerprint"));
        s.tls_fingerprint = Some("ab".repeat(32));
        assert!(s.validate().is_ok());
    }

    #[test]
    fn moq_versions() {
        assert!(parse_versions("auto").unwrap().is_empty());
        assert_eq!(parse_versions("moq-transport-14").unwrap().len(), 1);
        let ietf = parse_versions("ietf").unwrap();
        assert!(
            ietf.len() > 1
                && ietf
                    .iter()
                    .all(|v| v.to_string().starts_with("moq-transport-"))
        );
        assert!(
            parse_versions("lite")
                .unwrap()
                .iter()
                .all(|v| v.to_string().starts_with("moq-lite-"))
        );
        assert!(
            parse_versions("moq-9")
                .unwrap_err()
                .contains("moq-transport-14")
        );
    }

    #[test]
    fn display_url_hides_query_and_credentials() {
        let url = url::Url::parse("https://user:pw@relay:4443/anon?jwt=secret#x").unwrap();
        assert_eq!(display_url(&url), "https://relay:4443/anon");
    }
}
