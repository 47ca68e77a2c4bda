//! Records the git revision the binary is built from, for `--version` and the build-info metric.
//! A build outside a checkout (a source tarball, a container without `.git`) says `unknown`, unless
//! `COSIGNER_GUARD_GIT_REVISION` is set in the build's environment.

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=COSIGNER_GUARD_GIT_REVISION");
    println!("cargo:rerun-if-changed=.git/HEAD");
    println!("cargo:rerun-if-changed=.git/refs/heads");
    let revision = std::env::var("COSIGNER_GUARD_GIT_REVISION").ok().filter(|r| !r.is_empty()).unwrap_or_else(|| {
        Command::new("git")
            .args(["rev-parse", "--short=12", "HEAD"])
            .output()
            .ok()
            .filter(|out| out.status.success())
            .and_then(|out| String::from_utf8(out.stdout).ok())
            .map(|text| text.trim().to_string())
            .filter(|text| !text.is_empty())
            .unwrap_or_else(|| "unknown".into())
    });
    println!("cargo:rustc-env=COSIGNER_GUARD_GIT_REVISION={revision}");
}
