// SPDX-License-Identifier: MIT OR Apache-2.0

//! Headless Chromium for the browser tests: finding it, opening one page per
//! process, reading what the page logs, and serving pages from a folder.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Debian's Chromium (or `CHROMIUM=/path`), or `None` with a message when it
/// is missing and `GST_MOQ_BROWSER_REQUIRED=1` (set by CI) is not.
pub fn chromium() -> Option<String> {
    let path = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    if Path::new(&path).exists() {
        return Some(path);
    }
    required_or_skip(&format!(
        "no Chromium at {path} (install Debian's chromium or set CHROMIUM)"
    ));
    None
}

/// Panics with `why` when the browser tests are required, else says they skip.
pub fn required_or_skip(why: &str) {
    assert!(
        std::env::var("GST_MOQ_BROWSER_REQUIRED").as_deref() != Ok("1"),
        "GST_MOQ_BROWSER_REQUIRED=1 but {why}"
    );
    eprintln!("SKIPPED: {why}");
}

/// How many of a page's console lines are kept for reading and for reports.
const KEPT_LINES: usize = 200;

/// A headless Chromium on one page, killed when dropped. Keeps the page's
/// recent console lines that contain `prefix` (the page's own log lines)
/// and any uncaught errors.
pub struct Browser {
    child: Child,
    profile: PathBuf,
    lines: Arc<Mutex<VecDeque<String>>>,
}

impl Browser {
    pub fn open(binary: &str, url: &str, prefix: &'static str) -> Browser {
        let profile = std::env::temp_dir().join(super::unique("chromium-profile"));
        let mut child = Command::new(binary)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--use-fake-device-for-media-stream",
                "--use-fake-ui-for-media-stream",
                "--autoplay-policy=no-user-gesture-required",
                "--enable-logging=stderr",
                "--v=0",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg(url)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("Chromium starts");
        let lines: Arc<Mutex<VecDeque<String>>> = Arc::default();
        let kept = lines.clone();
        let stderr = child.stderr.take().expect("piped stderr");
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                // console.log lines: ... "moq-web: frames 42 ...", source: ...
                let text = match line.find(prefix) {
                    Some(at) => &line[at..],
                    None if line.contains("Uncaught")
                        || (line.contains("CONSOLE") && line.to_lowercase().contains("error")) =>
                    {
                        line.as_str()
                    }
                    None => continue,
                };
                if text.contains("error") || text.contains("Uncaught") {
                    eprintln!("page: {text}");
                }
                let mut kept = kept.lock().unwrap_or_else(|e| e.into_inner());
                if kept.len() == KEPT_LINES {
                    kept.pop_front();
                }
                kept.push_back(text.to_owned());
            }
        });
        Browser {
            child,
            profile,
            lines,
        }
    }

    /// The number after `label` in the newest line that has one, or 0.
    pub fn value(&self, label: &str) -> u64 {
        self.word(label).and_then(|w| w.parse().ok()).unwrap_or(0)
    }

    /// The word after `label` in the newest line that has one.
    pub fn word(&self, label: &str) -> Option<String> {
        let lines = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        lines.iter().rev().find_map(|line| {
            let mut words = line.split(|c: char| c.is_whitespace() || c == '"');
            words.find(|w| *w == label)?;
            words.next().map(str::to_owned)
        })
    }

    /// The newest kept lines, for a failure report.
    pub fn recent(&self, n: usize) -> Vec<String> {
        let lines = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        lines.iter().rev().take(n).rev().cloned().collect()
    }

    /// Waits until `value(label)` reaches `want`; panics after `timeout`
    /// with the page's recent lines.
    pub fn wait_for(&self, label: &str, want: u64, timeout: Duration) -> Duration {
        super::wait::until_else(
            timeout,
            || self.value(label) >= want,
            || {
                format!(
                    "the page's {label} was {} after {timeout:?}; its last lines: {:#?}",
                    self.value(label),
                    self.recent(10)
                )
            },
        )
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// Serves the files under `root` over plain HTTP on 127.0.0.1 (a page on
/// `http://127.0.0.1` is a secure context, which WebTransport and WebCodecs
/// need), until the process exits. GET only; no directory listings.
pub fn serve_folder(root: PathBuf) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
    let addr = listener.local_addr().expect("a bound address");
    std::thread::spawn(move || {
        for stream in listener.incoming().map_while(Result::ok) {
            let root = root.clone();
            std::thread::spawn(move || {
                let _ = answer(stream, &root);
            });
        }
    });
    addr
}

fn answer(mut stream: TcpStream, root: &Path) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request = String::new();
    reader.read_line(&mut request)?;
    // The headers are read and dropped: nothing here depends on them.
    let mut header = String::new();
    while reader.read_line(&mut header)? > 2 {
        header.clear();
    }
    let path = request
        .split_whitespace()
        .nth(1)
        .unwrap_or("/")
        .split(['?', '#'])
        .next()
        .unwrap_or("/");
    let file = Some(path.trim_start_matches('/'))
        .filter(|p| !p.split('/').any(|part| part == ".." || part.is_empty()))
        .map(|p| root.join(p));
    let body = file.as_ref().and_then(|f| {
        let mut bytes = Vec::new();
        std::fs::File::open(f).ok()?.read_to_end(&mut bytes).ok()?;
        Some(bytes)
    });
    let Some(body) = body else {
        return stream.write_all(
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        );
    };
    let kind = match Path::new(path).extension().and_then(|e| e.to_str()) {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        _ => "application/octet-stream",
    };
    write!(
        stream,
        "HTTP/1.1 200 OK\r\nContent-Type: {kind}\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    stream.write_all(&body)
}
