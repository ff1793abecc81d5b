// SPDX-License-Identifier: MIT OR Apache-2.0

//! A real MoQ relay (the `moq-relay` library) on 127.0.0.1, port 0, with a
//! generated self-signed certificate, on a thread and runtime of its own so
//! it outlives any one test. Shared by the tests and the benchmark example.

use std::net::SocketAddr;
use std::time::Duration;

/// Start the relay; returns its QUIC address and the SHA-256 fingerprint of
/// its certificate. Only `anon/...` is public, so any other path is refused
/// (the error tests rely on it).
pub fn spawn() -> Result<(SocketAddr, String), String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("test-relay".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(err) => {
                    let _ = tx.send(Err(err.to_string()));
                    return;
                }
            };
            runtime.block_on(async move {
                let mut config = moq_relay::Config::default();
                config.drain_timeout = Duration::ZERO;
                config.listen.bind = Some("127.0.0.1:0".parse().expect("valid address"));
                let identity = match moq_tokio::tls::Identity::generate(["localhost"]) {
                    Ok(identity) => identity,
                    Err(err) => {
                        let _ = tx.send(Err(err.to_string()));
                        return;
                    }
                };
                let fingerprint = identity.fingerprint().to_string();
                config.listen.tls.identity = Some(identity);
                config.connect.bind = Some("127.0.0.1:0".parse().expect("valid address"));
                config.auth.public = vec!["anon/**".parse().expect("valid pattern")];
                let relay = match moq_relay::Relay::load(config).await {
                    Ok(relay) => relay.with_signals(false),
                    Err(err) => {
                        let _ = tx.send(Err(err.to_string()));
                        return;
                    }
                };
                let started = relay.quic_addr().map(|addr| (addr, fingerprint));
                let _ = tx.send(started.map_err(|e| e.to_string()));
                if let Err(err) = relay.run().await {
                    eprintln!("test relay stopped: {err:#}");
                }
            });
        })
        .map_err(|e| e.to_string())?;
    rx.recv_timeout(Duration::from_secs(30))
        .map_err(|_| "the relay did not start".to_string())?
}
