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

use moq_gateway::auth::Access;
use moq_gateway::presets::{self, Preset, Video};
use moq_gateway::{demo, launch, relay, serve};

/// What the command line asks for, as `run` takes it.
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
    /// serve: the most sessions at once.
    max_sessions: Option<usize>,
    /// relay, serve: tokens and public paths.
    auth: AuthArgs,
    /// serve: HTTPS.
    tls: TlsArgs,
    /// relay, serve: the embedded relay's cluster.
    cluster: ClusterArgs,
    /// serve: which viewers share egress pipelines.
    share: ShareArgs,
}

/// Which WHEP viewers of a broadcast share one egress pipeline.
#[derive(clap::Args, Debug, Default, Clone)]
struct ShareArgs {
    /// Give every WHEP viewer a pipeline and a MoQ subscription of its
    /// own (by default viewers of a broadcast share one where nothing
    /// differs between them)
    #[arg(long)]
    egress_per_viewer: bool,
    /// Viewers of a broadcast published elsewhere (another gateway, a MoQ
    /// publisher) share while its groups last at most this long: one who
    /// joins waits for the next keyframe. 0: share only broadcasts
    /// published here [default: 2]
    #[arg(long, value_name = "SECS", value_parser = parse_duration)]
    share_max_group: Option<Duration>,
}

/// Who may publish and watch what, on the embedded relay and on serve's
/// WHIP/WHEP alike: moq-relay's JWTs and public patterns.
#[derive(clap::Args, Debug, Default, Clone)]
struct AuthArgs {
    /// Require a JWT signed by this key (a JWK file, as `moq auth generate`
    /// writes): WHIP/WHEP in `Authorization: Bearer`, MoQ clients in the
    /// URL's `jwt` query (moqsink/moqsrc auth-token)
    #[arg(long, value_name = "FILE")]
    auth_key: Option<std::path::PathBuf>,
    /// A path pattern anyone may publish and watch without a token, rooted
    /// at the relay's `/` (`anon/**` is the default without --auth-key);
    /// repeatable
    #[arg(long, value_name = "PATTERN")]
    auth_public: Vec<String>,
}

/// The embedded relay's moq-relay cluster options.
#[derive(clap::Args, Debug, Default, Clone)]
struct ClusterArgs {
    /// Join a moq-relay cluster through this relay (a full URL at its root
    /// path, e.g. http://10.0.0.2:4443/); repeatable
    #[arg(long, value_name = "URL")]
    cluster_connect: Vec<String>,
    /// This relay's own URL as the other nodes reach it
    #[arg(long, value_name = "URL")]
    cluster_node: Option<String>,
    /// A fixed hop id for this relay (random on each start otherwise)
    #[arg(long, value_name = "N")]
    cluster_id: Option<u64>,
    /// A file holding the JWT presented when dialing --cluster-connect
    #[arg(long, value_name = "FILE")]
    cluster_token: Option<std::path::PathBuf>,
}

impl From<ClusterArgs> for relay::Cluster {
    fn from(args: ClusterArgs) -> Self {
        Self {
            connect: args.cluster_connect,
            node: args.cluster_node,
            id: args.cluster_id,
            token: args.cluster_token,
        }
    }
}

/// serve's HTTPS, on the same port as its HTTP.
#[derive(clap::Args, Debug, Default, Clone)]
struct TlsArgs {
    /// Answer HTTPS with this certificate chain (PEM); plain HTTP is then
    /// answered for localhost only
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<std::path::PathBuf>,
    /// The private key of --tls-cert (PEM)
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<std::path::PathBuf>,
    /// Answer HTTPS with a self-signed certificate made up for this host
    /// name or address (repeatable), for trying HTTPS without a CA
    #[arg(long, value_name = "HOST", conflicts_with = "tls_cert")]
    tls_generate: Vec<String>,
}

