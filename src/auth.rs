// SPDX-License-Identifier: MIT OR Apache-2.0

//! Who may publish and watch what through the gateway, with moq-relay's own
//! tokens and rules, for both ways in.
//!
//! - WHIP and WHEP carry `Authorization: Bearer <jwt>` (RFC 9725); moqsink,
//!   moqsrc and other MoQ clients put the same JWT in the relay URL's `jwt`
//!   query (their `auth-token`). Both are decided by
//!   [`moq_auth::serve::Policy`], the reference policy that moq-relay's old
//!   `--auth-key` and `--auth-public` became, so a token means the same at
//!   either door and signs with the same keys (`moq auth generate`/`sign`).
//! - A WHIP/WHEP request is decided at the path the gateway dials its relay
//!   on (the relay URL's path, `/anon` by default), and its broadcast must
//!   be inside what that grants: what the relay itself decides when the
//!   gateway dials it with the caller's token. The gateway never dials with
//!   more than the caller brought: a publisher's token is handed on as it
//!   came, and a caller without one is under the public rules at the relay
//!   too. A viewer's egress dials with a token the gateway signs for
//!   exactly its broadcast, when the key can sign ([`Access::egress_token`]):
//!   viewers share egresses, and one viewer's token running out must not
//!   end the others' pictures. What a token grants still ends when it runs
//!   out: the gateway ends each session then, as the relay ends a MoQ
//!   session ([`Access::check`] says when).
//! - Tokens are never logged or repeated: a refusal says why, not what.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use anyhow::Context;
use moq_auth::serve::{Keys, Policy, Refusal};
use moq_auth::{Pattern, Patterns, Permissions, Transport};

/// What a caller asks to do with a broadcast.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Publish,
    Subscribe,
}

/// Why a request is refused: without valid credentials (HTTP 401) or with
/// credentials that do not reach this broadcast (403).
#[derive(Debug, PartialEq, Eq)]
pub enum Denied {
    Unauthenticated(String),
    Forbidden(String),
}

/// The gateway's access rules: the key tokens are checked with, and the
/// paths open to anyone. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Access {
    policy: Arc<Policy>,
}

impl Access {
    /// Tokens verified with the JWK in `key` (read again for each request,
    /// so a rotated key needs no restart), and `public` open to callers
    /// without one. Patterns are rooted at `/`, as the relay's
    /// `--auth-public`: `anon/**` opens every broadcast under `/anon`.
    pub fn new(key: Option<PathBuf>, public: Vec<Pattern>) -> anyhow::Result<Self> {
        if let Some(key) = &key {
            let loaded = moq_auth::Key::from_file(key)
                .with_context(|| format!("cannot read the auth key {}", key.display()))?;
            // A key that cannot verify would refuse every token, one by one.
            if !loaded.operations.contains(&moq_auth::KeyOperation::Verify) {
                anyhow::bail!("the auth key {} cannot verify tokens", key.display());
            }
        }
        for pattern in &public {
            // As moq-relay: `anon` without a wildcard is exactly the broadcast
            // `anon`, which someone writing it rarely means.
            if pattern.is_literal() {
                anyhow::bail!(
                    "--auth-public {pattern} has no wildcard, so it names exactly one \
                     broadcast; write {pattern}/** for everything under it"
                );
            }
        }
        let public: Patterns = public.into_iter().collect();
        let mut policy = Policy::default();
        policy.keys = key.map(Keys::File);
        policy.public = Permissions::new(public.clone(), public);
        Ok(Self {
            policy: Arc::new(policy),
        })
    }

    /// The embedded relay's rules when nobody configured any: everything
    /// under `anon/` open, no tokens.
    pub fn open() -> Self {
        Self::new(
            None,
            vec![Pattern::subtree("anon").expect("a valid pattern")],
        )
        .expect("open rules are valid")
    }

