// SPDX-License-Identifier: MIT OR Apache-2.0

//! The one tokio runtime every element of the plugin shares.
//!
//! Network I/O (QUIC, the MoQ session, catalog and track readers) runs here.
//! GStreamer streaming threads never run on it: moqsink writes into in-memory
//! producers from its chain function and moqsrc pushes from pad tasks.

use std::sync::LazyLock;

/// Worker threads by default. `GST_MOQ_THREADS` overrides it (1 to 16): one
/// thread costs about a quarter less CPU per frame (no hand-offs between
/// workers, measured with the `latency` example), two keep many sessions in one
/// process from queueing behind each other.
const DEFAULT_THREADS: usize = 2;

fn worker_threads() -> usize {
    std::env::var("GST_MOQ_THREADS")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|n| (1..=16).contains(n))
        .unwrap_or(DEFAULT_THREADS)
}

pub static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(worker_threads())
        .thread_name("moq-runtime")
        .enable_all()
        .on_thread_start(crate::log::attach_to_thread)
        .build()
        // Without a runtime the plugin cannot do anything at all; this only fails
        // when the process cannot spawn threads.
        .expect("failed to start the moq tokio runtime")
});
