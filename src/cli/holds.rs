//! `cosigner-guard holds list|show|approve|reject`: an approver's tool, talking to the admin API;
//! `holds invite|approvers|revoke`: the operator's, for approvers with passkeys (the console).
//! Before signing, it recomputes the hold's digest from the identity it shows, so what the
//! approver reads is what the signature binds.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};
use serde_json::Value;

use crate::holds::{ApproverSigningKey, Hold, SignedVerdict, Verdict};
use crate::http_client::{Connection, Target};

#[derive(Debug, Args)]
pub struct HoldsArgs {
    #[command(flatten)]
    pub admin: AdminArgs,
    #[command(subcommand)]
    pub command: HoldsCommand,
}

/// Where the admin API is, for the commands that talk to it (`holds`, `state`).
#[derive(Debug, Args)]
pub struct AdminArgs {
    /// The admin listener's base URL [default: $COSIGNER_GUARD_ADMIN, else `[admin]` of --config,
    /// else http://127.0.0.1:9090].
    #[arg(long, value_name = "URL", global = true)]
    pub admin: Option<String>,
    /// For an https admin URL: the certificate (PEM) to trust, as `[admin] tls_cert` [default:
    /// that of --config].
    #[arg(long, value_name = "PEM", global = true)]
    pub admin_ca: Option<PathBuf>,
    /// The server's configuration: where its admin listener is, and its certificate.
    #[arg(long, value_name = "FILE", global = true)]
    pub config: Option<PathBuf>,
}

impl AdminArgs {
    /// One connection to the admin API.
    pub async fn connect(&self) -> anyhow::Result<Connection> {
        let (url, ca) = admin_of(self)?;
        let ca = match &ca {
            Some(path) => Some(std::fs::read(path).with_context(|| format!("admin CA {}", path.display()))?),
            None => None,
        };
        let target = Target::new(&url, ca.as_deref()).await?;
        target.connect().await.with_context(|| format!("cannot reach the admin API at {url}"))
    }
}

