//! What svcat's integration tests share: a fresh `service-catalog up` and a way to run svcat
//! against it as a user would, capturing its exit code and output.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use test_support::ServerProcess;

pub const SVCAT: &str = env!("CARGO_BIN_EXE_svcat");

/// What one svcat run did.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Fails the test with everything svcat said unless it succeeded.
    pub fn ok(self) -> anyhow::Result<Run> {
        anyhow::ensure!(
            self.code == 0,
            "svcat failed ({}): {}{}",
            self.code,
            self.stdout,
            self.stderr
        );
        Ok(self)
    }
}

/// A running catalog (`service-catalog up`) on a throwaway data dir.
pub struct Catalog {
    pub dir: tempfile::TempDir,
    pub server: ServerProcess,
}

impl Catalog {
    /// `up` with the demo broker, once its classes are in.
    pub async fn with_demo_broker() -> anyhow::Result<Catalog> {
        let catalog = Catalog::start(&[]).await?;
        catalog
            .until(
                "the demo broker's classes",
                |run| run.stdout.contains("mariadb"),
                &["marketplace"],
            )
            .await?;
        Ok(catalog)
    }

    pub async fn start(extra: &[&str]) -> anyhow::Result<Catalog> {
        let dir = tempfile::tempdir()?;
        let server = test_support::service_catalog_up(&dir.path().join("data"), extra).await?;
        Ok(Catalog { dir, server })
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("data/kubeconfig")
    }

    pub async fn client(&self) -> anyhow::Result<kube::Client> {
        let kubeconfig = kube::config::Kubeconfig::read_from(self.kubeconfig())?;
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await?;
        Ok(kube::Client::try_from(config)?)
    }

    /// Runs `svcat --kubeconfig <ours> args...`.
    pub async fn svcat(&self, args: &[&str]) -> anyhow::Result<Run> {
        run_with(SVCAT, &self.kubeconfig(), args).await
    }

    /// Runs svcat until its output satisfies `done` (30 s at most).
    pub async fn until(
        &self,
        what: &str,
        done: impl Fn(&Run) -> bool,
        args: &[&str],
    ) -> anyhow::Result<Run> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let run = self.svcat(args).await?;
            if done(&run) {
                return Ok(run);
            }
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}; last: {run:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

pub async fn run_with(
    program: impl AsRef<Path>,
    kubeconfig: &Path,
    args: &[&str],
) -> anyhow::Result<Run> {
    let output = tokio::process::Command::new(program.as_ref())
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .env_remove("KUBECONFIG")
        .output()
        .await?;
    Ok(Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    })
}

/// Starts the reference broker with its demo catalog, in this process.
pub async fn demo_broker() -> anyhow::Result<reference_broker::RunningBroker> {
    Ok(reference_broker::start(
        reference_broker::BrokerConfig::demo(),
        "127.0.0.1:0".parse()?,
    )
    .await?)
}
