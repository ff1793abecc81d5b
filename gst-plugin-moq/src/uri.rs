// SPDX-License-Identifier: MIT OR Apache-2.0

//! MoQ URIs, for GstURIHandler: the relay URL and the broadcast in one
//! string, so that `playbin`, `gst-play-1.0`, `uridecodebin3` and every
//! application that takes a URI can play (or publish) a broadcast.
//!
//! `moq+https://relay.example/anon/cam` is the relay `https://relay.example/anon`
//! and the broadcast `cam`: the last path segment (percent-decoded). A name
//! with slashes goes in the query instead, `moq+https://relay.example/anon?broadcast=team/cam`,
//! and then the whole path is the relay's. Other query parameters (such as
//! moq-relay's `jwt`) stay on the relay URL.
//!
//! The scheme says how to connect, one per scheme `connection` dials:
//! `moq+https` (WebTransport, verified TLS), `moq+http` (fetch and pin the
//! relay's certificate: local relays), `moq+wss` / `moq+ws` (WebSocket),
//! `moqt` and `moql` (raw QUIC).

use gst::prelude::*;

/// URI scheme <-> relay URL scheme. The plain web schemes are left to the
/// elements that own them (`souphttpsrc`, ...), hence the `moq+` prefix.
const SCHEMES: &[(&str, &str)] = &[
    ("moq+https", "https"),
    ("moq+http", "http"),
    ("moq+wss", "wss"),
    ("moq+ws", "ws"),
    ("moqt", "moqt"),
    ("moql", "moql"),
];

/// The query parameter that names the broadcast outright.
const BROADCAST_PARAM: &str = "broadcast";

/// The URI schemes both elements answer to.
pub const PROTOCOLS: &[&str] = &["moq+https", "moq+http", "moq+wss", "moq+ws", "moqt", "moql"];

/// What a URI stands for: the `url` and `broadcast` properties.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub url: String,
    pub broadcast: String,
}

impl Location {
    /// Put it into an element's connection settings.
    pub fn apply(self, settings: &mut crate::connection::Settings) {
        settings.url = Some(self.url);
        settings.broadcast = Some(self.broadcast);
    }
}

/// GstURIHandler's `set_uri` for either element: the URI parsed, or the
/// error GStreamer expects (a started element keeps its broadcast; the
/// properties are not mutable then either).
pub fn location(element: &gst::Element, uri: &str) -> Result<Location, gst::glib::Error> {
    if element.current_state() > gst::State::Ready {
        return Err(gst::glib::Error::new(
            gst::URIError::BadState,
            "the URI can only be changed in the NULL or READY state",
        ));
    }
    parse(uri).map_err(|err| gst::glib::Error::new(gst::URIError::BadUri, &err))
}

/// GstURIHandler's `uri` for either element: None until both the relay URL
/// and the broadcast are set.
pub fn of(settings: &crate::connection::Settings) -> Option<String> {
    build(settings.url.as_deref()?, settings.broadcast.as_deref()?)
}

/// Split a MoQ URI into the relay URL and the broadcast.
pub fn parse(uri: &str) -> Result<Location, String> {
    let parsed =
        url::Url::parse(uri.trim()).map_err(|err| format!("invalid URI '{uri}': {err}"))?;
    let Some(&(_, relay_scheme)) = SCHEMES.iter().find(|(s, _)| *s == parsed.scheme()) else {
        return Err(format!(
            "unsupported scheme '{}': use one of {}",
            parsed.scheme(),
            PROTOCOLS.join(", ")
        ));
    };
    let Some(host) = parsed.host().filter(|h| !h.to_string().is_empty()) else {
        return Err(format!("URI '{uri}' has no relay host"));
    };

    let named = parsed
        .query_pairs()
        .find(|(key, _)| key == BROADCAST_PARAM)
        .map(|(_, value)| value.into_owned());
    let mut segments: Vec<&str> = parsed
        .path_segments()
        .map(|s| s.filter(|seg| !seg.is_empty()).collect())
        .unwrap_or_default();
    let broadcast = match named {
        Some(name) => name,
        None => match segments.pop() {
            Some(last) => percent_decode(last)?,
            None => String::new(),
        },
    };
    if broadcast.trim().is_empty() {
        return Err(format!(
            "URI '{uri}' names no broadcast: end its path with one (.../anon/cam) or add ?broadcast=NAME"
        ));
    }

    let mut url = format!("{relay_scheme}://{host}");
    if let Some(port) = parsed.port() {
        url.push_str(&format!(":{port}"));
    }
    url.push('/');
    url.push_str(&segments.join("/"));
    let rest: Vec<(String, String)> = parsed
        .query_pairs()
        .filter(|(key, _)| key != BROADCAST_PARAM)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    if !rest.is_empty() {
        let query = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(rest)
            .finish();
        url.push('?');
        url.push_str(&query);
    }
    Ok(Location { url, broadcast })
}

