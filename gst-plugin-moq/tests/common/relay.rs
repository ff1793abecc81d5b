// SPDX-License-Identifier: MIT OR Apache-2.0

//! A real MoQ relay (the `moq-relay` library) on 127.0.0.1, port 0, with a
//! generated self-signed certificate, on a thread and runtime of its own so
//! it outlives any one test. Shared by the tests and the benchmark example.

use std::net::SocketAddr;
use std::time::Duration;

/// Start a relay for the whole process; returns its QUIC address and the
/// SHA-256 fingerprint of its certificate. Only `anon/...` is public, so any
/// other path is refused (the error tests rely on it).
pub fn spawn() -> Result<(SocketAddr, String), String> {
    let relay = Restartable::start()?;
    let started = (relay.addr, relay.fingerprint().to_string());
    // It serves until the process exits.
    std::mem::forget(relay);
    Ok(started)
}

/// A relay that can be stopped and started again on the same address with the
/// same certificate, for restart tests.
pub struct Restartable {
    pub addr: SocketAddr,
    identity: moq_tokio::tls::Identity,
    running: Option<(moq_relay::shutdown::Trigger, std::thread::JoinHandle<()>)>,
}

impl Restartable {
    /// Start on 127.0.0.1 with a free port.
    pub fn start() -> Result<Self, String> {
        let identity =
            moq_tokio::tls::Identity::generate(["localhost"]).map_err(|e| e.to_string())?;
        let mut relay = Self {
            addr: "127.0.0.1:0".parse().expect("valid address"),
            identity,
            running: None,
        };
        relay.resume()?;
        Ok(relay)
    }

    /// Start again on the same address (after `stop`).
    pub fn resume(&mut self) -> Result<(), String> {
        let (tx, rx) = std::sync::mpsc::channel();
        let bind = self.addr;
        let identity = self.identity.clone();
        let thread = std::thread::Builder::new()
            .name("restartable-relay".into())
            .spawn(move || {
                let Ok(runtime) = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                else {
                    let _ = tx.send(Err("no runtime".to_string()));
                    return;
                };
                runtime.block_on(async move {
                    let mut config = moq_relay::Config::default();
                    config.drain_timeout = Duration::ZERO;
                    config.listen.bind = Some(moq_tokio::listen::Bind::Addr(bind));
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
                    let started = relay
                        .quic_addr()
                        .map(|addr| (addr, relay.shutdown_trigger().clone()))
                        .map_err(|e| e.to_string());
                    let _ = tx.send(started);
                    let _ = relay.run().await;
                });
            })
            .map_err(|e| e.to_string())?;
        let (addr, trigger) = rx
            .recv_timeout(Duration::from_secs(30))
            .map_err(|_| "the relay did not start".to_string())??;
        self.addr = addr;
        self.running = Some((trigger, thread));
        Ok(())
    }

    /// Shut the relay down and wait until its port is free.
    pub fn stop(&mut self) {
        if let Some((trigger, thread)) = self.running.take() {
            trigger.start();
            let _ = thread.join();
        }
    }

    pub fn url(&self) -> String {
        format!("https://{}/anon", self.addr)
    }

    /// SHA-256 of the relay's certificate, for `tls-fingerprint`.
    pub fn fingerprint(&self) -> &str {
        self.identity.fingerprint()
    }
}

impl Drop for Restartable {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A relay in a process of its own (this test binary run again, with only
/// the calling test selected), so a test can kill it with SIGKILL: a relay
/// that crashes sends no QUIC close, which the graceful `Restartable::stop`
/// always does. Its certificate is new at each start, so clients use
/// `tls-disable-verify`.
pub struct Process {
    pub addr: SocketAddr,
    test: String,
    child: Option<std::process::Child>,
}

/// Set in the child: the address its relay binds.
const PROCESS_ENV: &str = "GST_MOQ_RELAY_PROCESS";

impl Process {
    /// Call first in a test that uses `Process`: in the child process this
    /// runs the relay until it is killed and never returns.
    pub fn serve_if_child() {
        let Ok(bind) = std::env::var(PROCESS_ENV) else {
            return;
        };
        let mut relay = Restartable {
            addr: bind.parse().expect("a socket address"),
            identity: moq_tokio::tls::Identity::generate(["localhost"]).expect("an identity"),
            running: None,
        };
        relay.resume().expect("the relay starts");
        println!("RELAY-LISTENING {}", relay.addr);
        use std::io::Write;
        let _ = std::io::stdout().flush();
        loop {
            std::thread::park();
        }
    }

    /// Start a relay process on a free port; `test` is the name of the
    /// calling test, which must begin with `serve_if_child()`.
    pub fn start(test: &str) -> Result<Self, String> {
        let mut process = Self {
            addr: "127.0.0.1:0".parse().expect("valid address"),
            test: test.to_string(),
            child: None,
        };
        process.restart()?;
        Ok(process)
    }

    /// Start it again on the same address (after `kill`).
    pub fn restart(&mut self) -> Result<(), String> {
        use std::io::BufRead;
        let mut child =
            std::process::Command::new(std::env::current_exe().map_err(|e| e.to_string())?)
                .args(["--exact", &self.test, "--nocapture", "--test-threads=1"])
                .env(PROCESS_ENV, self.addr.to_string())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::null())
                .spawn()
                .map_err(|e| e.to_string())?;
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                // The test harness may have started the line already.
                if let Some((_, addr)) = line.split_once("RELAY-LISTENING ") {
                    let _ = tx.send(addr.trim().to_string());
                }
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(addr) => addr,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err("the relay process did not start".into());
            }
        };
        self.addr = addr.parse().map_err(|_| format!("bad address {addr}"))?;
        self.child = Some(child);
        Ok(())
    }

    /// SIGKILL: the relay vanishes without a word to its clients.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn url(&self) -> String {
        format!("https://{}/anon", self.addr)
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}
