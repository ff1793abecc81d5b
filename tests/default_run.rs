// SPDX-License-Identifier: MIT OR Apache-2.0

//! The README's first command, shortened: the default run publishes through
//! moqsink, the embedded relay and moqsrc, and reports frames that arrived and
//! were decoded.

use std::process::{Command, Stdio};
use std::time::Duration;

/// The number after `label` in `line`, e.g. `decoded` in "... 12 decoded".
fn count_before(line: &str, label: &str) -> u64 {
    let words: Vec<&str> = line.split_whitespace().collect();
    words
        .windows(2)
        .find(|w| w[1].trim_end_matches(',') == label)
        .and_then(|w| w[0].parse().ok())
        .unwrap_or(0)
}

#[test]
fn default_run_plays_its_own_broadcast() {
    let child = Command::new(env!("CARGO_BIN_EXE_moq-gateway"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--duration",
            "3",
            "--size",
            "640x360",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("moq-gateway starts");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let output = rx
        .recv_timeout(Duration::from_secs(120))
        .expect("moq-gateway ends by itself after --duration")
        .expect("moq-gateway output");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "exit {:?}\n{stdout}\n{stderr}",
        output.status
    );
    let summary: Vec<&str> = stdout
        .lines()
        .skip_while(|l| !l.starts_with("summary"))
        .collect();
    for kind in ["video", "audio"] {
        let line = summary
            .iter()
            .find(|l| l.trim_start().starts_with(kind))
            .unwrap_or_else(|| panic!("no {kind} summary in\n{stdout}"));
        let sent = count_before(line, "frames");
        let decoded = count_before(line, "decoded");
        assert!(sent > 10, "{kind}: {line}");
        assert!(decoded * 10 >= sent * 9, "{kind}: {line}");
        assert!(line.contains("latency p50"), "{kind}: {line}");
    }
}
