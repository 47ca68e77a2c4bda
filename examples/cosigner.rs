//! A Co-signer simulator: signs a payload file with a Co-signer private key, posts it to the handler
//! over TLS (pinning the handler's certificate, as the Co-signer does), verifies the signed answer
//! with the handler's public key, and prints the decision.
//!
//! With no flags it talks to `cosigner-guard serve --dev`:
//!
//!     cargo run --example cosigner -- policies/payloads/eth_transfer.json

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Parser, ValueEnum};
use cosigner_guard::http_client::Target;
use cosigner_guard::simulator::{sign_request, verify_answer};
use jsonwebtoken::{DecodingKey, EncodingKey};
use serde_json::Value;

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    Jwt,
    Json,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Kind {
    Transaction,
    ConfigChange,
}

#[derive(Parser)]
struct Args {
    /// The Co-signer payload (JSON): a transaction or a configuration change.
    payload: PathBuf,
    /// The handler's base URL, as configured in the Co-signer.
    #[arg(long, default_value = "https://localhost:8443")]
    url: String,
    #[arg(long, value_enum, default_value = "jwt")]
    mode: Mode,
    /// Request kind; by default a payload with a `txId` is a transaction, otherwise a configuration change.
    #[arg(long, value_enum)]
    kind: Option<Kind>,
    /// The handler's TLS certificate, pinned.
    #[arg(long, default_value = ".cosigner-guard-dev/tls/cert.pem")]
    cert: PathBuf,
    /// The Co-signer's private key (jwt mode).
    #[arg(long, default_value = ".cosigner-guard-dev/keys/cosigner_private.pem")]
    cosigner_key: PathBuf,
    /// The handler's public key, to verify its answer (jwt mode).
    #[arg(long, default_value = ".cosigner-guard-dev/keys/callback_public.pem")]
    handler_key: PathBuf,
    /// Send it as a new request: a fresh `requestId` (and `txId`, for a transaction). An edited copy
    /// of a payload already sent otherwise meets the handler's requestId guard.
    #[arg(long)]
    fresh_id: bool,
}

fn read(path: &PathBuf) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut payload: Value = serde_json::from_slice(&read(&args.payload)?).context("payload is not JSON")?;
    let kind = args.kind.unwrap_or(if payload.get("txId").is_some() { Kind::Transaction } else { Kind::ConfigChange });
    if args.fresh_id {
        let id = Value::from(uuid::Uuid::now_v7().to_string());
        if kind == Kind::Transaction {
            payload["txId"] = id.clone();
        }
        payload["requestId"] = id;
    }
    let endpoint = match kind {
        Kind::Transaction => "tx_sign_request",
        Kind::ConfigChange => "config_change_sign_request",
    };
    let cert = if args.url.starts_with("https://") { Some(read(&args.cert)?) } else { None };
    let mut connection = Target::new(&args.url, cert.as_deref()).await?.connect().await?;

    let answer = match args.mode {
        Mode::Jwt => {
            let key = EncodingKey::from_rsa_pem(&read(&args.cosigner_key)?).context("Co-signer private key")?;
            let (status, body) = connection.post(&format!("/v2/{endpoint}"), sign_request(&payload, &key)?).await?;
            if !status.is_success() {
                bail!("handler answered {status}: {}", String::from_utf8_lossy(&body));
            }
            let handler = DecodingKey::from_rsa_pem(&read(&args.handler_key)?).context("handler public key")?;
            let claims = verify_answer(&body, &handler).context("the answer's signature does not verify")?;
            println!("signature: verified with {}", args.handler_key.display());
            claims
        }
        Mode::Json => {
            let (status, body) = connection.post(&format!("/{endpoint}"), serde_json::to_vec(&payload)?).await?;
            if !status.is_success() {
                bail!("handler answered {status}: {}", String::from_utf8_lossy(&body));
            }
            serde_json::from_slice(&body).context("the answer is not JSON")?
        }
    };
    if answer.get("requestId") != payload.get("requestId") {
        bail!("the answer's requestId does not echo the request's: {answer}");
    }
    println!("{}", serde_json::to_string_pretty(&answer)?);
    Ok(())
}
