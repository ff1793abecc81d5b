// SPDX-License-Identifier: MIT OR Apache-2.0

//! A MoQ relay inside the gateway process (the `moq-relay` library), so the
//! default run needs nothing installed and nothing listening elsewhere.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;

/// A running relay; stops when dropped.
pub struct EmbeddedRelay {
    addr: SocketAddr,
    shutdown: moq_relay::shutdown::Trigger,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl EmbeddedRelay {
    /// Start a relay on `bind` (port 0 picks a free one) with a freshly
    /// generated self-signed certificate. Everything under `anon/` is public.
    /// With a fixed port, plain HTTP on the same port serves
    /// `/certificate.sha256`, so `http://HOST:PORT/anon` URLs pin the
    /// certificate (what the MoQ browser tools do).
    pub fn start(bind: SocketAddr) -> anyhow::Result<Self> {
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("embedded-relay".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .thread_name("relay")
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(err) => {
                        let _ = tx.send(Err(anyhow::Error::from(err)));
                        return;
                    }
                };
                runtime.block_on(async move {
                    let mut config = moq_relay::Config::default();
                    config.drain_timeout = Duration::ZERO;
                    config.listen.bind = Some(moq_tokio::listen::Bind::Addr(bind));
                    config.listen.tls.generate = vec!["localhost".into()];
                    config.connect.bind = Some(SocketAddr::new(bind.ip(), 0));
                    if bind.port() != 0 {
                        config.web.http.listen = Some(bind);
                    }
                    config.auth.public = vec!["anon/**".parse().expect("valid pattern")];
                    let relay = match moq_relay::Relay::load(config).await {
                        Ok(relay) => relay.with_signals(false),
                        Err(err) => {
                            let _ = tx.send(Err(err));
                            return;
                        }
                    };
                    let started = relay
                        .quic_addr()
                        .map(|addr| (addr, relay.shutdown_trigger().clone()));
                    let _ = tx.send(started);
                    if let Err(err) = relay.run().await {
                        eprintln!("embedded relay stopped: {err:#}");
                    }
                });
            })
            .context("cannot start the relay thread")?;
        let (addr, shutdown) = rx
            .recv_timeout(Duration::from_secs(30))
            .context("the embedded relay did not start")?
            .with_context(|| format!("cannot start the embedded relay on {bind}"))?;
        Ok(Self {
            addr,
            shutdown,
            thread: Some(thread),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The URL for moqsink/moqsrc (with `tls-disable-verify=true`: the
    /// certificate is self-signed).
    pub fn url(&self) -> String {
        format!("https://{}/anon", self.addr)
    }
}

impl Drop for EmbeddedRelay {
    fn drop(&mut self) {
        self.shutdown.start();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
