// SPDX-License-Identifier: MIT OR Apache-2.0

//! Glass-to-glass benchmark of WebRTC <-> MoQ gateways, with browsers at
//! both ends, every part in a process of its own as a user runs it:
//!
//! headless Chromium paints the wall clock into a 640x360 canvas (a code of
//! black and white cells), publishes it over WHIP (H.264 first, plus the fake
//! microphone) to a gateway, which puts it on a MoQ relay (`moq-gateway
//! relay`, its own process); the gateway's WHEP side plays it back to a
//! second headless Chromium, which reads the code of every frame it
//! presents and logs its age. Prints the age's p50/p90/p99 for a viewer
//! that joined 3 s after the publisher, the time from a viewer's POST to
//! its first live picture (< 150 ms old) when joining 3 s and 20 s after
//! the publisher, and what each browser reports (encode time, pacer delay,
//! keyframes and FIR/PLI counts at the publisher; jitter buffer, decode
//! time at the viewer).
//!
//! Gateways measured in the same run:
//! * `moq-gateway serve` (this project; `--gateway PATH`, default the
//!   `moq-gateway` next to this example, so `cargo build --release` first);
//! * with `--moq-cli PATH`, the moq CLI's hand-written gateway (`moq import
//!   rtc` and `moq export rtc`, crate moq-cli with its default features);
//! * with `--mixed` too, each gateway's WHIP side with the other's WHEP side
//!   (both on the same relay), to tell which half a difference comes from.
//!
//! Run: `cargo build --release && cargo run --release --example glass --
//! [--moq-cli PATH] [--rounds N] [--seconds S]`.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const USAGE: &str = "usage: glass [--gateway PATH] [--moq-cli PATH [--mixed]] [--cli-only] [--rounds N] \
     [--seconds S]";

const OURS: &str = "moq-gateway serve";
const CLI: &str = "moq CLI (import/export rtc)";
const OURS_IN: &str = "WHIP moq-gateway -> WHEP moq CLI";
const CLI_IN: &str = "WHIP moq CLI -> WHEP moq-gateway";

/// A page's `glass:` console lines, with when they arrived.
type Lines = Arc<Mutex<Vec<(Instant, String)>>>;

/// A child process killed when dropped; stderr lines kept when asked.
struct Proc {
    child: Child,
    lines: Lines,
    profile: Option<PathBuf>,
}

