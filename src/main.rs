// SPDX-License-Identifier: MIT OR Apache-2.0

//! `moq-gateway`: GStreamer with the `moq` plugin built in.
//!
//! With no arguments it starts a MoQ relay in-process, publishes a test
//! pattern with audio through `moqsink`, plays it back through `moqsrc` and
//! prints what arrives until Ctrl-C.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};

mod demo;
mod relay;

const USAGE: &str = "\
usage: moq-gateway [--listen ADDR] [--relay URL] [--broadcast NAME] [--duration SECS] [--size WxH]
       moq-gateway relay [--listen ADDR]

Without --relay, starts a MoQ relay in this process on --listen (default
127.0.0.1:4443; port 0 picks a free one). Publishes a test pattern with audio
through moqsink, plays it back through moqsrc and prints frames and latency
once a second until Ctrl-C (or --duration seconds).

`relay` only runs the embedded relay (public path anon/) until Ctrl-C, for
gst-launch-1.0 pipelines with moqsink and moqsrc.";

struct Args {
    relay_only: bool,
    listen: SocketAddr,
    relay: Option<String>,
    broadcast: String,
    duration: Option<Duration>,
    width: u32,
    height: u32,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = Args {
        relay_only: false,
        listen: "127.0.0.1:4443".parse()?,
        relay: None,
        broadcast: "demo".into(),
        duration: None,
        width: 1280,
        height: 720,
    };
    let mut it = std::env::args().skip(1).peekable();
    if it.peek().map(String::as_str) == Some("relay") {
        it.next();
        args.relay_only = true;
    }
    while let Some(arg) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .with_context(|| format!("{name} needs a value\n\n{USAGE}"))
        };
        match arg.as_str() {
            "--listen" => {
                args.listen = value("--listen")?
                    .parse()
                    .context("--listen takes HOST:PORT")?
            }
            "--relay" => args.relay = Some(value("--relay")?),
            "--broadcast" => args.broadcast = value("--broadcast")?,
            "--duration" => {
                let secs: f64 = value("--duration")?
                    .parse()
                    .context("--duration takes seconds")?;
                args.duration = Some(Duration::from_secs_f64(secs.max(0.0)));
            }
            "--size" => {
                let size = value("--size")?;
                let (w, h) = size.split_once('x').context("--size takes WIDTHxHEIGHT")?;
                args.width = w.parse().context("bad width")?;
                args.height = h.parse().context("bad height")?;
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => bail!("unknown argument '{other}'\n\n{USAGE}"),
        }
    }
    Ok(args)
}

fn main() {
    if let Err(err) = run() {
        eprintln!("error: {err:#}");
        std::process::exit(1);
    }
}

fn run() -> anyhow::Result<()> {
    let args = parse_args()?;
    gst::init().context("cannot initialize GStreamer")?;
    gstmoq::plugin_register_static().context("cannot register the moq plugin")?;

    let interrupted = Arc::new(AtomicBool::new(false));
    let flag = interrupted.clone();
    // Ctrl-C asks for a clean end (EOS) instead of killing the process.
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async {
                if tokio::signal::ctrl_c().await.is_ok() {
                    eprintln!("interrupt: finishing the broadcast");
                    flag.store(true, Ordering::SeqCst);
                }
            });
        })?;

    if args.relay_only {
        let relay = relay::EmbeddedRelay::start(args.listen)?;
        println!(
            "MoQ relay on {} (self-signed certificate): https://{}/anon with tls-disable-verify=true, \
             or http://localhost:{}/anon to pin it; Ctrl-C stops",
            relay.addr(),
            relay.addr(),
            relay.addr().port()
        );
        while !interrupted.load(Ordering::SeqCst) {
            std::thread::park_timeout(Duration::from_millis(200));
        }
        return Ok(());
    }

    let (_relay, url) = match args.relay {
        Some(url) => (None, url),
        None => {
            let relay = relay::EmbeddedRelay::start(args.listen)?;
            let url = relay.url();
            println!(
                "embedded MoQ relay on {} (self-signed; {url})",
                relay.addr()
            );
            (Some(relay), url)
        }
    };
    demo::run(
        demo::Options {
            url,
            broadcast: args.broadcast,
            width: args.width,
            height: args.height,
            duration: args.duration,
        },
        interrupted,
    )
}
