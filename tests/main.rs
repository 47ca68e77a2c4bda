//! The integration tests, one binary: each module starts the real server (or the real binary)
//! and speaks to it as the Co-signer, an operator or an approver would. `common` holds what they
//! share.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod common;

mod architecture;
mod cli;
mod console;
mod deploy;
mod docs;
mod fail_closed;
mod holds;
mod hostile;
mod lifecycle;
mod log_chain;
mod operations;
mod origin;
mod policy_tools;
mod protocol;
mod rawtx;
mod reload;
mod replay;
mod starter_policies;
mod velocity;