#[derive(Debug, Subcommand)]
pub enum HoldsCommand {
    /// List holds: id, status, approvals/required, reason, asset, amount, destination, age.
    List {
        /// Only holds in this status.
        #[arg(long, value_parser = ["pending", "approved", "rejected", "expired", "cancelled"])]
        status: Option<String>,
        /// Print the admin API's JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show one hold in full.
    Show { id: String },
    /// Approve a hold with your approver key.
    Approve {
        id: String,
        /// Your approver private key (PKCS#8 PEM, Ed25519 or P-256).
        #[arg(long, value_name = "PEM")]
        key: PathBuf,
    },
    /// Reject a hold with your approver key: one rejection rejects the transaction.
    Reject {
        id: String,
        #[arg(long, value_name = "PEM")]
        key: PathBuf,
        /// Why: recorded with the verdict and sent to the Co-signer.
        #[arg(long)]
        reason: String,
    },
    /// Invite an approver to enrol a passkey: prints a one-time link to the console's
    /// registration page (`[console] enabled = true`; from the handler's host).
    Invite {
        /// The approver's name: one name space with the configured key approvers.
        name: String,
        /// How long the link works (e.g. 30m, 1h, 2d; at most 7d).
        #[arg(long, default_value = "1h")]
        ttl: String,
    },
    /// List the approvers: configured keys and enrolled passkeys.
    Approvers {
        /// Print the admin API's JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Remove a passkey approver: every passkey and session of theirs ends now.
    Revoke { name: String },
}

pub fn run(args: HoldsArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async move {
        let mut admin = args.admin.connect().await?;
        match args.command {
            HoldsCommand::List { status, json } => list(&mut admin, status.as_deref(), json).await,
            HoldsCommand::Show { id } => {
                let hold = fetch(&mut admin, &id).await?;
                println!("{}", serde_json::to_string_pretty(&hold)?);
                Ok(ExitCode::SUCCESS)
            }
            HoldsCommand::Approve { id, key } => verdict(&mut admin, &id, &key, Verdict::Approve, "").await,
            HoldsCommand::Reject { id, key, reason } => {
                if reason.trim().is_empty() {
                    bail!("--reason must say why");
                }
                verdict(&mut admin, &id, &key, Verdict::Reject, &reason).await
            }
            HoldsCommand::Invite { name, ttl } => {
                let body = serde_json::json!({"name": name, "ttl": ttl});
                let answer = call(admin.post_json("/approvers/invites", &body).await).await?;
                println!("{}", answer["link"].as_str().unwrap_or_default());
                eprintln!(
                    "one-time link for {name}, valid until {}: send it to them over a channel you trust",
                    answer["expires_at"].as_str().unwrap_or("?")
                );
                Ok(ExitCode::SUCCESS)
            }
            HoldsCommand::Approvers { json } => approvers(&mut admin, json).await,
            HoldsCommand::Revoke { name } => {
                call(admin.delete(&format!("/approvers/{}", path_segment(&name))).await).await?;
                println!("revoked {name}: their passkeys and sessions no longer count");
                Ok(ExitCode::SUCCESS)
            }
        }
    })
}

/// Where the admin API is: `--admin`, else `COSIGNER_GUARD_ADMIN`, else the `[admin]` section of
/// `--config` (its listen address, https with its `tls_cert` when it has one), else the default.
fn admin_of(args: &AdminArgs) -> anyhow::Result<(String, Option<PathBuf>)> {
    if let Some(url) = args.admin.clone().or_else(|| std::env::var("COSIGNER_GUARD_ADMIN").ok()) {
        return Ok((url, args.admin_ca.clone()));
    }
    let Some(config) = &args.config else {
        return Ok((format!("http://{}", crate::config::DEFAULT_ADMIN_LISTEN), args.admin_ca.clone()));
    };
    let text = std::fs::read_to_string(config).with_context(|| format!("--config {}", config.display()))?;
    let table: toml::Table = toml::from_str(&text).with_context(|| format!("--config {}", config.display()))?;
    let admin = table.get("admin").and_then(toml::Value::as_table);
    let field = |name: &str| admin.and_then(|a| a.get(name)).and_then(toml::Value::as_str);
    let listen = field("listen").unwrap_or(crate::config::DEFAULT_ADMIN_LISTEN);
    // A listener on every interface is reached on this host through loopback.
    let listen = listen.replace("0.0.0.0:", "127.0.0.1:").replace("[::]:", "[::1]:");
    let base = config.parent().unwrap_or(std::path::Path::new("."));
    match field("tls_cert") {
        Some(cert) => {
            // Certificates name a host, and the loopback one is usually `localhost`.
            let listen = listen.replace("127.0.0.1:", "localhost:");
            Ok((format!("https://{listen}"), args.admin_ca.clone().or_else(|| Some(base.join(cert)))))
        }
        None => Ok((format!("http://{listen}"), args.admin_ca.clone())),
    }
}

/// The admin API's answer as JSON, or its error message as the error.
pub(super) async fn call(answer: anyhow::Result<(hyper::StatusCode, axum::body::Bytes)>) -> anyhow::Result<Value> {
    let (status, body) = answer?;
    let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if !status.is_success() {
        let code = json["error"].as_str().unwrap_or("error");
        let message =
            json["message"].as_str().map_or_else(|| String::from_utf8_lossy(&body).into_owned(), String::from);
        bail!("refused ({} {code}): {message}", status.as_u16());
    }
    Ok(json)
}

async fn fetch(admin: &mut Connection, id: &str) -> anyhow::Result<Value> {
    call(admin.get(&format!("/holds/{}", path_segment(id))).await).await
}

/// Hold ids are UUIDs or Co-signer request ids; anything else is escaped for the path.
pub(super) fn path_segment(id: &str) -> String {
    id.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

async fn list(admin: &mut Connection, status: Option<&str>, json: bool) -> anyhow::Result<ExitCode> {
    let query = status.map(|s| format!("?status={s}")).unwrap_or_default();
    let answer = call(admin.get(&format!("/holds{query}")).await).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&answer)?);
        return Ok(ExitCode::SUCCESS);
    }
    let holds = answer["holds"].as_array().cloned().unwrap_or_default();
    if holds.is_empty() {
        println!("no holds");
        return Ok(ExitCode::SUCCESS);
    }
    let now = Utc::now();
    let text = |v: &Value| v.as_str().map_or_else(|| "-".to_string(), str::to_string);
    let rows: Vec<[String; 8]> = holds
        .iter()
        .map(|hold| {
            let summary = &hold["summary"];
            [
                text(&hold["id"]),
                text(&hold["status"]),
                format!("{}/{}", hold["approvals"].as_array().map_or(0, Vec::len), hold["required"]),
                text(&hold["reason"]),
                text(if summary["asset"].is_string() { &summary["asset"] } else { &summary["type"] }),
                text(&summary["amount"]),
                text(&summary["destination"]),
                age(hold["created_at"].as_str(), now),
            ]
        })
        .collect();
    let header = ["ID", "STATUS", "APPROVALS", "REASON", "ASSET", "AMOUNT", "DESTINATION", "AGE"];
    let widths: Vec<usize> =
        (0..8).map(|i| rows.iter().map(|r| r[i].chars().count()).chain([header[i].len()]).max().unwrap_or(0)).collect();
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(header.to_vec());
    for row in &rows {
        line(row.iter().map(String::as_str).collect());
    }
    Ok(ExitCode::SUCCESS)
}

