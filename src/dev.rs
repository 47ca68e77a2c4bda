//! The development set-up behind `serve --dev`: a self-signed certificate, a handler key pair, a
//! demo Co-signer key pair and three demo approvers' key pairs, created once in an ignored local
//! directory.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use crate::config::Settings;
use crate::keys;

pub const DEV_DIR: &str = ".cosigner-guard-dev";

const DEV_CONFIG: &str = r#"# Written by `cosigner-guard serve --dev` or `init`: a development set-up, not for production.
[server]
listen = "127.0.0.1:8443"
tls_cert = "tls/cert.pem"
tls_key = "tls/key.pem"

[protocol]
# Both modes, so the demo can show each; a production JWT deployment enables only "jwt".
modes = ["jwt", "json"]
signing_key = "keys/callback_private.pem"

[protocol.cosigner_keys]
demo = "keys/cosigner_public.pem"

[policy]
dir = "../policies"

[admin]
listen = "127.0.0.1:9090"

# The approval console, http://localhost:9090/console/: `cosigner-guard holds invite NAME`.
[console]
enabled = true

# Demo approvers for held transfers: `cosigner-guard holds approve ID --key approvers/alice_private.pem`.
[holds.approvers]
alice = "approvers/alice_public.pem"
bob = "approvers/bob_public.pem"
carol = "approvers/carol_public.pem"
"#;

const DEV_APPROVERS: [&str; 3] = ["alice", "bob", "carol"];

macro_rules! starter_file {
    ($path:literal) => {
        ($path, include_str!(concat!("../", $path)))
    };
}

/// The starter policy set, its tests and the payloads its fixtures read, built into the binary for
/// `init` (a unit test keeps this list equal to the repository's files).
const STARTER: &[(&str, &str)] = &[
    starter_file!("policies/cosigner/config_change.rego"),
    starter_file!("policies/cosigner/config_change_test.rego"),
    starter_file!("policies/cosigner/config_change_test.yaml"),
    starter_file!("policies/cosigner/transaction.rego"),
    starter_file!("policies/cosigner/transaction_test.rego"),
    starter_file!("policies/cosigner/transaction_test.yaml"),
    starter_file!("policies/lib/consistency.rego"),
    starter_file!("policies/lib/consistency_test.rego"),
    starter_file!("policies/lib/decimal_test.rego"),
    starter_file!("policies/lib/destinations.rego"),
    starter_file!("policies/lib/destinations_test.rego"),
    starter_file!("policies/lib/holds.rego"),
    starter_file!("policies/lib/holds_test.rego"),
    starter_file!("policies/lib/limits.rego"),
    starter_file!("policies/lib/limits_test.rego"),
    starter_file!("policies/lib/origin.rego"),
    starter_file!("policies/lib/origin_test.rego"),
    starter_file!("policies/lib/rawtx.rego"),
    starter_file!("policies/lib/rawtx_test.rego"),
    starter_file!("policies/lib/tap.rego"),
    starter_file!("policies/lib/tap_test.rego"),
    starter_file!("policies/lib/time_rules.rego"),
    starter_file!("policies/lib/time_rules_test.rego"),
    starter_file!("policies/lib/transfer.rego"),
    starter_file!("policies/lib/transfer_spec.rego"),
    starter_file!("policies/origin/data.json"),
    starter_file!("policies/payloads/btc_one_time_address.json"),
    starter_file!("policies/payloads/eth_transfer.json"),
    starter_file!("policies/payloads/usdc_large_transfer.json"),
    starter_file!("policies/payloads/usdc_transfer.json"),
    starter_file!("policies/payloads/whitelist_wallet.json"),
    starter_file!("policies/rawtx/data.json"),
    starter_file!("policies/treasury/data.json"),
];

/// Writes the starter policy set — policies, libraries and data, not tests — into `dir`: what
/// the benchmarks and the load generator serve.
pub fn write_starter_policies(dir: &Path) -> anyhow::Result<()> {
    for (path, text) in STARTER {
        let Some(path) =
            path.strip_prefix("policies/").filter(|p| !p.contains("_test.") && !p.starts_with("payloads/"))
        else {
            continue;
        };
        let to = dir.join(path);
        std::fs::create_dir_all(to.parent().unwrap_or(dir)).with_context(|| format!("creating {}", to.display()))?;
        std::fs::write(&to, text).with_context(|| format!("writing {}", to.display()))?;
    }
    Ok(())
}

/// `cosigner-guard init DIR`: a new project an installed binary can serve and test — the starter
/// policies with their tests, the payloads their fixtures read, and the development set-up (a
/// config, a self-signed certificate, handler, demo Co-signer and demo approvers' keys).
pub fn init(dir: &Path) -> anyhow::Result<PathBuf> {
    if dir.join("config.toml").exists() || dir.join("policies").exists() {
        anyhow::bail!("{} already has a config.toml or policies/: not overwriting a project", dir.display());
    }
    for (path, text) in STARTER {
        let to = dir.join(path);
        std::fs::create_dir_all(to.parent().unwrap_or(dir)).with_context(|| format!("creating {}", to.display()))?;
        write_new(&to, text, false)?;
    }
    prepare_with(dir, "policies")
}