impl TlsArgs {
    fn tls(&self) -> anyhow::Result<Option<moq_gateway::tls::Tls>> {
        use moq_gateway::tls::Tls;
        if let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) {
            return Tls::from_pem(cert, key).map(Some);
        }
        if self.tls_generate.is_empty() {
            return Ok(None);
        }
        let (tls, fingerprint) = Tls::self_signed(self.tls_generate.clone())?;
        eprintln!(
            "HTTPS with a self-signed certificate for {}, SHA-256 {fingerprint}",
            self.tls_generate.join(", ")
        );
        Ok(Some(tls))
    }
}

impl AuthArgs {
    /// The rules asked for, or `None` when neither option is given (the
    /// embedded relay then keeps `anon/` open and serve checks nothing).
    fn access(&self) -> anyhow::Result<Option<Access>> {
        if self.auth_key.is_none() && self.auth_public.is_empty() {
            return Ok(None);
        }
        let public = self
            .auth_public
            .iter()
            .map(|p| {
                p.parse()
                    .map_err(|err| anyhow::anyhow!("--auth-public {p}: {err}"))
            })
            .collect::<anyhow::Result<_>>()?;
        Access::new(self.auth_key.clone(), public).map(Some)
    }
}

#[derive(Default, PartialEq, Debug)]
enum Command {
    #[default]
    Demo,
    Relay,
    Serve,
    Print,
    Preset(Preset),
    Pipeline,
}

const AFTER_HELP: &str = "\
Without arguments: starts a MoQ relay in this process on --listen (default
127.0.0.1:4443; port 0 picks a free one), publishes a test pattern with audio
through moqsink, plays it back through moqsrc and prints frames and latency
once a second until Ctrl-C (or --duration seconds). --relay uses another relay.

PRESET is one of the four gateways:
  whip-to-moq   a WHIP publisher (OBS, a browser) feeds a MoQ broadcast
  moq-to-whep   WHEP viewers (browsers) watch a MoQ broadcast
  whep-to-moq   pull from a WHEP server into a MoQ broadcast
  moq-to-whip   push a MoQ broadcast to a WHIP server
--print prints its pipeline description, which runs unchanged under
gst-launch-1.0 with the moq and rswebrtc plugins on GST_PLUGIN_PATH. Run by
name, without --relay, it starts the embedded relay on --listen first.

A PIPELINE-DESCRIPTION runs like gst-launch-1.0; Ctrl-C sends EOS, and a
WebRTC peer that leaves ends its streams with EOS.";

/// GStreamer with the moq and rswebrtc plugins built in: a demo, a MoQ
/// relay, a WHIP/WHEP gateway, four gateway presets, or any pipeline.
#[derive(clap::Parser, Debug)]
#[command(
    name = "moq-gateway",
    version,
    after_help = AFTER_HELP,
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Sub>,
    /// Address of the embedded relay (demo and presets)
    #[arg(long, value_name = "HOST:PORT")]
    listen: Option<SocketAddr>,
    /// Use this MoQ relay instead of the embedded one (default of the
    /// presets: http://127.0.0.1:4443/anon)
    #[arg(long, value_name = "URL")]
    relay: Option<String>,
    /// MoQ broadcast (demo: demo, presets: live)
    #[arg(long, value_name = "NAME")]
    broadcast: Option<String>,
    /// Demo: stop after this many seconds
    #[arg(long, value_name = "SECS", value_parser = parse_duration)]
    duration: Option<Duration>,
    /// Demo: picture size
    #[arg(long, value_name = "WxH", value_parser = parse_size)]
    size: Option<(u32, u32)>,
    /// Print a preset's pipeline description instead of running it
    #[arg(long, value_name = "PRESET", value_parser = parse_preset)]
    print: Option<Preset>,
    /// Presets: video codec, passed through: h264 (default), vp8, vp9, h265
    #[arg(long, value_name = "CODEC", value_parser = parse_video)]
    video: Option<Video>,
    /// Presets: the WHIP/WHEP listener (http://HOST:PORT) of a server
    /// preset, or the endpoint URL of a client preset
    #[arg(long, value_name = "URL")]
    webrtc: Option<String>,
    /// Presets: STUN server for ICE (default none)
    #[arg(long, value_name = "URL")]
    stun: Option<String>,
    /// A preset name, or a pipeline description run like gst-launch-1.0
    #[arg(value_name = "PRESET | PIPELINE-DESCRIPTION", trailing_var_arg = true)]
    pipeline: Vec<String>,
}

