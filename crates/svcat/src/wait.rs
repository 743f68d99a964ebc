//! Waiting for the controller, with progress: on a terminal a live line (spinner, state, current
//! operation, elapsed time) redrawn in place; otherwise a plain line each time the state changes,
//! so logs and pipes stay readable.

use std::io::Write as _;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::cli::{KindArg, WaitFor};
use crate::error::{Error, Result};
use crate::objects::{Target, status_message, status_word, text};
use crate::output;

const POLL: Duration = Duration::from_millis(500);
const FRAME: Duration = Duration::from_millis(100);
const SPINNER: [char; 10] = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];

/// Where an object stands, as one line.
fn state_line(object: &Value) -> String {
    let word = status_word(object);
    let mut line = word.clone();
    let operation = text(object, "/status/currentOperation");
    if !operation.is_empty() {
        line.push_str(&format!(" [{operation}]"));
    }
    let message = status_message(object);
    if !message.is_empty() && word != "Ready" && word != "Deleting" {
        line.push_str(": ");
        line.push_str(&message);
    }
    line
}

/// Whether the controller has caught up with the object's latest spec.
fn settled(object: &Value) -> bool {
    let generation = object
        .pointer("/metadata/generation")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let reconciled = object
        .pointer("/status/reconciledGeneration")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    reconciled >= generation && text(object, "/status/currentOperation").is_empty()
}

/// Waits for an instance or binding; returns the object when it is ready (None once deleted).
pub async fn wait(
    target: &Target,
    kind: KindArg,
    name: &str,
    until: WaitFor,
    timeout: Duration,
) -> Result<Option<Value>> {
    let noun = if kind == KindArg::Instances {
        "instance"
    } else {
        "binding"
    };
    let who = format!("{noun} {}/{name}", target.namespace);
    let live = output::stderr_live();
    let started = Instant::now();
    let mut printed = String::new();
    let mut line = String::from("waiting");
    let mut frame = 0usize;
    let mut next_poll = Instant::now();
    let finish = |mark: &str, line: &str| {
        if live {
            eprint!(
                "\r\x1b[K{mark} {who}: {line} ({}s)\n",
                started.elapsed().as_secs()
            );
        }
    };
    loop {
        if Instant::now() >= next_poll {
            next_poll = Instant::now() + POLL;
            match target.get(kind, name).await {
                Err(Error::NotFound(_)) if until == WaitFor::Deleted => {
                    finish("✓", "deleted");
                    if !live {
                        eprintln!("{who}: deleted");
                    }
                    return Ok(None);
                }
                Err(error) => {
                    finish("✗", "error");
                    return Err(error);
                }
                Ok(object) => {
                    line = state_line(&object);
                    let word = status_word(&object);
                    // Failed counts once the controller is done with the latest spec (a Failed
                    // condition left from before an update is not the answer yet).
                    if word == "Failed" && until == WaitFor::Ready && settled(&object) {
                        finish("✗", &line);
                        return Err(Error::Failed(format!(
                            "{who} failed: {}",
                            status_message(&object)
                        )));
                    }
                    let teardown = ["/status/deprovisionStatus", "/status/unbindStatus"]
                        .iter()
                        .any(|p| text(&object, p) == "Failed");
                    if until == WaitFor::Deleted && teardown {
                        finish("✗", &line);
                        return Err(Error::Failed(format!(
                            "{who} could not be removed at the broker: {}",
                            status_message(&object)
                        )));
                    }
                    if until == WaitFor::Ready && word == "Ready" && settled(&object) {
                        finish("✓", "Ready");
                        if !live {
                            eprintln!("{who}: Ready");
                        }
                        return Ok(Some(object));
                    }
                }
            }
            if !live && line != printed {
                eprintln!("{who}: {line}");
                printed = line.clone();
            }
        }
        if started.elapsed() >= timeout {
            finish("✗", &line);
            let goal = if until == WaitFor::Ready {
                "ready"
            } else {
                "deleted"
            };
            return Err(Error::TimedOut(format!(
                "timed out after {}s waiting for {who} to be {goal}; it is {line}",
                timeout.as_secs()
            )));
        }
        if live {
            let spinner = SPINNER[frame % SPINNER.len()];
            frame += 1;
            let mut shown = format!("{spinner} {who}: {line} ({}s)", started.elapsed().as_secs());
            if shown.chars().count() > 110 {
                shown = shown.chars().take(107).collect::<String>() + "...";
            }
            eprint!("\r\x1b[K{shown}");
            let _ = std::io::stderr().flush();
        }
        tokio::time::sleep(FRAME).await;
    }
}