/// Creates the development files unless a complete set exists; returns the config path. The dev
/// set-up serves the repository's `policies/`.
pub fn prepare(dir: &Path) -> anyhow::Result<PathBuf> {
    let config = dir.join("config.toml");
    if !config.exists() && !dir.parent().unwrap_or(Path::new(".")).join("policies").is_dir() {
        anyhow::bail!(
            "serve --dev serves ./policies, and there is none here: run it in a clone of the repository, \
             or start a project with `cosigner-guard init DIR` and `cosigner-guard serve --config DIR/config.toml`"
        );
    }
    prepare_with(dir, "../policies")
}

fn prepare_with(dir: &Path, policies: &str) -> anyhow::Result<PathBuf> {
    let config = dir.join("config.toml");
    if config.exists() {
        return Ok(config);
    }
    for sub in ["tls", "keys", "approvers"] {
        std::fs::create_dir_all(dir.join(sub)).with_context(|| format!("creating {}", dir.join(sub).display()))?;
    }
    let tls = rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()])
        .context("generating the development TLS certificate")?;
    replace(&dir.join("tls/cert.pem"), &tls.cert.pem(), false)?;
    replace(&dir.join("tls/key.pem"), &tls.signing_key.serialize_pem(), true)?;
    for name in ["callback", "cosigner"] {
        let pair = keys::generate_rsa_2048()?;
        replace(&dir.join(format!("keys/{name}_private.pem")), &pair.private_pem, true)?;
        replace(&dir.join(format!("keys/{name}_public.pem")), &pair.public_pem, false)?;
    }
    for name in DEV_APPROVERS {
        let pair = crate::holds::generate_approver_key().map_err(anyhow::Error::msg)?;
        replace(&dir.join(format!("approvers/{name}_private.pem")), &pair.private_pem, true)?;
        replace(&dir.join(format!("approvers/{name}_public.pem")), &pair.public_pem, false)?;
    }
    // Written last: its presence means the set is complete.
    replace(&config, &DEV_CONFIG.replace("\"../policies\"", &format!("{policies:?}")), false)?;
    Ok(config)
}

/// What a developer needs to talk to the dev server.
pub fn banner(dir: &Path, settings: &Settings) -> anyhow::Result<String> {
    let cert_path = dir.join("tls/cert.pem");
    let cert = CertificateDer::from_pem_file(&cert_path).with_context(|| format!("reading {}", cert_path.display()))?;
    let cert_fp = keys::hex(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, cert.as_ref()).as_ref());
    let handler = settings.protocol.handler_key.as_ref().context("dev config has no signing key")?;
    Ok(format!(
        "\n=== cosigner-guard development server ===\n\
         Callback handler URL:   https://localhost:{port}  (modes: jwt at /v2/..., json at /...)\n\
         TLS certificate:        {dir}/tls/cert.pem\n\
         Certificate SHA-256:    {cert_fp}\n\
         Handler public key (give it to the Co-signer), SHA-256 {fp}:\n{pem}\
         Demo Co-signer private key: {dir}/keys/cosigner_private.pem\n\
         Policies:               {policies}  (edits go live on save)\n\
         Status:                 http://{admin}/status\n\
         Held transfers:         cosigner-guard holds list; approve with\n                         \
         cosigner-guard holds approve ID --key {dir}/approvers/alice_private.pem\n\
         Approval console:       {console}  (passkeys: cosigner-guard holds invite NAME)\n\n\
         Send a request as the Co-signer would, from another terminal:\n  \
         cosigner-guard send policies/payloads/eth_transfer.json   (in a clone: cargo run -- send …)\n",
        port = settings.server.listen.port(),
        dir = dir.display(),
        fp = handler.fingerprint(),
        pem = handler.public_pem(),
        policies = settings.policy.dir.display(),
        admin = settings.admin.as_ref().map_or("(disabled)".to_string(), |a| a.listen.to_string()),
        console = match (&settings.console, &settings.admin) {
            (Some(_), Some(admin)) => format!("http://localhost:{}/console/", admin.listen.port()),
            _ => "(disabled)".to_string(),
        },
    ))
}

/// Writes a new file, refusing to overwrite one that exists; private files are owner-only.
pub fn write_new(path: &Path, contents: &str, private: bool) -> anyhow::Result<()> {
    write(path, contents, private, true)
}

fn replace(path: &Path, contents: &str, private: bool) -> anyhow::Result<()> {
    write(path, contents, private, false)
}

fn write(path: &Path, contents: &str, private: bool, create_new: bool) -> anyhow::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true);
    if create_new {
        options.create_new(true);
    } else {
        options.create(true).truncate(true);
    }
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = match options.open(path) {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            anyhow::bail!("{} already exists: not overwriting a key (remove it, or write elsewhere)", path.display())
        }
        opened => opened.with_context(|| format!("writing {}", path.display()))?,
    };
    file.write_all(contents.as_bytes()).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `init` writes what the repository has: a file added to `policies/` or the payloads must be
    /// added to `STARTER` too.
    #[test]
    fn the_starter_list_is_the_repository_s_files() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut found = Vec::new();
        let mut dirs = vec![root.join("policies")];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    dirs.push(path);
                } else {
                    found.push(path.strip_prefix(root).unwrap().to_string_lossy().into_owned());
                }
            }
        }
        found.sort();
        let listed: Vec<String> = STARTER.iter().map(|(path, _)| path.to_string()).collect();
        assert_eq!(listed, found);
    }
}
