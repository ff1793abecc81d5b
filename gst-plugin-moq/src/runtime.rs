// SPDX-License-Identifier: MIT OR Apache-2.0

//! The one tokio runtime every element of the plugin shares.
//!
//! Network I/O (QUIC, the MoQ session, catalog and track readers) runs here.
//! GStreamer streaming threads never run on it: moqsink writes into in-memory
//! producers from its chain function and moqsrc pushes from pad tasks.

use std::sync::LazyLock;

pub static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("moq-runtime")
        .enable_all()
        .on_thread_start(crate::log::attach_to_thread)
        .build()
        // Without a runtime the plugin cannot do anything at all; this only fails
        // when the process cannot spawn threads.
        .expect("failed to start the moq tokio runtime")
});
