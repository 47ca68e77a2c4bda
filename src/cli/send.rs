//! `cosigner-guard send PAYLOAD`: the Co-signer stand-in — signs a payload file with a Co-signer
//! private key, posts it to the handler over TLS (pinning the handler's certificate, as the
//! Co-signer does), verifies the signed answer with the handler's public key, and prints the
//! decision. With no flags it talks to `cosigner-guard serve --dev`. Ops hosts have no toolchain:
//! this is how they check a handler before registering a real Co-signer.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use jsonwebtoken::{DecodingKey, EncodingKey};
use serde_json::Value;

use crate::http_client::Target;
use crate::simulator::{sign_request, verify_answer};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SendMode {
    Jwt,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SendKind {
    Transaction,
    ConfigChange,
}

#[derive(Debug, Args)]
pub struct SendArgs {
    /// The Co-signer payload (JSON): a transaction or a configuration change.
    #[arg(value_name = "PAYLOAD")]
    pub payload: PathBuf,
    /// The handler's base URL, as configured in the Co-signer.
    #[arg(long, default_value = "https://localhost:8443")]
    pub url: String,
    #[arg(long, value_enum, default_value = "jwt")]
    pub mode: SendMode,
    /// Request kind [default: a payload with a `txId` is a transaction, otherwise a configuration change].
    #[arg(long, value_enum)]
    pub kind: Option<SendKind>,
    /// The handler's TLS certificate, pinned.
    #[arg(long, value_name = "PEM", default_value = ".cosigner-guard-dev/tls/cert.pem")]
    pub cert: PathBuf,
    /// The Co-signer's private key (jwt mode).
    #[arg(long, value_name = "PEM", default_value = ".cosigner-guard-dev/keys/cosigner_private.pem")]
    pub cosigner_key: PathBuf,
    /// The handler's public key, to verify its answer (jwt mode).
    #[arg(long, value_name = "PEM", default_value = ".cosigner-guard-dev/keys/callback_public.pem")]
    pub handler_key: PathBuf,
    /// Send it as a new request: a fresh `requestId` (and `txId`, for a transaction). An edited copy
    /// of a payload already sent otherwise meets the handler's requestId guard.
    #[arg(long)]
    pub fresh_id: bool,
}

fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

pub fn run(args: SendArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let answer = runtime.block_on(send(&args))?;
    println!("{}", serde_json::to_string_pretty(&answer)?);
    Ok(ExitCode::SUCCESS)
}

async fn send(args: &SendArgs) -> anyhow::Result<Value> {
    let mut payload: Value = serde_json::from_slice(&read(&args.payload)?).context("the payload is not JSON")?;
    let kind =
        args.kind.unwrap_or(if payload.get("txId").is_some() { SendKind::Transaction } else { SendKind::ConfigChange });
    if args.fresh_id {
        let id = Value::from(uuid::Uuid::now_v7().to_string());
        if kind == SendKind::Transaction {
            payload["txId"] = id.clone();
        }
        payload["requestId"] = id;
    }
    let endpoint = match kind {
        SendKind::Transaction => "tx_sign_request",
        SendKind::ConfigChange => "config_change_sign_request",
    };
    let cert = if args.url.starts_with("https://") { Some(read(&args.cert)?) } else { None };
    let target = Target::new(&args.url, cert.as_deref()).await?;
    let mut connection = target.connect().await.with_context(|| format!("cannot reach the handler at {}", args.url))?;
    let answer = match args.mode {
        SendMode::Jwt => {
            let key = EncodingKey::from_rsa_pem(&read(&args.cosigner_key)?).context("the Co-signer private key")?;
            let (status, body) = connection.post(&format!("/v2/{endpoint}"), sign_request(&payload, &key)?).await?;
            if !status.is_success() {
                bail!("the handler answered {status}: {}", String::from_utf8_lossy(&body));
            }
            let handler = DecodingKey::from_rsa_pem(&read(&args.handler_key)?).context("the handler public key")?;
            let claims = verify_answer(&body, &handler).context("the answer's signature does not verify")?;
            eprintln!("signature: verified with {}", args.handler_key.display());
            claims
        }
        SendMode::Json => {
            let (status, body) = connection.post(&format!("/{endpoint}"), serde_json::to_vec(&payload)?).await?;
            if !status.is_success() {
                bail!("the handler answered {status}: {}", String::from_utf8_lossy(&body));
            }
            serde_json::from_slice(&body).context("the answer is not JSON")?
        }
    };
    if answer.get("requestId") != payload.get("requestId") {
        bail!("the answer's requestId does not echo the request's: {answer}");
    }
    Ok(answer)
}
