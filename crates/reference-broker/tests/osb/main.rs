//! The OSB client against real brokers over HTTP on 127.0.0.1: our reference broker (every
//! endpoint, sync and async, every error class, faults, TLS) and a broker built on PyPI's
//! `openbrokerapi` that we did not write.

mod endpoints;
mod hostile;
mod interop;

use std::time::Duration;

use osb_client::{Auth, Client, ClientConfig};
use serde_json::Value;
use test_support::ServerProcess;

pub const USERNAME: &str = "admin";
pub const PASSWORD: &str = "secret";

// IDs of the built-in demo catalog.
pub const UPS_SERVICE: &str = "4f6e6cf6-ffdd-425f-a2c7-3c9258ad2468";
pub const UPS_PLAN: &str = "86064792-7ea2-467b-af93-ac9694d96d52";
pub const DB_SERVICE: &str = "3f1b6a2e-6c5d-4b8e-9a55-0d1f7e6f3a10";
pub const DB_PLAN: &str = "b3e7a9c4-1d2f-4e5a-8b6c-7d8e9f0a1b2c";
pub const DB_HA_PLAN: &str = "c4f8b0d5-2e3a-4f6b-9c7d-8e9f0a1b2c3d";

pub type TestResult = anyhow::Result<()>;

/// A reference broker process with basic auth, and a client for it.
pub struct Broker {
    pub process: ServerProcess,
    pub client: Client,
}

impl Broker {
    /// Starts the broker binary with auth, fast async operations, and `extra` arguments.
    pub async fn start(extra: &[&str]) -> anyhow::Result<Self> {
        let mut args = vec![
            "--username",
            USERNAME,
            "--password",
            PASSWORD,
            "--operation-ms",
            "300",
        ];
        args.extend_from_slice(extra);
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_reference-broker"));
        // Warnings and errors only: injected faults would otherwise flood the test output.
        command.args(&args).env("RUST_LOG", "warn");
        let process = ServerProcess::spawn(command).await?;
        let client = client_for(&process.url)?;
        Ok(Self { process, client })
    }

    /// Adds a fault through the admin endpoint.
    pub async fn inject(&self, fault: Value) -> anyhow::Result<()> {
        let response = reqwest::Client::new()
            .post(format!("{}/admin/faults", self.process.url))
            .basic_auth(USERNAME, Some(PASSWORD))
            .json(&fault)
            .send()
            .await?;
        anyhow::ensure!(
            response.status() == 201,
            "fault refused: {}",
            response.text().await?
        );
        Ok(())
    }

    /// The requests the broker saw (headers only).
    pub async fn recorded_requests(&self) -> anyhow::Result<Vec<Value>> {
        Ok(reqwest::Client::new()
            .get(format!("{}/admin/requests", self.process.url))
            .basic_auth(USERNAME, Some(PASSWORD))
            .send()
            .await?
            .json()
            .await?)
    }
}

pub fn config_for(url: &str) -> anyhow::Result<ClientConfig> {
    Ok(ClientConfig::new(url)?
        .with_auth(Auth::Basic {
            username: USERNAME.into(),
            password: PASSWORD.into(),
        })
        .with_timeouts(Duration::from_secs(5), Duration::from_secs(10)))
}

pub fn client_for(url: &str) -> anyhow::Result<Client> {
    Ok(Client::new(config_for(url)?)?)
}
