//! docs/walkthrough.md is executed: every `console` block's `$ ` commands run, in order, in bash
//! against a fresh `service-catalog up`, with `svcat` and the current `kubectl` on the PATH; what
//! each prints (stdout and stderr together) must be what the document shows. Values that differ
//! from run to run (times, UIDs, ports) are compared as placeholders; the progress lines `--wait`
//! writes are left out. A doc that drifts from the code fails CI.
//!
//! After an intended change: `WALKTHROUGH_UPDATE=1 cargo test -p svcat --test walkthrough`
//! rewrites the outputs in the document; review the diff.

mod common;

use std::path::{Path, PathBuf};

use common::Catalog;
use regex::Regex;

/// One `$ ` command of a console block and the output the document shows for it.
struct Step {
    command: Vec<String>,
    expected: Vec<String>,
}

/// A console block: where it sits in the document and its steps.
struct Block {
    /// Line indexes of the opening and closing fences.
    open: usize,
    close: usize,
    steps: Vec<Step>,
}

fn parse(lines: &[&str]) -> anyhow::Result<Vec<Block>> {
    let heredoc = Regex::new(r#"<<-?\s*['"]?(\w+)['"]?"#)?;
    let mut blocks = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        if lines[i].trim_end() != "```console" {
            i += 1;
            continue;
        }
        let open = i;
        let mut steps: Vec<Step> = Vec::new();
        i += 1;
        while i < lines.len() && lines[i].trim_end() != "```" {
            let line = lines[i];
            if let Some(first) = line.strip_prefix("$ ") {
                let mut command = vec![first.to_string()];
                let end = heredoc.captures(first).map(|c| c[1].to_string());
                let mut continued = first.ends_with('\\');
                while (continued || end.is_some()) && i + 1 < lines.len() {
                    i += 1;
                    command.push(lines[i].to_string());
                    if let Some(end) = &end {
                        if lines[i].trim() == end {
                            break;
                        }
                    } else {
                        continued = lines[i].ends_with('\\');
                    }
                }
                steps.push(Step {
                    command,
                    expected: Vec::new(),
                });
            } else if let Some(step) = steps.last_mut() {
                step.expected.push(line.to_string());
            } else {
                anyhow::bail!("line {}: output before any `$ ` command", i + 1);
            }
            i += 1;
        }
        anyhow::ensure!(
            i < lines.len(),
            "line {}: console block never closed",
            open + 1
        );
        blocks.push(Block {
            open,
            close: i,
            steps,
        });
        i += 1;
    }
    Ok(blocks)
}

struct Normalizer(Vec<(Regex, &'static str)>);

impl Normalizer {
    fn new() -> anyhow::Result<Normalizer> {
        Ok(Normalizer(vec![
            (
                Regex::new(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z")?,
                "YYYY-MM-DDTHH:MM:SSZ",
            ),
            (
                Regex::new(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")?,
                "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx",
            ),
            (Regex::new(r"127\.0\.0\.1:\d{5}")?, "127.0.0.1:PPPPP"),
            // Generated passwords and tokens of the demo broker.
            (Regex::new(r"[A-Za-z0-9_-]{24,}")?, "<generated>"),
        ]))
    }

    fn apply(&self, text: &str) -> String {
        self.0.iter().fold(text.to_string(), |text, (regex, with)| {
            regex.replace_all(&text, *with).into_owned()
        })
    }
}

fn walkthrough() -> PathBuf {
    test_support::workspace_root().join("docs/walkthrough.md")
}

/// A folder with `svcat`, `service-catalog` and `kubectl` (the current one), for the PATH.
fn tools(dir: &Path) -> anyhow::Result<PathBuf> {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin)?;
    std::os::unix::fs::symlink(common::SVCAT, bin.join("svcat"))?;
    std::os::unix::fs::symlink(test_support::kubectl_current()?, bin.join("kubectl"))?;
    std::os::unix::fs::symlink(
        test_support::workspace_binary("service-catalog"),
        bin.join("service-catalog"),
    )?;
    Ok(bin)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_walkthrough_does_what_it_says() -> anyhow::Result<()> {
    let path = walkthrough();
    let text = std::fs::read_to_string(&path)?;
    let lines: Vec<&str> = text.lines().collect();
    let blocks = parse(&lines)?;
    anyhow::ensure!(
        blocks.len() >= 8,
        "the walkthrough's console blocks were not found"
    );

    let catalog = Catalog::with_demo_broker().await?;
    let bin = tools(catalog.dir.path())?;
    let work = catalog.dir.path().join("work");
    std::fs::create_dir_all(&work)?;
    let path_var = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let progress = Regex::new(r"^(instance|binding) [a-z0-9.-]+/[a-z0-9.-]+: ")?;
    let normalizer = Normalizer::new()?;
    let update = std::env::var_os("WALKTHROUGH_UPDATE").is_some();

    let mut outputs: Vec<Vec<Vec<String>>> = Vec::new();
    let mut problems = Vec::new();
    for block in &blocks {
        let mut block_outputs = Vec::new();
        for step in &block.steps {
            let script = step.command.join("\n");
            let output = tokio::process::Command::new("bash")
                .arg("-c")
                .arg(format!("set -o pipefail\n{{\n{script}\n}} 2>&1"))
                .current_dir(&work)
                .env("KUBECONFIG", catalog.kubeconfig())
                .env("PATH", &path_var)
                .env("NO_COLOR", "1")
                .output()
                .await?;
            let printed = String::from_utf8_lossy(&output.stdout);
            let actual: Vec<String> = printed
                .lines()
                .filter(|line| !progress.is_match(line))
                .map(str::to_string)
                .collect();
            let line = block.open + 1;
            if !output.status.success() {
                problems.push(format!(
                    "docs/walkthrough.md block at line {line}: `{}` failed ({}):\n{printed}",
                    step.command[0], output.status
                ));
            } else if !update
                && normalizer.apply(&actual.join("\n"))
                    != normalizer.apply(&step.expected.join("\n"))
            {
                problems.push(format!(
                    "docs/walkthrough.md block at line {line}: `{}` printed\n{}\nbut the document shows\n{}",
                    step.command[0],
                    actual.join("\n"),
                    step.expected.join("\n")
                ));
            }
            block_outputs.push(actual);
        }
        outputs.push(block_outputs);
    }

    if update {
        let mut rewritten: Vec<String> = Vec::new();
        let mut next = 0;
        for (block, block_outputs) in blocks.iter().zip(&outputs) {
            rewritten.extend(lines[next..=block.open].iter().map(|l| l.to_string()));
            for (step, actual) in block.steps.iter().zip(block_outputs) {
                rewritten.push(format!("$ {}", step.command[0]));
                rewritten.extend(step.command[1..].iter().cloned());
                rewritten.extend(actual.iter().cloned());
            }
            next = block.close;
        }
        rewritten.extend(lines[next..].iter().map(|l| l.to_string()));
        std::fs::write(&path, rewritten.join("\n") + "\n")?;
    }
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
    Ok(())
}
