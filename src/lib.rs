//! cosigner-guard: a policy-as-code Callback Handler for the Fireblocks API Co-signer.
//!
//! A request travels one way, one module per step: the [`server`] reads the body, the
//! [`envelope`] verifies and decodes it, [`request`] extracts the Co-signer request, [`policy`]
//! builds the input document and evaluates it, [`decision`] is the parsed answer, and the envelope
//! seals it for the wire. [`pipeline`] strings the steps together.

/// The version and the git revision it was built from: `0.1.0 (3ed822c1a2b4)`.
pub const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (", env!("COSIGNER_GUARD_GIT_REVISION"), ")");

pub mod answer;
pub mod app;
pub mod audit;
pub mod cli;
pub mod config;
pub mod console;
pub mod decimal;
pub mod decision;
pub mod dev;
pub mod envelope;
pub mod holds;
pub mod http_client;
pub mod identity;
pub mod keys;
pub mod lifecycle;
pub mod metrics;
pub mod notify;
pub mod origin;
pub mod pipeline;
pub mod policy;
pub mod rawtx;
pub mod replay;
pub mod request;
pub mod server;
pub mod shadow;
pub mod simulator;
pub mod state;
pub mod telemetry;
pub mod testing;
pub mod tls;
pub mod transfer;
