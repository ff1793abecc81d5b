// SPDX-License-Identifier: MIT OR Apache-2.0

//! Everything about reaching a relay that both elements share: the connection
//! properties, URL validation, and dialing through `moq-tokio`.

use std::time::Duration;

use gst::glib;
use gst::prelude::*;

use crate::runtime::RUNTIME;

pub const DEFAULT_TLS_DISABLE_VERIFY: bool = false;
/// How long to keep trying to reach the relay before giving up with an error.
pub const DEFAULT_CONNECT_TIMEOUT_MS: u32 = 10_000;

/// URL schemes the MoQ client can dial without extra features.
const SCHEMES: &[&str] = &["https", "http", "moqt", "moql", "wss", "ws"];

/// The connection properties of an element, as the user set them.
#[derive(Debug, Clone)]
pub struct Settings {
    pub url: Option<String>,
    pub broadcast: Option<String>,
    pub tls_disable_verify: bool,
    pub connect_timeout_ms: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            url: None,
            broadcast: None,
            tls_disable_verify: DEFAULT_TLS_DISABLE_VERIFY,
            connect_timeout_ms: DEFAULT_CONNECT_TIMEOUT_MS,
        }
    }
}

/// Validated settings: what a session is started from.
#[derive(Debug, Clone)]
pub struct Target {
    pub url: url::Url,
    pub broadcast: String,
    pub tls_disable_verify: bool,
    pub connect_timeout: Duration,
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
        let broadcast = self.broadcast.as_deref().unwrap_or("").trim();
        if broadcast.is_empty() {
            return Err(gst::error_msg!(
                gst::ResourceError::Settings,
                ("The 'broadcast' property is not set")
            ));
        }
        Ok(Target {
            url,
            broadcast: broadcast.to_string(),
            tls_disable_verify: self.tls_disable_verify,
            connect_timeout: Duration::from_millis(self.connect_timeout_ms.into()),
        })
    }
}

/// The property specs both elements share, with the same names and defaults.
pub fn properties() -> Vec<glib::ParamSpec> {
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
        glib::ParamSpecBoolean::builder("tls-disable-verify")
            .nick("Disable TLS verification")
            .blurb(
                "Accept any server certificate. Only for local relays with \
                 self-signed certificates: it makes the connection insecure",
            )
            .default_value(DEFAULT_TLS_DISABLE_VERIFY)
            .mutable_ready()
            .build(),
        glib::ParamSpecUInt::builder("connect-timeout")
            .nick("Connect timeout")
            .blurb(
                "Milliseconds to keep trying to reach the relay (and to reconnect \
                 after it went away) before failing with an error; 0 retries forever",
            )
            .default_value(DEFAULT_CONNECT_TIMEOUT_MS)
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
        "connect-timeout" => {
            settings.connect_timeout_ms = value.get().unwrap_or(DEFAULT_CONNECT_TIMEOUT_MS)
        }
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
        "connect-timeout" => settings.connect_timeout_ms.to_value(),
        _ => return None,
    })
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
    config.backoff.timeout = target.connect_timeout;
    let client = config
        .init(moq_tokio::quic::Config::default())
        .map_err(|err| {
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

/// The error message for a connection that gave up, naming the relay and cause.
pub fn failure_message(target: &Target, err: &moq_tokio::Error, write: bool) -> gst::ErrorMessage {
    let cause = err.to_string();
    let hint = if cause.contains("certificate") {
        " (for a local relay with a self-signed certificate set tls-disable-verify=true, or use an http:// URL to pin it)"
    } else if cause.contains("unauthorized") || cause.contains("forbidden") {
        " (the relay refused this URL path: check the path and the token)"
    } else {
        ""
    };
    let text = format!(
        "Connection to MoQ relay {} failed: {cause}{hint}",
        target.display_url()
    );
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
    fn display_url_hides_query_and_credentials() {
        let url = url::Url::parse("https://user:pw@relay:4443/anon?jwt=secret#x").unwrap();
        assert_eq!(display_url(&url), "https://relay:4443/anon");
    }
}