#[derive(clap::Subcommand, Debug)]
enum Sub {
    /// Only the embedded relay (public path anon/) until Ctrl-C, for
    /// gst-launch-1.0 pipelines with moqsink and moqsrc
    Relay {
        /// Relay address (default 127.0.0.1:4443)
        #[arg(long, value_name = "HOST:PORT")]
        listen: Option<SocketAddr>,
        #[command(flatten)]
        auth: AuthArgs,
        #[command(flatten)]
        cluster: ClusterArgs,
    },
    /// One HTTP listener for many WebRTC sessions: POST /whip/<broadcast>
    /// publishes, POST /whep/<broadcast> watches (201 + Location; DELETE
    /// ends it; GET / is a test page)
    Serve {
        /// HTTP address (default 127.0.0.1:8080)
        #[arg(long, value_name = "HOST:PORT")]
        listen: Option<SocketAddr>,
        /// MoQ relay (default: the embedded relay on the listener's host,
        /// port 4443)
        #[arg(long, value_name = "URL")]
        relay: Option<String>,
        /// STUN server for ICE (default none)
        #[arg(long, value_name = "URL")]
        stun: Option<String>,
        /// The most sessions (publishers and viewers) at once; past it a
        /// POST gets 503 (default 300)
        #[arg(long, value_name = "N")]
        max_sessions: Option<usize>,
        #[command(flatten)]
        auth: AuthArgs,
        #[command(flatten)]
        share: ShareArgs,
        #[command(flatten)]
        tls: TlsArgs,
        #[command(flatten)]
        cluster: ClusterArgs,
    },
}

impl Sub {
    /// A subcommand's options, as `run` takes them.
    fn into_args(self, args: &mut Args) {
        match self {
            Sub::Relay {
                listen,
                auth,
                cluster,
            } => {
                args.command = Command::Relay;
                args.listen = listen;
                args.auth = auth;
                args.cluster = cluster;
            }
            Sub::Serve {
                listen,
                relay,
                stun,
                max_sessions,
                auth,
                share,
                tls,
                cluster,
            } => {
                args.command = Command::Serve;
                args.listen = listen;
                args.relay = relay;
                args.preset.stun = stun;
                args.max_sessions = max_sessions;
                args.auth = auth;
                args.tls = tls;
                args.cluster = cluster;
                args.share = share;
            }
        }
    }
}

fn parse_preset(name: &str) -> Result<Preset, String> {
    Preset::parse(name).ok_or_else(|| {
        let names: Vec<_> = Preset::ALL.iter().map(|p| p.name()).collect();
        format!("unknown preset '{name}' (one of {})", names.join(", "))
    })
}

fn parse_video(name: &str) -> Result<Video, String> {
    Video::parse(name).ok_or_else(|| format!("takes h264, vp8, vp9 or h265, not '{name}'"))
}

fn parse_duration(secs: &str) -> Result<Duration, String> {
    // Not from_secs_f64: "inf" parses, and would panic there.
    secs.parse::<f64>()
        .ok()
        .and_then(|secs| Duration::try_from_secs_f64(secs).ok())
        .ok_or_else(|| "takes a number of seconds, 0 or more".to_string())
}

fn parse_size(size: &str) -> Result<(u32, u32), String> {
    let (w, h) = size.split_once('x').ok_or("takes WIDTHxHEIGHT")?;
    match (w.parse(), h.parse()) {
        (Ok(w), Ok(h)) => Ok((w, h)),
        _ => Err("takes WIDTHxHEIGHT, in pixels".into()),
    }
}

