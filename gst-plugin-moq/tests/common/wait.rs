// SPDX-License-Identifier: MIT OR Apache-2.0

//! Waiting in tests: for a condition, polled and bounded, and loud when it
//! does not come (a panic naming what was awaited), never a silent timeout.
//! Shared by the plugin's tests and the gateway's (`#[path]`).

use std::time::{Duration, Instant};

/// Polls `done` every 20 ms until it holds and returns how long that took;
/// panics naming `what` once `timeout` has passed.
pub fn until(what: &str, timeout: Duration, done: impl FnMut() -> bool) -> Duration {
    until_else(timeout, done, || format!("{what}: not within {timeout:?}"))
}

/// As `until`, for a wait whose failure is best told by the state it
/// stopped in (counts, a page's last lines): `explain` is asked for the
/// panic's message when `timeout` has passed.
pub fn until_else(
    timeout: Duration,
    mut done: impl FnMut() -> bool,
    explain: impl FnOnce() -> String,
) -> Duration {
    let start = Instant::now();
    while !done() {
        if start.elapsed() >= timeout {
            panic!("{}", explain());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    start.elapsed()
}