async fn approvers(admin: &mut Connection, json: bool) -> anyhow::Result<ExitCode> {
    let answer = call(admin.get("/approvers").await).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&answer)?);
        return Ok(ExitCode::SUCCESS);
    }
    let approvers = answer["approvers"].as_array().cloned().unwrap_or_default();
    if approvers.is_empty() {
        println!("no approvers");
    }
    for approver in &approvers {
        let name = approver["name"].as_str().unwrap_or("?");
        if let Some(fingerprint) = approver["key"].as_str() {
            println!("{name}  key  sha256:{fingerprint}");
        }
        for passkey in approver["passkeys"].as_array().into_iter().flatten() {
            println!(
                "{name}  passkey  {}  enrolled {}  last used {}",
                passkey["id"].as_str().unwrap_or("?"),
                passkey["enrolled_at"].as_str().unwrap_or("?"),
                passkey["last_used"].as_str().unwrap_or("never"),
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn age(created_at: Option<&str>, now: DateTime<Utc>) -> String {
    let Some(created) = created_at.and_then(|t| DateTime::parse_from_rfc3339(t).ok()) else { return "-".into() };
    let seconds = (now - created.with_timezone(&Utc)).num_seconds().max(0);
    match seconds {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s => format!("{}h", s / 3600),
    }
}

async fn verdict(
    admin: &mut Connection,
    id: &str,
    key: &std::path::Path,
    verdict: Verdict,
    reason: &str,
) -> anyhow::Result<ExitCode> {
    let key = ApproverSigningKey::from_pem_file(key).map_err(anyhow::Error::msg)?;
    let shown = fetch(admin, id).await?;
    let hold: Hold = serde_json::from_value(shown.clone()).context("the admin API's hold is not a hold")?;
    // Never sign a digest the shown identity does not produce.
    let identity = &hold.summary["identity"];
    if crate::keys::hex(&crate::identity::digest_of(identity)) != hold.digest {
        bail!("hold {id}: the identity shown does not match its digest; not signing");
    }
    // What is printed is the identity the digest binds, not a headline beside it.
    println!("hold {id}: {} — {}", describe(identity), hold.reason.as_deref().unwrap_or("held"));
    let signed = SignedVerdict::sign(&hold, verdict, reason, &key, Utc::now());
    let path = format!("/holds/{}/verdicts", path_segment(id));
    let answer = call(admin.post_json(&path, &serde_json::to_value(&signed)?).await).await?;
    let after = &answer["hold"];
    println!(
        "{} as {}: hold {id} is {} ({} of {} approvals)",
        match verdict {
            Verdict::Approve => "approved",
            Verdict::Reject => "rejected",
        },
        answer["approver"].as_str().unwrap_or("?"),
        after["status"].as_str().unwrap_or("?"),
        after["approvals"].as_array().map_or(0, Vec::len),
        after["required"],
    );
    Ok(ExitCode::SUCCESS)
}

/// One line of what an identity moves: `0.5 ETH from VAULT 0 to 0xabc… (0.5)`, or a configuration
/// change's type and details.
fn describe(identity: &Value) -> String {
    let text = |v: &Value| match v {
        Value::String(s) if !s.is_empty() => s.clone(),
        Value::Null | Value::String(_) => "-".to_owned(),
        other => other.to_string(),
    };
    if identity.get("type").is_some() {
        return format!("{} {}", text(&identity["type"]), identity["extraInfo"]);
    }
    let destinations: Vec<String> = identity["destinations"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|d| {
            let place = if d["address"].is_string() {
                text(&d["address"])
            } else {
                format!("{} {}", text(&d["type"]), text(&d["id"]))
            };
            format!("{place} ({})", text(&d["amount"]))
        })
        .collect();
    format!(
        "{} {} {} from {} {} to {}",
        text(&identity["operation"]),
        text(&identity["amount"]),
        text(&identity["asset"]),
        text(&identity["source"]["type"]),
        text(&identity["source"]["id"]),
        destinations.join(", ")
    )
}