impl Cli {
    /// What to run, checked beyond what clap checks.
    fn into_args(self) -> Result<Args, String> {
        let mut args = Args {
            listen: self.listen,
            relay: self.relay,
            broadcast: self.broadcast,
            duration: self.duration,
            size: self.size,
            print: self.print,
            pipeline: self.pipeline,
            ..Args::default()
        };
        if let Some(sub) = self.command {
            sub.into_args(&mut args);
            return Ok(args);
        }
        if let Some(video) = self.video {
            args.preset.video = video;
        }
        args.preset.webrtc = self.webrtc;
        args.preset.stun = self.stun;
        if let Some(relay) = &args.relay {
            args.preset.relay = relay.clone();
        }
        if let Some(broadcast) = &args.broadcast {
            args.preset.broadcast = broadcast.clone();
        }
        if args.print.is_some() {
            if !args.pipeline.is_empty() {
                return Err("--print takes a preset name and preset options only".into());
            }
            args.command = Command::Print;
        } else if !args.pipeline.is_empty() {
            args.command = free_words_command(&args.pipeline)?;
        }
        Ok(args)
    }
}

/// What the free words run: a preset alone by its name, else a pipeline
/// description. Everything after the first free word is the description,
/// so options after a preset's name would be taken for one (and fail as
/// "no element ladder"): an error says where they go.
fn free_words_command(words: &[String]) -> Result<Command, String> {
    Ok(match Preset::parse(&words[0]) {
        Some(preset) if words.len() == 1 => Command::Preset(preset),
        Some(_) => {
            return Err(format!(
                "options go before the preset's name: moq-gateway {} {}",
                words[1..].join(" "),
                words[0]
            ));
        }
        None => Command::Pipeline,
    })
}

fn parse_args(argv: impl IntoIterator<Item = String>) -> Result<Args, clap::Error> {
    use clap::{CommandFactory, Parser};
    let cli = Cli::try_parse_from(std::iter::once("moq-gateway".to_string()).chain(argv))?;
    cli.into_args()
        .map_err(|msg| Cli::command().error(clap::error::ErrorKind::ArgumentConflict, msg))
}

fn main() {
    if let Err(err) = run() {
        eprintln!("error: {err:#}");
        std::process::exit(1);
    }
}

fn run() -> anyhow::Result<()> {
    // Help, version and usage errors print clap's way and exit with its codes.
    let args = parse_args(std::env::args().skip(1)).unwrap_or_else(|err| err.exit());
    if args.command == Command::Print {
        let preset = args.print.expect("--print has a preset");
        println!("{}", presets::describe(preset, &args.preset));
        return Ok(());
    }
    moq_gateway::init()?;
    let interrupted = watch_ctrl_c()?;
    match args.command {
        Command::Relay => run_relay(&args, &interrupted),
        Command::Serve => run_serve(args, &interrupted),
        Command::Pipeline => {
            let pipeline = launch::build(&args.pipeline)?;
            launch::run(&pipeline, &interrupted)
        }
        Command::Preset(preset) => run_preset(preset, &args, &interrupted),
        Command::Demo | Command::Print => run_demo(args, interrupted),
    }
}

/// A flag set by Ctrl-C, which asks for a clean end (EOS) instead of
/// killing the process.
fn watch_ctrl_c() -> anyhow::Result<Arc<AtomicBool>> {
    let interrupted = Arc::new(AtomicBool::new(false));
    let flag = interrupted.clone();
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
    Ok(interrupted)
}

/// Where the embedded relay listens unless told: 127.0.0.1:4443.
fn relay_listen(args: &Args) -> SocketAddr {
    args.listen
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 4443)))
}

