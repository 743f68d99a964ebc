//! svcat on a terminal: `--wait` draws a live progress line (spinner, state, current operation,
//! elapsed seconds) redrawn in place, and ends with a check mark; with `NO_COLOR` set, or when
//! not on a terminal, it writes plain lines instead. The terminal is a real pseudo-terminal made
//! by util-linux `script`.

mod common;

use common::{Catalog, SVCAT};

/// Runs svcat on a pseudo-terminal and returns everything the terminal received.
async fn on_a_terminal(catalog: &Catalog, args: &[&str], no_color: bool) -> anyhow::Result<String> {
    let command = std::iter::once(SVCAT.to_string())
        .chain([
            "--kubeconfig".to_string(),
            catalog.kubeconfig().display().to_string(),
        ])
        .chain(args.iter().map(|a| a.to_string()))
        .map(|word| format!("'{}'", word.replace('\'', r"'\''")))
        .collect::<Vec<_>>()
        .join(" ");
    let mut script = tokio::process::Command::new("script");
    script
        .args([
            "--quiet",
            "--return",
            "--flush",
            "--command",
            &command,
            "/dev/null",
        ])
        .env("TERM", "xterm-256color")
        .env_remove("NO_COLOR");
    if no_color {
        script.env("NO_COLOR", "1");
    }
    let output = script.output().await?;
    let seen = String::from_utf8_lossy(&output.stdout).into_owned();
    anyhow::ensure!(
        output.status.success(),
        "svcat failed on the terminal: {seen}"
    );
    Ok(seen)
}

#[tokio::test(flavor = "multi_thread")]
async fn waiting_on_a_terminal_shows_a_live_progress_line() -> anyhow::Result<()> {
    let catalog = Catalog::with_demo_broker().await?;

    let seen = on_a_terminal(
        &catalog,
        &[
            "provision",
            "ha",
            "--class",
            "mariadb",
            "--plan",
            "10-1-26-ha",
            "--wait",
        ],
        false,
    )
    .await?;
    // Redrawn in place: carriage return and erase-line, a spinner frame, the operation, seconds.
    assert!(seen.contains("\r\x1b[K"), "{seen:?}");
    assert!(
        seen.contains("instance default/ha: Provisioning [Provision]"),
        "{seen:?}"
    );
    assert!(
        ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏']
            .iter()
            .any(|c| seen.contains(*c)),
        "{seen:?}"
    );
    assert!(seen.contains("s)"), "elapsed seconds: {seen:?}");
    assert!(seen.contains("✓ instance default/ha: Ready ("), "{seen:?}");
    // Tables are colored on a terminal.
    let seen = on_a_terminal(&catalog, &["get", "instances"], false).await?;
    assert!(seen.contains("\x1b[32mReady\x1b[0m"), "{seen:?}");

    // NO_COLOR: plain lines, no spinner, no escape sequences.
    let seen = on_a_terminal(&catalog, &["deprovision", "ha", "--wait"], true).await?;
    assert!(!seen.contains('\x1b') && !seen.contains('⠋'), "{seen:?}");
    assert!(seen.contains("instance default/ha: deleted"), "{seen:?}");
    let seen = on_a_terminal(&catalog, &["get", "brokers"], true).await?;
    assert!(!seen.contains('\x1b'), "{seen:?}");
    Ok(())
}