/// The URI of a relay URL and broadcast: what `parse` turns back into them.
/// None when the URL is not one the elements dial.
pub fn build(url: &str, broadcast: &str) -> Option<String> {
    let relay = url::Url::parse(url.trim()).ok()?;
    let &(uri_scheme, _) = SCHEMES.iter().find(|(_, s)| *s == relay.scheme())?;
    // Special (https) and non-special (moq+https) schemes cannot be swapped
    // in place, so the URI is parsed anew from the relay URL's text.
    let rest = &relay.as_str()[relay.scheme().len()..];
    let mut uri = url::Url::parse(&format!("{uri_scheme}{rest}")).ok()?;
    let broadcast = broadcast.trim();
    if broadcast.is_empty() {
        return None;
    }
    if broadcast.contains('/') {
        uri.query_pairs_mut()
            .append_pair(BROADCAST_PARAM, broadcast);
    } else {
        uri.path_segments_mut().ok()?.pop_if_empty().push(broadcast);
    }
    Some(uri.into())
}

fn percent_decode(segment: &str) -> Result<String, String> {
    percent_encoding::percent_decode_str(segment)
        .decode_utf8()
        .map(|name| name.into_owned())
        .map_err(|_| format!("the broadcast '{segment}' is not UTF-8 once decoded"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn location(url: &str, broadcast: &str) -> Location {
        Location {
            url: url.into(),
            broadcast: broadcast.into(),
        }
    }

    #[test]
    fn last_segment_is_the_broadcast() {
        assert_eq!(
            parse("moq+https://relay.example/anon/cam").unwrap(),
            location("https://relay.example/anon", "cam")
        );
        assert_eq!(
            parse("moq+http://127.0.0.1:4443/anon/demo/").unwrap(),
            location("http://127.0.0.1:4443/anon", "demo")
        );
        assert_eq!(
            parse("moqt://relay.example:443/cam").unwrap(),
            location("moqt://relay.example:443/", "cam")
        );
        assert_eq!(
            parse("moql://[::1]:4443/anon/cam").unwrap(),
            location("moql://[::1]:4443/anon", "cam")
        );
        assert_eq!(
            parse("moq+wss://relay.example/a/b/room%201").unwrap(),
            location("wss://relay.example/a/b", "room 1")
        );
    }

    #[test]
    fn query_names_a_broadcast_with_slashes() {
        assert_eq!(
            parse("moq+https://relay.example/anon?broadcast=team/cam&jwt=abc").unwrap(),
            location("https://relay.example/anon?jwt=abc", "team/cam")
        );
        assert_eq!(
            parse("moq+https://relay.example/anon/cam?jwt=abc").unwrap(),
            location("https://relay.example/anon?jwt=abc", "cam")
        );
    }

    #[test]
    fn refuses_what_it_cannot_dial() {
        for bad in [
            "https://relay.example/anon/cam",
            "moq+https://relay.example",
            "moq+https://relay.example/",
            "moq+https://relay.example/anon?broadcast=",
            "moq+https:///anon/cam",
            "not a uri",
        ] {
            assert!(parse(bad).is_err(), "{bad} parsed");
        }
    }

    #[test]
    fn build_is_the_inverse_of_parse() {
        for (url, broadcast) in [
            ("https://relay.example/anon", "cam"),
            ("http://127.0.0.1:4443/anon", "demo"),
            ("wss://relay.example/a/b", "room 1"),
            ("moqt://relay.example:443/", "cam"),
            ("https://relay.example/anon", "team/cam"),
            ("https://relay.example/anon?jwt=abc", "cam"),
        ] {
            let uri = build(url, broadcast).unwrap();
            assert_eq!(parse(&uri).unwrap(), location(url, broadcast), "{uri}");
        }
        assert_eq!(
            build("https://relay.example:4443/anon", "cam").as_deref(),
            Some("moq+https://relay.example:4443/anon/cam")
        );
        assert_eq!(build("ftp://relay.example/anon", "cam"), None);
        assert_eq!(build("https://relay.example/anon", ""), None);
    }
}