/// `--relay`, or the embedded relay started on `listen` (kept running as
/// long as the returned handle lives), admitting sessions by `access`.
fn relay_or_embedded(
    relay: Option<String>,
    listen: SocketAddr,
    access: Option<Access>,
    cluster: relay::Cluster,
) -> anyhow::Result<(Option<relay::EmbeddedRelay>, String)> {
    Ok(if let Some(url) = relay {
        if !cluster.connect.is_empty() {
            anyhow::bail!("--cluster-connect is for the embedded relay; --relay names another");
        }
        (None, url)
    } else {
        let access = access.unwrap_or_else(Access::open);
        let relay = relay::EmbeddedRelay::start_with(listen, access, cluster)?;
        let url = relay.url();
        eprintln!("embedded MoQ relay on {} ({url})", relay.addr());
        (Some(relay), url)
    })
}

fn run_relay(args: &Args, interrupted: &AtomicBool) -> anyhow::Result<()> {
    let access = args.auth.access()?.unwrap_or_else(Access::open);
    let relay =
        relay::EmbeddedRelay::start_with(relay_listen(args), access, args.cluster.clone().into())?;
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

fn run_serve(args: Args, interrupted: &AtomicBool) -> anyhow::Result<()> {
    let listen = args
        .listen
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8080)));
    let access = args.auth.access()?;
    let tls = args.tls.tls()?;
    let (_relay, relay_url) = relay_or_embedded(
        args.relay,
        SocketAddr::new(listen.ip(), 4443),
        access.clone(),
        args.cluster.clone().into(),
    )?;
    serve::run(
        serve::Options {
            stun: args.preset.stun.clone(),
            max_sessions: args.max_sessions.unwrap_or(serve::DEFAULT_MAX_SESSIONS),
            access,
            tls,
            share_egress: !args.share.egress_per_viewer,
            share_max_group: args
                .share
                .share_max_group
                .unwrap_or(serve::DEFAULT_SHARE_MAX_GROUP),
            ..serve::Options::new(listen, relay_url)
        },
        interrupted,
    )
}

fn run_preset(preset: Preset, args: &Args, interrupted: &AtomicBool) -> anyhow::Result<()> {
    let mut opts = args.preset.clone();
    let (_relay, url) = relay_or_embedded(
        args.relay.clone(),
        relay_listen(args),
        None,
        relay::Cluster::default(),
    )?;
    opts.relay = url;
    let description = presets::describe(preset, &opts);
    eprintln!("{}: {}\n{description}", preset.name(), preset.summary());
    let pipeline = launch::build_from_str(&description)?;
    launch::run(&pipeline, interrupted)
}

fn run_demo(args: Args, interrupted: Arc<AtomicBool>) -> anyhow::Result<()> {
    let (_relay, url) = relay_or_embedded(
        args.relay.clone(),
        relay_listen(&args),
        None,
        relay::Cluster::default(),
    )?;
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
        let args = parse("serve --egress-per-viewer --share-max-group 0.5");
        assert!(args.share.egress_per_viewer);
        assert_eq!(args.share.share_max_group, Some(Duration::from_millis(500)));
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
        assert!(err("--video theora").contains("takes h264, vp8"));
        assert!(err("--print whip-to-moq fakesink").contains("--print takes"));
        assert!(err("--bogus").contains("--bogus"));
        assert!(err("--size 12").contains("WIDTHxHEIGHT"));
        assert!(err("--listen nowhere").contains("--listen"));
        assert!(err("--duration inf").contains("takes a number of seconds"));
        assert!(err("serve --share-max-group=-1").contains("takes a number of seconds"));
        assert!(
            err("ladder --broadcast live").contains(
                "options go before the preset's name: moq-gateway --broadcast live ladder"
            )
        );
        // Subcommands take their own options only.
        assert!(err("relay --broadcast x").contains("--broadcast"));
    }

    #[test]
    fn help_names_every_command() {
        use clap::CommandFactory;
        let help = Cli::command().render_long_help().to_string();
        for word in [
            "relay",
            "serve",
            "--print",
            "whip-to-moq",
            "PIPELINE-DESCRIPTION",
        ] {
            assert!(help.contains(word), "{word} missing from\n{help}");
        }
    }
}
