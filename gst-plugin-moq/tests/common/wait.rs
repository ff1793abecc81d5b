// SPDX-License-Identifier: MIT OR Apache-2.0

//! Waiting in tests: for a condition, polled and bounded, and loud when it
//! does not come (a panic naming what was awaited), never a silent timeout.
//! Shared by the plugin's tests and the gateway's (`#[path]`).

use std::time::{Duration, Instant};

/// Polls `done` every 20 ms until it holds and returns how long that took;
/// panics naming `what` once `timeout` has passed.
pub fn until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < timeout, "{what}: not within {timeout:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
    start.elapsed()
}
