//! `cosigner-guard state release TXID`: releases a transaction's records by hand through the admin
//! API, for workspaces without Fireblocks webhooks (or a webhook that never came).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::bail;
use clap::{Args, Subcommand};

use super::holds::{AdminArgs, call, path_segment};
use crate::holds::ApproverSigningKey;
use crate::lifecycle::ReleaseRequest;

#[derive(Debug, Args)]
pub struct StateArgs {
    #[command(flatten)]
    pub admin: AdminArgs,
    #[command(subcommand)]
    pub command: StateCommand,
}

#[derive(Debug, Subcommand)]
pub enum StateCommand {
    /// Release a transaction that never moved (failed, cancelled): its records stop counting
    /// against limits over time, its pending hold is cancelled; logged.
    Release {
        #[arg(value_name = "TXID")]
        tx_id: String,
        /// Why: kept in the decision log.
        #[arg(long, default_value = "released by hand")]
        reason: String,
        /// An approver's private key to sign the release: required unless the admin API is
        /// reached on loopback.
        #[arg(long, value_name = "PEM")]
        key: Option<PathBuf>,
    },
}

pub fn run(args: StateArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async move {
        let StateCommand::Release { tx_id, reason, key } = args.command;
        if reason.trim().is_empty() {
            bail!("--reason must say why");
        }
        let request = match key {
            Some(path) => ReleaseRequest::signed(&tx_id, &reason, &ApproverSigningKey::from_pem_file(&path)?),
            None => ReleaseRequest { reason: reason.clone(), at: None, signature: None },
        };
        let mut admin = args.admin.connect().await?;
        let path = format!("/state/release/{}", path_segment(&tx_id));
        let answer = call(admin.post_json(&path, &serde_json::to_value(&request)?).await).await?;
        let released = answer["released"].as_array().map_or(0, Vec::len);
        println!(
            "Released {released} record(s) of {tx_id}{} (by {}).",
            if answer["hold_cancelled"] == true { "; its pending hold is cancelled" } else { "" },
            answer["by"].as_str().unwrap_or("?")
        );
        Ok(ExitCode::SUCCESS)
    })
}
