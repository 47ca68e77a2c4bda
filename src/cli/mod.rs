//! Command-line interface: flags → typed settings, and the commands themselves.

mod evidence;
mod holds;
mod origin;
mod policy_tools;
mod send;
mod state;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use crate::config::Settings;
use crate::telemetry::LogFormat;
use crate::{dev, keys};

#[derive(Debug, Parser)]
#[command(name = "cosigner-guard", version = crate::VERSION, about = "Policy-as-code Callback Handler for the Fireblocks API Co-signer")]
pub struct Cli {
    /// Log output: `pretty` for a terminal, `json` for production [default: log.format, else pretty].
    /// Level from RUST_LOG, else log.level, else info.
    #[arg(long, global = true, value_enum)]
    pub log_format: Option<LogFormat>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the Co-signer callback endpoints.
    Serve(ServeArgs),
    /// Write a handler key pair (PEM; RSA-2048 unless --algorithm es256) and print the public key for
    /// the Co-signer; with --approver NAME, an approver's Ed25519 key pair for `[holds.approvers]`.
    Keygen(KeygenArgs),
    /// Run the policy set's Rego unit tests and fixture cases (`*_test.yaml`).
    Test(policy_tools::TestArgs),
    /// Parse and compile a policy set exactly as `serve` would, reporting every error.
    Check(policy_tools::PolicySets),
    /// Decide one request as the server would, and show the input document and why.
    Eval(policy_tools::EvalArgs),
    /// List held transfers, and approve or reject them with an approver key (via the admin API).
    Holds(holds::HoldsArgs),
    /// Check the decision log's hash chain: `log verify FILE...` (oldest first, e.g.
    /// `decisions.jsonl.2 decisions.jsonl.1 decisions.jsonl`). Exit 0 intact, 2 broken, 1 unreadable.
    Log {
        #[command(subcommand)]
        command: LogCommand,
    },
    /// Decide every decision of a decision log again against a policy set, with what the policy saw
    /// then (input, time, state reads); report what would change. Exit 0 nothing, 2 something, 1 error.
    Replay(evidence::ReplayArgs),
    /// Print a fixture file (`*_test.yaml`) whose one case is a logged decision:
    /// `fixture --from-log FILE --decision-id ID > policies/tests/incident_test.yaml`.
    Fixture(evidence::FixtureArgs),
    /// Start a new project in DIR: the starter policies with their tests, a config, a self-signed
    /// certificate, handler and demo keys — then `serve --config DIR/config.toml`.
    Init {
        #[arg(value_name = "DIR")]
        dir: PathBuf,
    },
    /// Send a payload as the Co-signer does (signed, over pinned TLS) and verify the signed answer:
    /// `send policies/payloads/eth_transfer.json` against `serve --dev`.
    Send(send::SendArgs),
    /// The state store through the admin API: `state release TXID` gives a transaction that never
    /// moved back to every limit it counted in.
    State(state::StateArgs),
    /// Proof of origin: `origin sign` makes a token for a transfer, as a backend would.
    Origin {
        #[command(subcommand)]
        command: origin::OriginCommand,
    },
    /// Print a shell completion script: `cosigner-guard completions bash > /etc/bash_completion.d/cosigner-guard`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Subcommand)]
pub enum LogCommand {
    /// Verify that no record was edited, deleted, inserted or reordered; print the head hash.
    Verify {
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
        /// Verify the signed checkpoints with this public key (PEM; the handler's public key,
        /// or that of decision_log.checkpoint_key).
        #[arg(long, value_name = "PEM")]
        key: Option<PathBuf>,
        /// With --key: the writer's decision_log.checkpoint_every; more records than this after
        /// the last checkpoint fail the check (nothing signed covers them).
        #[arg(long, value_name = "N", default_value_t = crate::config::DEFAULT_CHECKPOINT_EVERY)]
        checkpoint_every: u64,
    },
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The configuration file (TOML).
    #[arg(long, value_name = "FILE", required_unless_present = "dev", conflicts_with = "dev")]
    pub config: Option<PathBuf>,
    /// Development set-up: create (once) TLS and demo keys in ./.cosigner-guard-dev and serve ./policies.
    #[arg(long)]
    pub dev: bool,
}

#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Directory to write callback_private.pem and callback_public.pem into.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// RS256 (RSA-2048, every Co-signer) or ES256 (P-256, recent SGX Co-signers;
    /// set protocol.signing_algorithm = "ES256").
    #[arg(long, value_enum, default_value = "rs256", conflicts_with_all = ["approver", "origin"])]
    pub algorithm: keys::SigningAlgorithm,
    /// Write NAME_private.pem and NAME_public.pem, an approver's Ed25519 key pair, instead.
    #[arg(long, value_name = "NAME", conflicts_with = "origin")]
    pub approver: Option<String>,
    /// Write NAME_private.pem and NAME_public.pem, a backend's Ed25519 key pair for origin tokens
    /// (`[origin.keys]`), instead.
    #[arg(long, value_name = "NAME")]
    pub origin: Option<String>,
}

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let format = cli.log_format.unwrap_or(LogFormat::Pretty);
    match cli.command {
        Command::Serve(args) => serve(args, cli.log_format).map(|()| ExitCode::SUCCESS),
        Command::Keygen(args) => {
            crate::telemetry::init(format, None);
            match (&args.approver, &args.origin) {
                (Some(name), _) => approver_keygen(&args.out, name),
                (None, Some(name)) => origin::keygen(&args.out, name),
                (None, None) => keygen(&args.out, args.algorithm),
            }
            .map(|()| ExitCode::SUCCESS)
        }
        Command::Holds(args) => {
            crate::telemetry::init(format, Some("warn"));
            holds::run(args)
        }
        Command::Log { command: LogCommand::Verify { files, key, checkpoint_every } } => {
            evidence::verify(&files, key.as_deref(), checkpoint_every)
        }
        Command::Replay(args) => {
            crate::telemetry::init(format, Some("warn"));
            evidence::replay(args)
        }
        Command::Fixture(args) => evidence::fixture(args),
        Command::Origin { command } => origin::run(command),
        Command::Send(args) => send::run(args),
        Command::State(args) => {
            crate::telemetry::init(format, Some("warn"));
            state::run(args)
        }
        Command::Init { dir } => {
            let config = dev::init(&dir)?;
            println!(
                "Wrote a new project in {dir}:\n  policies/   the starter set, with its tests (cosigner-guard test {dir}/policies)\n  \
                 config.toml a development configuration, with a self-signed certificate and demo keys\n\n\
                 Serve it: cosigner-guard serve --config {config}",
                dir = dir.display(),
                config = config.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Completions { shell } => {
            use clap::CommandFactory;
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "cosigner-guard", &mut script);
            if shell == clap_complete::Shell::Bash {
                // clap_complete names a hyphenated binary's states two ways (`cosigner__guard__…`
                // where it walks the words, `cosigner__subcmd__guard__…` where it completes), so
                // nothing after the first word completes: make them one.
                script =
                    String::from_utf8_lossy(&script).replace("cosigner__subcmd__guard", "cosigner__guard").into_bytes();
            }
            // A closed pipe (`| head`) is the reader's choice, not an error.
            match std::io::Write::write_all(&mut std::io::stdout(), &script) {
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
                _ => Ok(ExitCode::SUCCESS),
            }
        }
        // The policy tools print results; only warnings and errors go to the log.
        Command::Test(args) => {
            // Mutants are malformed on purpose: the errors their evaluation logs are expected.
            crate::telemetry::init(format, Some(if args.mutate { "off" } else { "warn" }));
            policy_tools::test(args)
        }
        Command::Check(args) => {
            crate::telemetry::init(format, Some("warn"));
            policy_tools::check(args)
        }
        Command::Eval(args) => {
            crate::telemetry::init(format, Some("warn"));
            policy_tools::eval(args)
        }
    }
}