impl Proc {
    fn spawn(program: &Path, args: &[&str], keep: Option<&'static str>) -> Proc {
        let mut command = Command::new(program);
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        // GLASS_LOGS=DIR keeps what the gateways print, for a failure.
        if keep.is_none()
            && let Ok(dir) = std::env::var("GLASS_LOGS")
        {
            let name = format!(
                "{}/{}-{}.log",
                dir,
                program
                    .file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or("proc"),
                NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            );
            if let Ok(file) = std::fs::File::create(name) {
                command.stderr(file);
            }
        }
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
        let lines: Lines = Arc::default();
        let kept = lines.clone();
        let Some(stderr) = child.stderr.take() else {
            return Proc {
                child,
                lines,
                profile: None,
            };
        };
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let text = match keep {
                    Some(prefix) => match line.find(prefix) {
                        Some(at) => line[at + prefix.len()..]
                            .trim_end_matches(['"', ','])
                            .split("\", source:")
                            .next()
                            .unwrap_or_default()
                            .trim()
                            .to_string(),
                        None => continue,
                    },
                    None => line,
                };
                kept.lock().unwrap().push((Instant::now(), text));
            }
        });
        Proc {
            child,
            lines,
            profile: None,
        }
    }

    /// Headless Chromium on `url`, keeping the page's `glass:` lines.
    fn chromium(url: &str) -> Proc {
        let profile = std::env::temp_dir().join(format!(
            "glass-chromium-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let binary = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
        let profile_arg = format!("--user-data-dir={}", profile.display());
        let mut proc = Proc::spawn(
            Path::new(&binary),
            &[
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
                &profile_arg,
                url,
            ],
            Some("glass: "),
        );
        proc.profile = Some(profile);
        proc
    }

    fn lines(&self) -> Vec<(Instant, String)> {
        self.lines.lock().unwrap().clone()
    }

    /// Waits for a line starting with `what`; returns when it came.
    fn wait_line(&self, what: &str, timeout: Duration) -> Option<Instant> {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if let Some((at, _)) = self.lines().into_iter().find(|(_, l)| l.starts_with(what)) {
                return Some(at);
            }
            if let Some((_, err)) = self
                .lines()
                .into_iter()
                .find(|(_, l)| l.starts_with("error"))
            {
                panic!("the page failed: {err}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(profile) = &self.profile {
            let _ = std::fs::remove_dir_all(profile);
        }
    }
}

fn free_port() -> u16 {
    for _ in 0..50 {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").expect("a UDP port");
        let port = udp.local_addr().expect("bound").port();
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no port free for both UDP and TCP");
}

/// Waits until something accepts TCP connections on `port`.
fn wait_listening(port: u16, what: &str) {
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{what} did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Serves the pages' folder on 127.0.0.1 (a secure context).
fn serve_pages(root: PathBuf) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a port");
    let addr = listener.local_addr().expect("bound");
    std::thread::spawn(move || {
        for stream in listener.incoming().map_while(Result::ok) {
            let root = root.clone();
            std::thread::spawn(move || {
                let _ = serve_file(stream, &root);
            });
        }
    });
    addr
}

fn serve_file(mut stream: TcpStream, root: &Path) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request = String::new();
    reader.read_line(&mut request)?;
    let mut header = String::new();
    while reader.read_line(&mut header)? > 2 {
        header.clear();
    }
    let path = request.split_whitespace().nth(1).unwrap_or("/");
    let name = path
        .split(['?', '#'])
        .next()
        .unwrap_or("/")
        .trim_start_matches('/');
    let mut body = Vec::new();
    let found = !name.contains("..")
        && std::fs::File::open(root.join(name))
            .and_then(|mut f| f.read_to_end(&mut body))
            .is_ok();
    if !found {
        return stream.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
    }
    let kind = if name.ends_with(".js") {
        "text/javascript"
    } else {
        "text/html"
    };
    write!(
        stream,
        "HTTP/1.1 200 OK\r\nContent-Type: {kind}; charset=utf-8\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    stream.write_all(&body)
}

/// How to run one gateway: its processes and its WHIP/WHEP URLs.
struct Gateway {
    name: &'static str,
    procs: Vec<Proc>,
    whip: String,
    whep: String,
}

fn our_gateway(binary: &Path, relay: &str, broadcast: &str) -> Gateway {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let proc = Proc::spawn(
        binary,
        &["serve", "--listen", &listen, "--relay", relay],
        None,
    );
    wait_listening(port, "moq-gateway serve");
    Gateway {
        name: "moq-gateway serve",
        procs: vec![proc],
        // GLASS_WHIP_QUERY='?ladder=1' measures a publisher encoded into
        // renditions by the gateway.
        whip: format!(
            "http://{listen}/whip/{broadcast}{}",
            std::env::var("GLASS_WHIP_QUERY").unwrap_or_default()
        ),
        whep: format!("http://{listen}/whep/{broadcast}"),
    }
}

fn cli_gateway(binary: &Path, relay: &str, broadcast: &str) -> Gateway {
    let (import, export) = (free_port(), free_port());
    let side = |direction: &str, port: u16| {
        let listen = format!("127.0.0.1:{port}");
        Proc::spawn(
            binary,
            &[
                "--connect",
                relay,
                "--broadcast",
                broadcast,
                direction,
                "rtc",
                "--listen",
                &listen,
                "--cors-origin",
                "*",
            ],
            None,
        )
    };
    let procs = vec![side("import", import), side("export", export)];
    wait_listening(import, "moq import rtc");
    wait_listening(export, "moq export rtc");
    Gateway {
        name: "moq CLI (import/export rtc)",
        procs,
        whip: format!("http://127.0.0.1:{import}/{broadcast}"),
        whep: format!("http://127.0.0.1:{export}/{broadcast}"),
    }
}

/// What one round of one gateway measured.
#[derive(Default)]
struct Round {
    ages: Vec<f64>,
    /// The same frames' ages when their last packet reached the viewer.
    received: Vec<f64>,
    live_at_3s: Option<f64>,
    live_at_20s: Option<f64>,
    publisher: String,
    viewer: String,
}

fn value_after(line: &str, label: &str) -> Option<f64> {
    let mut words = line.split_whitespace();
    words.find(|w| *w == label)?;
    words.next()?.parse().ok()
}

fn measure(gateway: &Gateway, pages: SocketAddr, steady: Duration) -> Round {
    let page =
        |name: &str, param: &str, url: &str| format!("http://{pages}/{name}.html?{param}={url}");
    let publisher = Proc::chromium(&format!(
        "{}{}",
        page("publish", "whip", &gateway.whip),
        std::env::var("GLASS_PUBLISH_EXTRA").unwrap_or_default()
    ));
    let started = publisher
        .wait_line("publishing", Duration::from_secs(30))
        .expect("the publisher starts");
    let at = |secs: u64| {
        let due = started + Duration::from_secs(secs);
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
    };
    at(3);
    let early = Proc::chromium(&page("watch", "whep", &gateway.whep));
    let mut round = Round::default();
    let live = |viewer: &Proc| {
        viewer
            .wait_line("live-after-ms", Duration::from_secs(10))
            .and_then(|_| {
                viewer
                    .lines()
                    .iter()
                    .find_map(|(_, l)| value_after(l, "live-after-ms"))
            })
    };
    round.live_at_3s = live(&early);
    // The steady state: from 2 s after it went live, for `steady`.
    let from = Instant::now() + Duration::from_secs(2);
    std::thread::sleep(Duration::from_secs(2) + steady);
    let until = Instant::now();
    at(20);
    let late = Proc::chromium(&page("watch", "whep", &gateway.whep));
    round.live_at_20s = live(&late);
    for (viewer, when) in [(&early, "3 s"), (&late, "20 s")] {
        let timeline: Vec<String> = viewer
            .lines()
            .into_iter()
            .map(|(_, l)| l)
            .filter(|l| !["age", "view", "answer"].iter().any(|p| l.starts_with(p)))
            .collect();
        eprintln!("  viewer joining at {when}: {}", timeline.join("; "));
    }
    drop(late);
    if let Ok(dir) = std::env::var("GLASS_LOGS") {
        // What the pages printed, for a closer look at single frames.
        static ROUND: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = ROUND.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        for (proc, who) in [(&early, "viewer"), (&publisher, "publisher")] {
            let text: String = proc.lines().into_iter().map(|(_, l)| l + "\n").collect();
            let _ = std::fs::write(format!("{dir}/{who}-{n}.txt"), text);
        }
    }
    let steady_lines: Vec<String> = early
        .lines()
        .into_iter()
        .filter(|(t, _)| *t >= from && *t <= until)
        .map(|(_, l)| l)
        .collect();
    round.ages = steady_lines
        .iter()
        .filter_map(|l| value_after(l, "age"))
        .collect();
    round.received = steady_lines
        .iter()
        .filter_map(|l| value_after(l, "received"))
        .collect();
    let last = |proc: &Proc, prefix: &str| {
        proc.lines()
            .iter()
            .rev()
            .find(|(t, l)| *t <= until && l.starts_with(prefix))
            .map(|(_, l)| l.clone())
            .unwrap_or_default()
    };
    round.viewer = last(&early, "view ");
    round.publisher = last(&publisher, "pub ");
    round
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut cli: Option<PathBuf> = None;
    let here = std::env::current_exe().expect("own path");
    // target/<profile>/examples/glass -> target/<profile>/moq-gateway
    let mut gateway_bin = here
        .parent()
        .and_then(Path::parent)
        .map(|dir| dir.join("moq-gateway"))
        .expect("a target folder");
    let mut rounds = 1;
    let mut ours = true;
    let mut mixed = false;
    let mut steady = Duration::from_secs(14);
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = || it.next().cloned().expect("a value after the option");
        match arg.as_str() {
            "--moq-cli" => cli = Some(PathBuf::from(value())),
            "--gateway" => gateway_bin = PathBuf::from(value()),
            "--rounds" => rounds = value().parse().expect("a number"),
            "--seconds" => steady = Duration::from_secs(value().parse().expect("seconds")),
            "--cli-only" => ours = false,
            "--mixed" => mixed = true,
            "--help" | "-h" => {
                println!("{USAGE}");
                return;
            }
            other => {
                eprintln!("unknown option {other}\n{USAGE}");
                std::process::exit(2);
            }
        }
    }
    assert!(
        gateway_bin.exists(),
        "no {} (cargo build --release first, or --gateway PATH)",
        gateway_bin.display()
    );
    let pages = serve_pages(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/glass"));
    let relay_port = free_port();
    let relay_listen = format!("127.0.0.1:{relay_port}");
    let _relay = Proc::spawn(&gateway_bin, &["relay", "--listen", &relay_listen], None);
    wait_listening(relay_port, "the relay");
    let relay = format!("http://{relay_listen}/anon");

    let mut results: HashMap<&'static str, Vec<Round>> = HashMap::new();
    let mut order = Vec::new();
    if ours {
        order.push(OURS);
    }
    if cli.is_some() {
        order.push(CLI);
        if mixed {
            order.extend([OURS_IN, CLI_IN]);
        }
    }
    for round in 0..rounds {
        for (i, name) in order.iter().enumerate() {
            let broadcast = format!("glass-{round}-{i}");
            let gateway = match (*name, &cli) {
                (OURS, _) => our_gateway(&gateway_bin, &relay, &broadcast),
                (CLI, Some(cli)) => cli_gateway(cli, &relay, &broadcast),
                (_, Some(cli)) => {
                    let (a, b) = (
                        our_gateway(&gateway_bin, &relay, &broadcast),
                        cli_gateway(cli, &relay, &broadcast),
                    );
                    let (whip, whep) = if *name == OURS_IN {
                        (a.whip, b.whep)
                    } else {
                        (b.whip, a.whep)
                    };
                    Gateway {
                        name,
                        procs: a.procs.into_iter().chain(b.procs).collect(),
                        whip,
                        whep,
                    }
                }
                _ => unreachable!(),
            };
            eprintln!("round {round}: {} ...", gateway.name);
            let measured = measure(&gateway, pages, steady);
            let mut sorted = measured.ages.clone();
            sorted.sort_by(f64::total_cmp);
            eprintln!(
                "  {} ages (p50 {:.1} p99 {:.1}), live after {:?} / {:?} ms; {}; {}",
                measured.ages.len(),
                sorted.get(sorted.len() / 2).copied().unwrap_or(f64::NAN),
                sorted
                    .get(sorted.len() * 99 / 100)
                    .copied()
                    .unwrap_or(f64::NAN),
                measured.live_at_3s,
                measured.live_at_20s,
                measured.publisher,
                measured.viewer
            );
            drop(gateway.procs);
            results.entry(name).or_default().push(measured);
        }
    }

    // The publisher page takes `codec=vp8` from GLASS_PUBLISH_EXTRA (else H.264).
    let extra = std::env::var("GLASS_PUBLISH_EXTRA").unwrap_or_default();
    let codec = if extra.contains("codec=vp8") {
        "VP8"
    } else {
        "H.264"
    };
    println!(
        "glass-to-glass, {codec} 640x360@30 from headless Chromium over WHIP -> gateway -> \
         MoQ relay (own process) -> gateway -> WHEP -> headless Chromium; {rounds} round(s), \
         {} s steady each",
        steady.as_secs()
    );
    let mut p50s = HashMap::new();
    for name in &order {
        let rounds = &results[name];
        let mut ages: Vec<f64> = rounds.iter().flat_map(|r| r.ages.iter().copied()).collect();
        ages.sort_by(f64::total_cmp);
        if ages.is_empty() {
            println!("{name}: no frame was read");
            continue;
        }
        let joins = |f: fn(&Round) -> Option<f64>| {
            rounds
                .iter()
                .map(|r| f(r).map_or("never".into(), |ms| format!("{ms:.0}")))
                .collect::<Vec<_>>()
                .join(", ")
        };
        println!(
            "{name}: age p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms ({} frames); live after a \
             join at 3 s: {} ms, at 20 s: {} ms",
            percentile(&ages, 0.5),
            percentile(&ages, 0.9),
            percentile(&ages, 0.99),
            ages.len(),
            joins(|r| r.live_at_3s),
            joins(|r| r.live_at_20s),
        );
        let mut received: Vec<f64> = rounds
            .iter()
            .flat_map(|r| r.received.iter().copied())
            .collect();
        received.sort_by(f64::total_cmp);
        if !received.is_empty() {
            println!(
                "  of which before the viewer had the frame (age at its last packet): p50 {:.1} \
                 ms, p90 {:.1} ms, p99 {:.1} ms",
                percentile(&received, 0.5),
                percentile(&received, 0.9),
                percentile(&received, 0.99),
            );
        }
        for r in rounds {
            println!("  publisher: {}", r.publisher);
            println!("  viewer:    {}", r.viewer);
        }
        p50s.insert(*name, (percentile(&ages, 0.5), percentile(&ages, 0.99)));
    }
    if let (Some(ours), Some(theirs)) = (p50s.get(OURS), p50s.get(CLI)) {
        println!(
            "ratio moq-gateway / moq CLI: p50 {:.2}, p99 {:.2}",
            ours.0 / theirs.0,
            ours.1 / theirs.1
        );
    }
}