    /// Whether `token` (or none) may do `action` on `broadcast`, which the
    /// gateway reaches at `relay_path` of its relay; if so, until when (the
    /// token's expiry, none for public paths and tokens without one).
    pub async fn check(
        &self,
        relay_path: &str,
        broadcast: &str,
        action: Action,
        token: Option<&str>,
    ) -> Result<Option<SystemTime>, Denied> {
        let mut request = moq_auth::Request::new("moq-gateway", Transport::Http, relay_path);
        request.query = token.map(|token| format!("jwt={token}"));
        let grant = self.policy.decide(&request).await.map_err(denied)?;
        let (granted, verb) = match action {
            Action::Publish => (&grant.publish, "publish"),
            Action::Subscribe => (&grant.subscribe, "watch"),
        };
        if granted.matches(broadcast) {
            Ok(grant.expires)
        } else if token.is_none() {
            Err(Denied::Unauthenticated(format!(
                "'{broadcast}' is not public: {verb} it with Authorization: Bearer <token>"
            )))
        } else {
            Err(Denied::Forbidden(format!(
                "the token does not let its holder {verb} '{broadcast}'"
            )))
        }
    }

    /// A token for the gateway's own subscription to `broadcast` at
    /// `relay_path`: subscribe to that broadcast only, signed with the key
    /// (when it can sign; `None` otherwise, or without a key). It has no
    /// expiry, as the egress it serves outlives any one viewer's token, and
    /// it never leaves the gateway but for its relay.
    pub fn egress_token(&self, relay_path: &str, broadcast: &str) -> Option<String> {
        let Some(Keys::File(path)) = &self.policy.keys else {
            return None;
        };
        let key = moq_auth::Key::from_file(path).ok()?;
        if !key.operations.contains(&moq_auth::KeyOperation::Sign) {
            return None;
        }
        let claims = moq_auth::Claims::default()
            .with_root(relay_path.trim_matches('/'))
            .with_subscribe([Pattern::literal(broadcast).ok()?]);
        key.sign(&claims).ok()
    }

    /// Answers the embedded relay's admissions (its sessions from MoQ
    /// clients, the gateway's own included) with these rules, until the
    /// relay stops. Runs on the relay's runtime.
    pub fn serve_admissions(&self, mut admissions: moq_relay::auth::Admissions) {
        let policy = self.policy.clone();
        tokio::spawn(async move {
            while let Some(admission) = admissions.next().await {
                let policy = policy.clone();
                // Each on its own task: a key file read must not hold up the
                // sessions behind it.
                tokio::spawn(async move {
                    match policy.decide(&admission.request).await {
                        Ok(grant) => admission.grant(moq_auth::lease::Consumer::fixed(grant)),
                        Err(_) => admission.refuse(moq_relay::auth::Error::Refused),
                    }
                });
            }
        });
    }
}

/// A refusal of the policy as the HTTP answer: no or bad credentials are
/// 401, credentials that reach elsewhere are 403.
fn denied(refusal: Refusal) -> Denied {
    match refusal {
        Refusal::NoPublicGrant => Denied::Unauthenticated(
            "this gateway needs Authorization: Bearer <token> (a JWT from its auth key)".into(),
        ),
        Refusal::RootMismatch { .. } | Refusal::NoAccess { .. } => {
            Denied::Forbidden(format!("the token grants nothing here: {refusal}"))
        }
        Refusal::NoKeys => Denied::Unauthenticated(
            "this gateway checks no tokens (no --auth-key): leave Authorization out".into(),
        ),
        other => Denied::Unauthenticated(format!("{other}")),
    }
}