fn serve(args: ServeArgs, log_format: Option<LogFormat>) -> anyhow::Result<()> {
    let config = match (&args.config, args.dev) {
        (Some(path), _) => path.clone(),
        (None, _) => dev::prepare(Path::new(dev::DEV_DIR))?,
    };
    let settings = Settings::load(&config)?;
    let format = log_format.or(settings.log.format).unwrap_or(LogFormat::Pretty);
    crate::telemetry::init(format, settings.log.level.as_deref());
    let banner = if args.dev { Some(dev::banner(Path::new(dev::DEV_DIR), &settings)?) } else { None };

    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        let modes: Vec<&str> = settings.protocol.modes.iter().map(|m| m.as_str()).collect();
        let server = crate::app::build(settings).await?;
        let shutdown = shutdown_signal()?;
        let addr = server.local_addr()?;
        let admin = server.admin_addr().map(|a| a.to_string());
        tracing::info!(%addr, tls = server.is_tls(), ?modes, admin, "listening");
        if let Some(banner) = banner {
            println!("{banner}");
        }
        notify_systemd("READY=1");
        server
            .serve(async {
                shutdown.await;
                notify_systemd("STOPPING=1");
            })
            .await;
        tracing::info!("stopped");
        Ok(())
    })
}

fn keygen(out: &Path, algorithm: keys::SigningAlgorithm) -> anyhow::Result<()> {
    let pair = keys::generate(algorithm)?;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let private = out.join("callback_private.pem");
    let public = out.join("callback_public.pem");
    dev::write_new(&private, &pair.private_pem, true)?;
    dev::write_new(&public, &pair.public_pem, false)?;
    println!("Wrote {} (keep it secret) and {}.", private.display(), public.display());
    println!("Give this public key to the Co-signer as the callback handler's public key:\n");
    print!("{}", pair.public_pem);
    println!("\nSHA-256 fingerprint (of the DER public key): {}", pair.fingerprint);
    Ok(())
}

