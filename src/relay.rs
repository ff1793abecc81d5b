// SPDX-License-Identifier: MIT OR Apache-2.0

//! A MoQ relay inside the gateway process (the `moq-relay` library), so the
//! default run needs nothing installed and nothing listening elsewhere.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;

use crate::auth::Access;

/// A running relay; stops when dropped.
pub struct EmbeddedRelay {
    addr: SocketAddr,
    shutdown: moq_relay::shutdown::Trigger,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl EmbeddedRelay {
    /// Start a relay on `bind` (port 0 picks a free one) with a freshly
    /// generated self-signed certificate. Everything under `anon/` is public.
    /// Plain HTTP on the same port serves `/certificate.sha256`, so
    /// `http://HOST:PORT/anon` URLs pin the certificate (what the MoQ
    /// browser tools do); port 0 picks a port free for both.
    pub fn start(bind: SocketAddr) -> anyhow::Result<Self> {
        Self::start_with(bind, Access::open(), Cluster::default())
    }

    /// [`start`](Self::start), admitting MoQ sessions by `access` (the
    /// tokens and public paths of the gateway's WHIP/WHEP, so both ways in
    /// grant the same) and joining `cluster`.
    pub fn start_with(bind: SocketAddr, access: Access, cluster: Cluster) -> anyhow::Result<Self> {
        let bind = if bind.port() == 0 {
            SocketAddr::new(bind.ip(), free_port(bind)?)
        } else {
            bind
        };
        let config = relay_config(bind, cluster)?;
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
                    let mut relay = match moq_relay::Relay::load(config).await {
                        Ok(relay) => relay.with_signals(false),
                        Err(err) => {
                            let _ = tx.send(Err(err));
                            return;
                        }
                    };
                    if let Some(admissions) = relay.admissions() {
                        access.serve_admissions(admissions);
                    }
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

    /// The URL for moqsink/moqsrc: `http://` makes them fetch the
    /// self-signed certificate's hash from the relay and pin it.
    pub fn url(&self) -> String {
        format!("http://{}/anon", self.addr)
    }
}

/// The embedded relay's configuration: QUIC and the certificate's HTTP on
/// `bind`, a self-signed certificate, no drain on shutdown, `cluster`'s
/// peers; and no `[auth]` source, so the relay hands every session to this
/// process to admit (`Access::serve_admissions`).
fn relay_config(bind: SocketAddr, cluster: Cluster) -> anyhow::Result<moq_relay::Config> {
    let mut config = moq_relay::Config::default();
    config.drain_timeout = Duration::ZERO;
    config.listen.bind = Some(moq_tokio::listen::Bind::Addr(bind));
    config.listen.tls.generate = vec!["localhost".into()];
    config.connect.bind = Some(SocketAddr::new(bind.ip(), 0));
    config.web.http.listen = Some(bind);
    config.cluster.connect = cluster.peers()?;
    config.cluster.node = cluster.node;
    config.cluster.id = cluster.id;
    config.cluster.token = cluster.token;
    Ok(config)
}

/// moq-relay's cluster options for the embedded relay: each gateway an edge
/// with its own relay, all of them one moq-relay cluster, so a broadcast
/// published into one gateway plays from any.
#[derive(Clone, Debug, Default)]
pub struct Cluster {
    /// Relays to dial and exchange broadcasts with (full URLs; the root
    /// path, `http://host:4443/`, carries every broadcast: moq-relay
    /// 0.17.10 forwarded nothing between peers dialed at `/anon`).
    pub connect: Vec<String>,
    /// This relay's own URL as other nodes reach it (its identity).
    pub node: Option<String>,
    /// A fixed hop id for this relay (random on each start otherwise).
    pub id: Option<u64>,
    /// A file holding the JWT presented on the dials to `connect` (one
    /// granting `**` at the root, where the peers check tokens).
    pub token: Option<std::path::PathBuf>,
}

impl Cluster {
    fn peers(&self) -> anyhow::Result<Vec<moq_relay::cluster::Peer>> {
        self.connect
            .iter()
            .map(|url| {
                // Named without its query, which may hold a token.
                let shown = url.split('?').next().unwrap_or_default();
                url.parse()
                    .with_context(|| format!("--cluster-connect {shown} is not a peer URL"))
            })
            .collect()
    }
}

/// A port on `bind`'s address that is free for UDP (QUIC) and TCP (the
/// certificate's HTTP endpoint) alike.
fn free_port(bind: SocketAddr) -> anyhow::Result<u16> {
    for _ in 0..20 {
        let udp = std::net::UdpSocket::bind(bind).context("cannot bind a UDP port")?;
        let port = udp.local_addr()?.port();
        if std::net::TcpListener::bind(SocketAddr::new(bind.ip(), port)).is_ok() {
            return Ok(port);
        }
    }
    anyhow::bail!("no port on {} is free for both UDP and TCP", bind.ip())
}

impl Drop for EmbeddedRelay {
    fn drop(&mut self) {
        self.shutdown.start();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
