//! `keygen --origin NAME` and `origin sign`: a backend's key pair and tokens made with it, so an
//! operator can try the proof of origin end to end without writing code.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Subcommand;

use crate::origin::{OriginSigner, claims_for, generate_ed25519};

#[derive(Debug, Subcommand)]
pub enum OriginCommand {
    /// Print a token authorising one transfer, signed with a backend's private key: put it in
    /// the transaction's note (or the configured origin.carrier).
    Sign {
        /// The backend's private key (PEM): Ed25519, P-256 or RSA.
        #[arg(long, value_name = "PEM")]
        key: PathBuf,
        /// The asset id, as in the transaction (`ETH`, `USDC`, `BTC`).
        #[arg(long)]
        asset: String,
        /// The exact amount (a decimal string, compared as a number with amountStr).
        #[arg(long)]
        amount: String,
        /// The source, `TYPE:ID` (`VAULT:0`).
        #[arg(long, value_name = "TYPE:ID")]
        source: String,
        /// The destination, `TYPE:ID[:ADDRESS]` (`VAULT:1`, `ONE_TIME_ADDRESS::0xabc…`).
        #[arg(long, value_name = "TYPE:ID[:ADDRESS]")]
        dest: String,
        /// How long the token is valid (`90s`, `10m`, `1h`).
        #[arg(long, default_value = "10m")]
        ttl: String,
        /// The token's unique id [default: a fresh UUID].
        #[arg(long)]
        jti: Option<String>,
        /// The key's name in origin.keys, written as the token's `kid`.
        #[arg(long)]
        name: Option<String>,
    },
}

pub fn run(command: OriginCommand) -> anyhow::Result<ExitCode> {
    let OriginCommand::Sign { key, asset, amount, source, dest, ttl, jti, name } = command;
    let pem = std::fs::read(&key).with_context(|| format!("reading {}", key.display()))?;
    let signer = OriginSigner::from_pem(&pem).map_err(|e| anyhow::anyhow!("--key {}: {e}", key.display()))?;
    if crate::decimal::Amount::parse(&amount).is_none() {
        anyhow::bail!("--amount {amount:?} is not a decimal amount");
    }
    let source = source.split_once(':').context("--source: expected TYPE:ID (VAULT:0)")?;
    let mut parts = dest.splitn(3, ':');
    let (Some(dest_type), Some(dest_id)) = (parts.next(), parts.next()) else {
        anyhow::bail!("--dest: expected TYPE:ID[:ADDRESS] (VAULT:1, ONE_TIME_ADDRESS::0xabc)");
    };
    let address = parts.next().filter(|a| !a.is_empty());
    if dest_id.is_empty() && address.is_none() {
        anyhow::bail!("--dest: an id or an address is needed");
    }
    let ttl: Duration = crate::state::parse_window(&ttl).map_err(|e| anyhow::anyhow!("--ttl: {e}"))?;
    let jti = jti.unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    let now = chrono::Utc::now().timestamp();
    let mut claims = claims_for(&asset, &amount, source, (dest_type, dest_id, address), &jti, now, ttl);
    if dest_id.is_empty() {
        claims["destination"].as_object_mut().map(|d| d.remove("id"));
    }
    println!("{}", signer.sign(&claims, name.as_deref())?);
    Ok(ExitCode::SUCCESS)
}

pub fn keygen(out: &Path, name: &str) -> anyhow::Result<()> {
    if name.is_empty() || name.len() > 64 || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)) {
        anyhow::bail!("--origin: a name is up to 64 letters, digits and . _ -");
    }
    let pair = generate_ed25519()?;
    super::write_named_pair(out, name, &pair, "the backend keeps it; it never goes to the handler", "origin.keys")
}
