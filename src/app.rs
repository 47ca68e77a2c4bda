//! The composition root: the server as `serve` runs it. The server wires its own services; what it
//! must not depend on comes in from here — the policy test runner that gates a reload when
//! `reload.require_tests` is set.

use crate::config::Settings;
use crate::server::Server;

/// Binds the server with every service `serve` has. Needs a Tokio runtime.
pub async fn build(settings: Settings) -> anyhow::Result<Server> {
    Server::bind(settings, Box::new(crate::testing::require_passing_tests)).await
}
