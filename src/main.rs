// SPDX-License-Identifier: MIT OR Apache-2.0

//! `moq-gateway`: GStreamer with the `moq` and `rswebrtc` plugins built in.
//!
//! With no arguments it starts a MoQ relay in-process, publishes a test
//! pattern with audio through `moqsink`, plays it back through `moqsrc` and
//! prints what arrives until Ctrl-C. Given a pipeline description it runs it
//! like `gst-launch-1.0`; given a preset name it runs that gateway.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};

use moq_gateway::presets::{self, Preset, Video};
use moq_gateway::{demo, launch, relay, serve};

const USAGE: &str = "\
usage: moq-gateway [--listen ADDR] [--relay URL] [--broadcast NAME] [--duration SECS] [--size WxH]
       moq-gateway relay [--listen ADDR]
       moq-gateway serve [--listen ADDR] [--relay URL] [--stun URL]
       moq-gateway --print PRESET [PRESET OPTIONS]
       moq-gateway [--listen ADDR] [PRESET OPTIONS] PRESET
       moq-gateway PIPELINE-DESCRIPTION...

Without arguments: starts a MoQ relay in this process on --listen (default
127.0.0.1:4443; port 0 picks a free one), publishes a test pattern with audio
through moqsink, plays it back through moqsrc and prints frames and latency
once a second until Ctrl-C (or --duration seconds). --relay uses another relay.

relay: only runs the embedded relay (public path anon/) until Ctrl-C, for
gst-launch-1.0 pipelines with moqsink and moqsrc.

serve: one HTTP listener (--listen, default 127.0.0.1:8080) for many WebRTC
sessions: a WHIP POST to /whip/<broadcast> publishes that broadcast, a WHEP
POST to /whep/<broadcast> watches it (201 + Location; DELETE ends it; CORS
allowed; GET / is a test page). Without --relay it starts the embedded relay
on the listener's address, port 4443.

PRESET is one of the four gateways:
  whip-to-moq   a WHIP publisher (OBS, a browser) feeds a MoQ broadcast
  moq-to-whep   WHEP viewers (browsers) watch a MoQ broadcast
  whep-to-moq   pull from a WHEP server into a MoQ broadcast
  moq-to-whip   push a MoQ broadcast to a WHIP server
