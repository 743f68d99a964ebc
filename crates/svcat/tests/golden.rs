//! Golden output: every command's table, wide, json and yaml output against a live catalog (the
//! demo broker, one instance of each kind of plan, one binding), compared with the files in
//! `tests/golden/`. What changes from run to run (times, UIDs, resourceVersions, ports) is
//! replaced by fixed-width placeholders, so the columns' alignment is still checked.
//!
//! After an intended change: `SVCAT_UPDATE_GOLDEN=1 cargo test -p svcat --test golden`, then
//! review the diff.

mod common;

use std::path::PathBuf;

use common::Catalog;
use regex::Regex;

struct Normalizer {
    rules: Vec<(Regex, &'static str)>,
}

impl Normalizer {
    fn new() -> anyhow::Result<Normalizer> {
        Ok(Normalizer {
            rules: vec![
                (
                    Regex::new(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z")?,
                    "YYYY-MM-DDTHH:MM:SSZ",
                ),
                (
                    Regex::new(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")?,
                    "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx",
                ),
                // Ephemeral ports are five digits.
                (Regex::new(r"127\.0\.0\.1:\d{5}")?, "127.0.0.1:PPPPP"),
                (
                    Regex::new(r#"(resourceVersion"?: )["']?\d+["']?"#)?,
                    "${1}\"RV\"",
                ),
            ],
        })
    }

    fn apply(&self, text: &str) -> String {
        self.rules
            .iter()
            .fold(text.to_string(), |text, (regex, with)| {
                regex.replace_all(&text, *with).into_owned()
            })
    }
}

fn golden_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(format!("{name}.txt"))
}

/// Runs each command (each in all the formats given) and compares the transcript with the
/// golden file; collects differences instead of stopping at the first.
async fn check(
    catalog: &Catalog,
    normalizer: &Normalizer,
    name: &str,
    commands: &[Vec<&str>],
    differences: &mut Vec<String>,
) -> anyhow::Result<()> {
    let mut transcript = String::new();
    for args in commands {
        let run = catalog.svcat(args).await?;
        transcript.push_str(&normalizer.apply(&format!("$ svcat {}\n", args.join(" "))));
        transcript.push_str(&normalizer.apply(&run.stdout));
        if run.code != 0 {
            transcript.push_str(&format!(
                "[exit {}] {}",
                run.code,
                normalizer.apply(&run.stderr)
            ));
        }
        transcript.push('\n');
    }
    let path = golden_path(name);
    if std::env::var_os("SVCAT_UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &transcript)?;
        return Ok(());
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_default();
    if expected != transcript {
        let first = expected
            .lines()
            .zip(transcript.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(expected.lines().count().min(transcript.lines().count()));
        differences.push(format!(
            "{} differs from line {}:\n--- expected\n{}\n--- got\n{}",
            path.display(),
            first + 1,
            expected
                .lines()
                .skip(first)
                .take(5)
                .collect::<Vec<_>>()
                .join("\n"),
            transcript
                .lines()
                .skip(first)
                .take(5)
                .collect::<Vec<_>>()
                .join("\n"),
        ));
    }
    Ok(())
}

fn formats<'a>(args: &[&'a str]) -> Vec<Vec<&'a str>> {
    ["table", "wide", "json", "yaml"]
        .iter()
        .map(|format| {
            let mut command = args.to_vec();
            command.extend(["-o", format]);
            command
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_command_prints_what_the_golden_files_show() -> anyhow::Result<()> {
    let catalog = Catalog::with_demo_broker().await?;
    let normalizer = Normalizer::new()?;
    let mut differences = Vec::new();

    // The changes, in each output format they have.
    check(
        &catalog,
        &normalizer,
        "provision",
        &[
            vec![
                "provision",
                "db",
                "--class",
                "mariadb",
                "--plan",
                "10-1-26",
                "-p",
                "storageGB=5",
                "--external-id",
                "db-instance",
                "--wait",
            ],
            vec![
                "provision",
                "ups",
                "--class",
                "user-provided-service",
                "--params-json",
                r#"{"credentials": {"token": "t0k3n"}}"#,
                "--external-id",
                "ups-instance",
                "--wait",
                "-o",
                "json",
            ],
            vec![
                "provision",
                "ha",
                "--class",
                "mariadb",
                "--plan",
                "10-1-26-ha",
                "--external-id",
                "ha-instance",
                "-o",
                "yaml",
            ],
            vec!["wait", "instance", "ha"],
        ],
        &mut differences,
    )
    .await?;
    check(
        &catalog,
        &normalizer,
        "bind",
        &[
            vec![
                "bind",
                "db",
                "-p",
                "readOnly=true",
                "--external-id",
                "db-binding",
                "--wait",
            ],
            vec![
                "bind",
                "ups",
                "--secret-name",
                "ups-secret",
                "--external-id",
                "ups-binding",
                "--wait",
                "-o",
                "yaml",
            ],
        ],
        &mut differences,
    )
    .await?;

    // What exists, in every format.
    check(
        &catalog,
        &normalizer,
        "marketplace",
        &formats(&["marketplace"]),
        &mut differences,
    )
    .await?;
    for kind in ["brokers", "classes", "plans", "instances", "bindings"] {
        let mut commands = formats(&["get", kind]);
        commands.push(vec!["get", kind, "--all-namespaces"]);
        check(
            &catalog,
            &normalizer,
            &format!("get-{kind}"),
            &commands,
            &mut differences,
        )
        .await?;
    }
    check(
        &catalog,
        &normalizer,
        "get-one",
        &[
            vec!["get", "class", "mariadb", "-o", "json"],
            vec!["get", "plan", "10-1-26-ha", "-o", "wide"],
            vec!["get", "instance", "db", "-o", "yaml"],
            vec!["get", "binding", "nope"],
        ],
        &mut differences,
    )
    .await?;
    for (kind, name) in [
        ("broker", "demo"),
        ("class", "mariadb"),
        ("plan", "10-1-26"),
        ("instance", "db"),
        ("binding", "ups"),
    ] {
        let mut commands = formats(&["describe", kind, name]);
        commands.remove(1); // wide is the same text as table for describe
        check(
            &catalog,
            &normalizer,
            &format!("describe-{kind}"),
            &commands,
            &mut differences,
        )
        .await?;
    }

    // And the changes that take things away.
    check(
        &catalog,
        &normalizer,
        "cleanup",
        &[
            vec!["touch", "instance", "ha"],
            vec!["sync", "broker", "demo"],
            vec!["unbind", "ups", "--wait"],
            vec!["unbind", "--name", "db", "--wait"],
            vec!["unbind", "db"],
            vec!["deprovision", "ha", "--wait"],
            vec!["deprovision", "db"],
            vec!["wait", "instance", "db", "--for", "deleted"],
        ],
        &mut differences,
    )
    .await?;

    // Brokers: a team registers the demo broker in its namespace, in each output format.
    let demo = catalog
        .svcat(&["get", "broker", "demo", "-o", "json"])
        .await?;
    let demo: serde_json::Value = serde_json::from_str(&demo.stdout)?;
    let url = demo["spec"]["url"].as_str().unwrap_or_default().to_string();
    check(
        &catalog,
        &normalizer,
        "register",
        &[
            vec![
                "register",
                "team",
                "--scope",
                "namespace",
                "--url",
                &url,
                "--wait",
            ],
            vec![
                "register",
                "team-json",
                "--scope",
                "namespace",
                "--url",
                &url,
                "-o",
                "json",
            ],
            vec![
                "register",
                "team-yaml",
                "--scope",
                "namespace",
                "--url",
                &url,
                "-o",
                "yaml",
                "--relist-behavior",
                "Manual",
            ],
            vec!["deregister", "team-json", "--scope", "namespace"],
            vec!["deregister", "team-yaml", "--scope", "namespace"],
            vec!["deregister", "team", "--scope", "namespace"],
            vec!["version", "--client"],
        ],
        &mut differences,
    )
    .await?;

    assert!(differences.is_empty(), "{}", differences.join("\n\n"));
    Ok(())
}