/// The bearer token of an `Authorization` header, if it carries one that
/// could be a JWT: base64url parts and dots only, since it goes on into
/// a relay URL's query (`?jwt=`), where `&` or `#` would add to it.
pub fn bearer(header: Option<&str>) -> Option<&str> {
    let (scheme, token) = header?.trim().split_once(' ')?;
    let token = token.trim();
    let jwt_like = token
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty() && jwt_like).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, SystemTime};

    struct Fixture {
        key: moq_auth::Key,
        access: Access,
        _dir: TempDir,
    }

    /// A directory removed when dropped.
    struct TempDir(PathBuf);
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn fixture(public: &[&str]) -> Fixture {
        let dir = std::env::temp_dir().join(format!(
            "moq-gateway-auth-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let key = moq_auth::Key::generate(moq_auth::Algorithm::HS256, None).unwrap();
        let path = dir.join("key.jwk");
        key.to_file(&path).unwrap();
        let public = public.iter().map(|p| p.parse().unwrap()).collect();
        let access = Access::new(Some(path), public).unwrap();
        Fixture {
            key,
            access,
            _dir: TempDir(dir),
        }
    }

    fn token(key: &moq_auth::Key, root: &str, publish: &[&str], subscribe: &[&str]) -> String {
        let claims = moq_auth::Claims::default()
            .with_root(root)
            .with_publish(publish.iter().map(|p| p.parse().unwrap()))
            .with_subscribe(subscribe.iter().map(|p| p.parse().unwrap()))
            .with_expires(SystemTime::now() + Duration::from_secs(3600));
        key.sign(&claims).unwrap()
    }

    fn check(
        access: &Access,
        broadcast: &str,
        action: Action,
        token: Option<&str>,
    ) -> Result<Option<SystemTime>, Denied> {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(access.check("/anon", broadcast, action, token))
    }

    fn status(result: Result<Option<SystemTime>, Denied>) -> u16 {
        match result {
            Ok(_) => 200,
            Err(Denied::Unauthenticated(_)) => 401,
            Err(Denied::Forbidden(_)) => 403,
        }
    }

    #[test]
    fn a_token_grants_what_it_names() {
        let f = fixture(&[]);
        let publisher = token(&f.key, "anon", &["cam"], &[]);
        let viewer = token(&f.key, "", &[], &["anon/**"]);
        let a = &f.access;
        assert_eq!(
            status(check(a, "cam", Action::Publish, Some(&publisher))),
            200
        );
        assert_eq!(
            status(check(a, "cam", Action::Subscribe, Some(&publisher))),
            403
        );
        assert_eq!(
            status(check(a, "other", Action::Publish, Some(&publisher))),
            403
        );
        assert_eq!(
            status(check(a, "cam", Action::Subscribe, Some(&viewer))),
            200
        );
        assert_eq!(
            status(check(a, "deep/cam", Action::Subscribe, Some(&viewer))),
            200
        );
        assert_eq!(status(check(a, "cam", Action::Publish, Some(&viewer))), 403);
        // A token for another root reaches nothing under /anon.
        let elsewhere = token(&f.key, "private", &["**"], &["**"]);
        assert_eq!(
            status(check(a, "cam", Action::Publish, Some(&elsewhere))),
            403
        );
    }

    #[test]
    fn no_token_or_a_bad_one_is_unauthenticated() {
        let f = fixture(&[]);
        let a = &f.access;
        assert_eq!(status(check(a, "cam", Action::Publish, None)), 401);
        assert_eq!(
            status(check(a, "cam", Action::Publish, Some("garbage"))),
            401
        );
        // Signed by another key.
        let other = moq_auth::Key::generate(moq_auth::Algorithm::HS256, None).unwrap();
        let forged = token(&other, "anon", &["cam"], &[]);
        assert_eq!(status(check(a, "cam", Action::Publish, Some(&forged))), 401);
        // Expired.
        let claims = moq_auth::Claims::default()
            .with_root("anon")
            .with_publish(["cam".parse().unwrap()])
            .with_expires(SystemTime::now() - Duration::from_secs(60));
        let expired = f.key.sign(&claims).unwrap();
        let refusal = check(a, "cam", Action::Publish, Some(&expired));
        assert_eq!(status(refusal), 401);
    }

    #[test]
    fn a_grant_lasts_as_long_as_its_token() {
        let f = fixture(&["anon/open/**"]);
        let viewer = token(&f.key, "anon", &[], &["cam"]);
        let expires = check(&f.access, "cam", Action::Subscribe, Some(&viewer))
            .unwrap()
            .expect("the token's exp");
        // `exp` holds whole seconds, rounded either way.
        let hour = SystemTime::now() + Duration::from_secs(3600);
        let second = Duration::from_secs(1);
        assert!(
            expires > hour - 2 * second && expires < hour + 2 * second,
            "{expires:?} against {hour:?}"
        );
        assert_eq!(
            check(&f.access, "open/cam", Action::Subscribe, None),
            Ok(None)
        );
    }

    #[test]
    fn the_gateways_own_token_reaches_one_broadcast() {
        let f = fixture(&[]);
        let own = f
            .access
            .egress_token("/anon", "room/cam")
            .expect("a key that signs");
        let a = &f.access;
        assert_eq!(
            status(check(a, "room/cam", Action::Subscribe, Some(&own))),
            200
        );
        assert_eq!(
            check(a, "room/cam", Action::Subscribe, Some(&own)),
            Ok(None)
        );
        for (broadcast, action) in [
            ("room/cam", Action::Publish),
            ("room/cam2", Action::Subscribe),
            ("room", Action::Subscribe),
            ("room/cam/x", Action::Subscribe),
        ] {
            assert_eq!(status(check(a, broadcast, action, Some(&own))), 403);
        }
        // No key, or one that only verifies: the viewer's own token goes on.
        assert_eq!(Access::open().egress_token("/anon", "cam"), None);
        let path = f._dir.0.join("verify-only.jwk");
        let verify_only = f
            .key
            .clone()
            .with_operations([moq_auth::KeyOperation::Verify]);
        verify_only.to_file(&path).unwrap();
        let checking = Access::new(Some(path), vec![]).unwrap();
        assert_eq!(checking.egress_token("/anon", "cam"), None);
    }

    #[test]
    fn public_paths_need_no_token() {
        let f = fixture(&["anon/open/**"]);
        let a = &f.access;
        assert_eq!(status(check(a, "open/cam", Action::Publish, None)), 200);
        assert_eq!(status(check(a, "open/cam", Action::Subscribe, None)), 200);
        assert_eq!(status(check(a, "closed", Action::Subscribe, None)), 401);
        // A token is decided on its own, never widened by the public rules.
        let narrow = token(&f.key, "anon", &[], &["closed"]);
        assert_eq!(
            status(check(a, "open/cam", Action::Publish, Some(&narrow))),
            403
        );
    }

    #[test]
    fn refusals_never_repeat_the_token() {
        let f = fixture(&[]);
        let secret = token(&f.key, "anon", &["cam"], &[]);
        for (broadcast, action) in [("cam", Action::Subscribe), ("x", Action::Publish)] {
            match check(&f.access, broadcast, action, Some(&secret)) {
                Err(Denied::Forbidden(text)) | Err(Denied::Unauthenticated(text)) => {
                    assert!(!text.contains(&secret), "{text}")
                }
                Ok(_) => panic!("{broadcast} was allowed"),
            }
        }
        let mangled = format!("{secret}x");
        let Err(Denied::Unauthenticated(text)) =
            check(&f.access, "cam", Action::Publish, Some(&mangled))
        else {
            panic!("a mangled token was accepted")
        };
        assert!(!text.contains(&mangled), "{text}");
    }

    #[test]
    fn mistakes_in_the_rules_are_explained() {
        let err = Access::new(None, vec!["anon".parse().unwrap()]).unwrap_err();
        assert!(err.to_string().contains("anon/**"), "{err}");
        let err = Access::new(Some("/nonexistent/key.jwk".into()), vec![]).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/key.jwk"), "{err}");
    }

    #[test]
    fn bearer_tokens() {
        assert_eq!(bearer(Some("Bearer abc.def")), Some("abc.def"));
        assert_eq!(bearer(Some("bearer  abc ")), Some("abc"));
        assert_eq!(bearer(Some("Basic abc")), None);
        assert_eq!(bearer(Some("Bearer ")), None);
        assert_eq!(bearer(Some("Bearer a.b&jwt=c")), None);
        assert_eq!(bearer(None), None);
    }
}
