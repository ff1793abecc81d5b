// SPDX-License-Identifier: MIT OR Apache-2.0

//! What the benchmark examples share: a relay in a child process, children
//! that talk over stdin/stdout, and a process's CPU time.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::Duration;

/// Wall-clock nanoseconds: comparable across the examples' processes.
#[allow(dead_code)]
pub fn wall_ns() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos()
}

/// A frame recognised on both sides of the relay: FNV-1a over its last 64
/// bytes (its entropy-coded end, which no framing changes).
#[allow(dead_code)]
pub fn frame_key(buffer: &gst::BufferRef) -> Option<u64> {
    let map = buffer.map_readable().ok()?;
    let tail = &map[map.len().saturating_sub(64)..];
    Some(tail.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    }))
}

/// CPU time of this whole process so far (all threads, nanoseconds).
pub fn process_cpu() -> Duration {
    let mut total = 0u64;
    if let Ok(tasks) = std::fs::read_dir("/proc/self/task") {
        for task in tasks.flatten() {
            if let Ok(s) = std::fs::read_to_string(task.path().join("schedstat")) {
                total += s
                    .split_whitespace()
                    .next()
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0);
            }
        }
    }
    Duration::from_nanos(total)
}

/// Child: the relay, until its stdin closes; prints its address, then its CPU.
pub fn relay(congestion: &str) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let congestion = congestion.to_string();
    runtime.block_on(async move {
        let mut config = moq_relay::Config::default();
        config.drain_timeout = Duration::ZERO;
        config.listen.bind = Some(moq_tokio::listen::Bind::Addr(
            "127.0.0.1:0".parse().expect("address"),
        ));
        config.listen.tls.generate = vec!["localhost".into()];
        config.connect.bind = Some("127.0.0.1:0".parse().expect("address"));
        config.auth.public = vec!["anon/**".parse().expect("pattern")];
        config.quic.congestion_control = match congestion.as_str() {
            "loss" => Some(moq_tokio::quic::CongestionControl::Loss),
            "delay" => Some(moq_tokio::quic::CongestionControl::Delay),
            _ => None,
        };
        let relay = moq_relay::Relay::load(config)
            .await
            .expect("the relay starts")
            .with_signals(false);
        println!("relay {}", relay.quic_addr().expect("an address"));
        let _ = std::io::stdout().flush();
        let trigger = relay.shutdown_trigger().clone();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = std::io::stdin().read_line(&mut line);
            trigger.start();
        });
        let _ = relay.run().await;
    });
    println!("cpu {} 0", process_cpu().as_nanos());
}

/// A child of this example, its stdout read line by line.
pub struct Worker {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: std::io::Lines<BufReader<std::process::ChildStdout>>,
}

impl Worker {
    pub fn spawn(role: &[&str], plugin_path: Option<&str>) -> Worker {
        let mut command = Command::new(std::env::current_exe().expect("own path"));
        command
            .args(role)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        if let Some(dir) = plugin_path {
            // Only the other plugin's elements, from a registry of their own.
            command
                .env("HOP_OTHER_PLUGIN", "1")
                .env("GST_PLUGIN_PATH", dir)
                .env("GST_REGISTRY", format!("{dir}/hop-registry.bin"));
        }
        let mut child = command.spawn().expect("a child process");
        let stdin = child.stdin.take();
        let lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        Worker {
            child,
            stdin,
            lines,
        }
    }

    pub fn line(&mut self) -> String {
        self.lines
            .next()
            .and_then(Result::ok)
            .expect("a line from the child")
    }

    /// Sends it one line on its stdin (not every example talks to its children).
    #[allow(dead_code)]
    pub fn say(&mut self, line: &str) {
        if let Some(stdin) = self.stdin.as_mut() {
            let _ = writeln!(stdin, "{line}");
            let _ = stdin.flush();
        }
    }

    /// Closes its stdin (the signal to stop); the lines it prints until
    /// it exits, then waits for it.
    pub fn finish_lines(mut self) -> Vec<String> {
        drop(self.stdin.take());
        let lines = self.lines.by_ref().map_while(Result::ok).collect();
        let _ = self.child.wait();
        lines
    }
}