fn approver_keygen(out: &Path, name: &str) -> anyhow::Result<()> {
    if !crate::holds::valid_approver_name(name) {
        anyhow::bail!("--approver: a name is up to 64 letters, digits and . _ - @");
    }
    let pair = crate::holds::generate_approver_key().map_err(anyhow::Error::msg)?;
    write_named_pair(out, name, &pair, "the approver keeps it; it never goes to the server", "holds.approvers")
}

/// Writes `DIR/NAME_private.pem` (owner-only) and `DIR/NAME_public.pem`, never overwriting, and
/// prints who keeps the private half and the configuration line for the public one.
pub(super) fn write_named_pair(
    out: &Path,
    name: &str,
    pair: &keys::GeneratedKeyPair,
    keeper: &str,
    section: &str,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let private = out.join(format!("{name}_private.pem"));
    let public = out.join(format!("{name}_public.pem"));
    dev::write_new(&private, &pair.private_pem, true)?;
    dev::write_new(&public, &pair.public_pem, false)?;
    println!("Wrote {} ({keeper}) and {}.", private.display(), public.display());
    println!("Add it to the handler's configuration:\n\n[{section}]\n{name} = \"{}\"", public.display());
    println!("\nSHA-256 fingerprint (of the DER public key): {}", pair.fingerprint);
    Ok(())
}

/// Tells systemd (`Type=notify`) the service's state; nothing unless it set `$NOTIFY_SOCKET`.
fn notify_systemd(state: &str) {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::net::{SocketAddr, UnixDatagram};
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else { return };
    let path = path.as_bytes();
    let address = match path.strip_prefix(b"@") {
        Some(name) => SocketAddr::from_abstract_name(name),
        None => SocketAddr::from_pathname(std::path::Path::new(std::ffi::OsStr::from_bytes(path))),
    };
    let sent = UnixDatagram::unbound().and_then(|socket| socket.send_to_addr(state.as_bytes(), &address?));
    if let Err(error) = sent {
        tracing::warn!(%error, state, "cannot notify systemd");
    }
}

/// SIGINT or SIGTERM. The handlers are installed now, before the server says it is listening: a
/// signal sent the moment after would otherwise kill the process without a clean stop.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?;
    let mut terminate = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
    Ok(async move {
        let signal = tokio::select! {
            _ = interrupt.recv() => "SIGINT",
            _ = terminate.recv() => "SIGTERM",
        };
        tracing::info!(signal, "shutting down: no new connections; waiting for in-flight requests");
    })
}
