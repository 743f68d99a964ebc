//! What the binary's integration tests share: the API server as a user starts it (HTTPS, its
//! generated kubeconfig with the admin token) and a kube client for it.

#![allow(dead_code)] // each test binary uses its own part

use std::path::PathBuf;

use kube::Client;
use test_support::ServerProcess;

pub const BINARY: &str = env!("CARGO_BIN_EXE_service-catalog");

pub struct ApiServer {
    pub process: ServerProcess,
    pub config: PathBuf,
    pub dir: tempfile::TempDir,
    /// SQLite, or etcd with `SERVICE_CATALOG_TEST_STORAGE=etcd`; kept while the server runs.
    pub storage: test_support::TestStorage,
}

impl ApiServer {
    pub async fn start() -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let storage = test_support::TestStorage::from_env().await?;
        let args = storage.apiserver_args(&dir.path().join("data"), false);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let process = ServerProcess::start(BINARY, &args).await?;
        Ok(Self {
            process,
            config: dir.path().join("data/kubeconfig"),
            dir,
            storage,
        })
    }

    pub async fn client(&self) -> anyhow::Result<Client> {
        let kubeconfig = kube::config::Kubeconfig::read_from(&self.config)?;
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await?;
        Ok(Client::try_from(config)?)
    }
}

/// The controller manager as its own process (so a test can kill it), on `api`, as its own
/// user (the generated `controller.kubeconfig`), with quick retries; `extra` flags are added.
pub async fn controller_manager(api: &ApiServer, extra: &[&str]) -> anyhow::Result<ServerProcess> {
    // The controller's own identity: the tests prove its role is enough.
    let config = api
        .config
        .with_file_name("controller.kubeconfig")
        .to_string_lossy()
        .into_owned();
    let mut args = vec![
        "controller-manager",
        "--kubeconfig",
        &config,
        "--metrics-listen",
        "127.0.0.1:0",
        "--retry-min",
        "200ms",
        "--retry-max",
        "2s",
    ];
    args.extend_from_slice(extra);
    ServerProcess::start(BINARY, &args).await
}

/// Polls `check` every 100 ms until it yields a value; fails after 30 s naming `what`.
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        if let Some(value) = check().await? {
            return Ok(value);
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