--print prints its pipeline description, which runs unchanged under
gst-launch-1.0 with the moq and rswebrtc plugins on GST_PLUGIN_PATH. Run by
name, without --relay, it starts the embedded relay on --listen first.
PRESET OPTIONS:
  --relay URL        MoQ relay (default http://127.0.0.1:4443/anon)
  --broadcast NAME   MoQ broadcast (default live)
  --video CODEC      h264 (default), vp8, vp9 or h265; passed through
  --webrtc URL       the WHIP/WHEP listener (http://HOST:PORT) of a server
                     preset, or the endpoint URL of a client preset
  --stun URL         STUN server for ICE (default none)

A PIPELINE-DESCRIPTION runs like gst-launch-1.0; Ctrl-C sends EOS, and a
WebRTC peer that leaves ends its streams with EOS.";

#[derive(Default)]
struct Args {
    command: Command,
    listen: Option<SocketAddr>,
    relay: Option<String>,
    broadcast: Option<String>,
    duration: Option<Duration>,
    size: Option<(u32, u32)>,
    print: Option<Preset>,
    preset: presets::Options,
    pipeline: Vec<String>,
}

#[derive(Default, PartialEq)]
enum Command {
    #[default]
    Demo,
    Relay,
    Serve,
    Print,
    Preset(Preset),
    Pipeline,
}

fn parse_preset(name: &str) -> anyhow::Result<Preset> {
    Preset::parse(name).with_context(|| {
        let names: Vec<_> = Preset::ALL.iter().map(|p| p.name()).collect();
        format!("unknown preset '{name}' (one of {})", names.join(", "))
    })
}

fn parse_args(argv: impl IntoIterator<Item = String>) -> anyhow::Result<Args> {
    let mut args = Args::default();
    let mut it = argv.into_iter().peekable();
    match it.peek().map(String::as_str) {
        Some("relay") => args.command = Command::Relay,
        Some("serve") => args.command = Command::Serve,
        _ => {}
    }
    if args.command != Command::Demo {
        it.next();
    }
    while let Some(arg) = it.next_if(|a| a.starts_with('-')) {
        let mut value = |name: &str| {
            it.next()
                .with_context(|| format!("{name} needs a value\n\n{USAGE}"))
        };
        match arg.as_str() {
            "--listen" => {
                args.listen = Some(
                    value("--listen")?
                        .parse()
                        .context("--listen takes HOST:PORT")?,
                )
            }
            "--relay" => args.relay = Some(value("--relay")?),
            "--broadcast" => args.broadcast = Some(value("--broadcast")?),
            "--duration" => {
                let secs: f64 = value("--duration")?
                    .parse()
                    .context("--duration takes seconds")?;
                args.duration = Some(Duration::from_secs_f64(secs.max(0.0)));
            }
            "--size" => {
                let size = value("--size")?;
                let (w, h) = size.split_once('x').context("--size takes WIDTHxHEIGHT")?;
                args.size = Some((
                    w.parse().context("bad width")?,
                    h.parse().context("bad height")?,
                ));
            }
            "--print" => args.print = Some(parse_preset(&value("--print")?)?),
            "--video" => {
                let name = value("--video")?;
                args.preset.video = Video::parse(&name).with_context(|| {
                    format!("--video takes h264, vp8, vp9 or h265, not '{name}'")
                })?;
            }
            "--webrtc" => args.preset.webrtc = Some(value("--webrtc")?),
            "--stun" => args.preset.stun = Some(value("--stun")?),
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => bail!("unknown argument '{other}'\n\n{USAGE}"),
        }
    }
    args.pipeline = it.collect();
    if let Some(relay) = &args.relay {
        args.preset.relay = relay.clone();
    }
    if let Some(broadcast) = &args.broadcast {
        args.preset.broadcast = broadcast.clone();
    }
    if args.print.is_some() {
        if !args.pipeline.is_empty() || args.command != Command::Demo {
            bail!("--print takes a preset name and preset options only\n\n{USAGE}");
        }
        args.command = Command::Print;
    } else if !args.pipeline.is_empty() {
        if matches!(args.command, Command::Relay | Command::Serve) {
            bail!("unexpected '{}'\n\n{USAGE}", args.pipeline[0]);
        }
        args.command = match Preset::parse(&args.pipeline[0]) {
            Some(preset) if args.pipeline.len() == 1 => Command::Preset(preset),
            _ => Command::Pipeline,
        };
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
    let args = parse_args(std::env::args().skip(1))?;
    if args.command == Command::Print {
        let preset = args.print.expect("--print has a preset");
        println!("{}", presets::describe(preset, &args.preset));
        return Ok(());
    }
    moq_gateway::init()?;

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
                    flag.store(true, Ordering::SeqCst);
                }
            });
        })?;

    let listen = match args.listen {
        Some(listen) => listen,
        None => "127.0.0.1:4443".parse()?,
    };
    match args.command {
        Command::Relay => {
            let relay = relay::EmbeddedRelay::start(listen)?;
            println!(
                "MoQ relay on {} (self-signed certificate): {} pins it, or https://{}/anon with \
                 tls-disable-verify=true; Ctrl-C stops",
                relay.addr(),
                relay.url(),
                relay.addr(),
            );
            while !interrupted.load(Ordering::SeqCst) {
                std::thread::park_timeout(Duration::from_millis(200));
            }
            Ok(())
        }
        Command::Serve => {
            let listen = match args.listen {
                Some(listen) => listen,
                None => "127.0.0.1:8080".parse()?,
            };
            let (_relay, relay_url) = match args.relay {
                Some(url) => (None, url),
                None => {
                    let relay = relay::EmbeddedRelay::start(SocketAddr::new(listen.ip(), 4443))?;
                    let url = relay.url();
                    println!("embedded MoQ relay on {} ({url})", relay.addr());
                    (Some(relay), url)
                }
            };
            serve::run(
                serve::Options {
                    stun: args.preset.stun.clone(),
                    ..serve::Options::new(listen, relay_url)
                },
                &interrupted,
            )
        }
        Command::Pipeline => {
            let pipeline = launch::build(&args.pipeline)?;
            launch::run(&pipeline, &interrupted)
        }
        Command::Preset(preset) => {
            let mut opts = args.preset.clone();
            let _relay = match args.relay {
                Some(_) => None,
                None => {
                    let relay = relay::EmbeddedRelay::start(listen)?;
                    opts.relay = relay.url();
                    eprintln!("embedded MoQ relay on {} ({})", relay.addr(), opts.relay);
                    Some(relay)
                }
            };
            let description = presets::describe(preset, &opts);
            eprintln!("{}: {}\n{description}", preset.name(), preset.summary());
            let pipeline = launch::build_from_str(&description)?;
            launch::run(&pipeline, &interrupted)
        }
        Command::Demo | Command::Print => {
            let (_relay, url) = match args.relay {
                Some(url) => (None, url),
                None => {
                    let relay = relay::EmbeddedRelay::start(listen)?;
                    let url = relay.url();
                    println!("embedded MoQ relay on {} ({url})", relay.addr());
                    (Some(relay), url)
                }
            };
            let (width, height) = args.size.unwrap_or((1280, 720));
            demo::run(
                demo::Options {
                    url,
                    broadcast: args.broadcast.unwrap_or_else(|| "demo".into()),
                    width,
                    height,
                    duration: args.duration,
                },
                interrupted,
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> Args {
        parse_args(line.split_whitespace().map(String::from)).unwrap()
    }

    #[test]
    fn commands() {
        assert!(parse("").command == Command::Demo);
        assert!(parse("relay --listen 127.0.0.1:0").command == Command::Relay);
        assert!(
            parse("serve --listen 127.0.0.1:0 --relay http://r:1/anon").command == Command::Serve
        );
        assert!(parse("--print moq-to-whep --video vp8").command == Command::Print);
        let args = parse("--relay http://r:1/anon whip-to-moq");
        assert!(args.command == Command::Preset(Preset::WhipToMoq));
        assert_eq!(args.preset.relay, "http://r:1/anon");
        let args = parse("videotestsrc ! fakesink");
        assert!(args.command == Command::Pipeline);
        assert_eq!(args.pipeline, ["videotestsrc", "!", "fakesink"]);
    }

    #[test]
    fn mistakes_are_explained() {
        let err = |line: &str| {
            parse_args(line.split_whitespace().map(String::from))
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        };
        assert!(err("--print nowhere").contains("unknown preset 'nowhere'"));
        assert!(err("--video theora").contains("--video takes"));
        assert!(err("--print whip-to-moq fakesink").contains("--print takes"));
        assert!(err("--bogus").contains("unknown argument '--bogus'"));
    }
}
