//! The `service-catalog` binary, run as a user would.

use std::net::SocketAddr;
use std::process::Command;

use reference_broker::{BasicCredentials, BrokerConfig};

fn run<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> anyhow::Result<(bool, String, String)> {
    let output = Command::new(env!("CARGO_BIN_EXE_service-catalog"))
        .args(args)
        .output()?;
    Ok((
        output.status.success(),
        String::from_utf8(output.stdout)?,
        String::from_utf8(output.stderr)?,
    ))
}

#[test]
fn demo_starts_the_reference_broker_and_lists_its_plans() -> anyhow::Result<()> {
    let (ok, stdout, stderr) = run(&["demo"])?;
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("reference broker listening on http://127.0.0.1:"),
        "{stdout}"
    );
    for plan in [
        "user-provided-service    default",
        "mariadb                  10-1-26-ha",
    ] {
        assert!(stdout.contains(plan), "{plan:?} missing from:\n{stdout}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn catalog_reads_an_authenticated_broker_and_reports_bad_credentials() -> anyhow::Result<()> {
    let mut config = BrokerConfig::demo();
    config.credentials = Some(BasicCredentials {
        username: "admin".into(),
        password: "secret".into(),
    });
    let broker = reference_broker::start(config, SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    let url = broker.url().to_owned();

    let args = [
        "catalog",
        "--url",
        &url,
        "--username",
        "admin",
        "--password",
        "secret",
        "--json",
    ]
    .map(String::from);
    let (ok, stdout, stderr) = tokio::task::spawn_blocking(move || run(&args)).await??;
    assert!(ok, "{stderr}");
    let catalog: osb_client::Catalog = serde_json::from_str(&stdout)?;
    assert_eq!(catalog.services.len(), 2);

    let args = [
        "catalog",
        "--url",
        &url,
        "--username",
        "admin",
        "--password",
        "wrong",
    ]
    .map(String::from);
    let (ok, _, stderr) = tokio::task::spawn_blocking(move || run(&args)).await??;
    assert!(!ok);
    assert!(stderr.contains("401"), "{stderr}");
    broker.shutdown().await?;
    Ok(())
}
