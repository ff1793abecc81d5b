// SPDX-License-Identifier: MIT OR Apache-2.0

//! Keyframes for late branches, from the relay: with `rejoin-for-keyframes`,
//! a keyframe request from downstream (GstForceKeyUnit) makes the track's
//! reader subscribe again, and the relay re-sends its current group from the
//! keyframe that starts it.
//!
//! Why: moqsrc cannot ask a publisher across the relay for a keyframe, and a
//! branch added while a group is under way (a tee's new branch, a
//! whepserversink viewer) waits for the next group otherwise: seconds with
//! a 2 s GOP, for ever with a browser publisher that only sends keyframes
//! on request. The group's earlier frames come again with their own (older)
//! timestamps, so this is for pipelines whose consumers start at a
//! keyframe, not for a single decoder that already played them.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::Notify;

/// The least time between two rejoins of one track: a consumer waiting for
/// its keyframe asks again for every frame it drops, and each rejoin re-sends
/// a whole group.
pub const MIN_INTERVAL: Duration = Duration::from_secs(1);

/// One track's rejoin requests, shared by its pad (which takes them) and its
/// reader (which carries them out).
#[derive(Default)]
pub struct Rejoin {
    wanted: Notify,
    last: Mutex<Option<Instant>>,
}

impl Rejoin {
    /// Asks the reader to subscribe again, unless it was asked less than
    /// `MIN_INTERVAL` before `now`; whether it was asked.
    pub fn ask(&self, now: Instant) -> bool {
        let mut last = self
            .last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if last.is_some_and(|l| now.saturating_duration_since(l) < MIN_INTERVAL) {
            return false;
        }
        *last = Some(now);
        // Kept until the reader looks, if it is not waiting right now.
        self.wanted.notify_one();
        true
    }

    /// Until a rejoin is asked for.
    pub async fn wanted(&self) {
        self.wanted.notified().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_taken_once_a_second() {
        let rejoin = Rejoin::default();
        let t0 = Instant::now();
        assert!(rejoin.ask(t0));
        assert!(!rejoin.ask(t0 + Duration::from_millis(30)));
        assert!(!rejoin.ask(t0 + Duration::from_millis(999)));
        assert!(rejoin.ask(t0 + MIN_INTERVAL));
    }

    #[test]
    fn a_request_waits_for_the_reader() {
        let rejoin = Rejoin::default();
        assert!(rejoin.ask(Instant::now()));
        // The reader looks later and still finds it, once.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        runtime.block_on(async {
            let found = tokio::time::timeout(Duration::from_millis(100), rejoin.wanted()).await;
            assert!(found.is_ok());
            let again = tokio::time::timeout(Duration::from_millis(50), rejoin.wanted()).await;
            assert!(again.is_err());
        });
    }
}
