//! The deployment artefacts in `deploy/` (the Helm chart and the plain manifests for aggregated
//! mode), checked offline by `scripts/validate-deploy`: strict Kubernetes schema validation of
//! every object, `helm template`/`helm lint` through Helm's Go SDK, and what aggregated mode
//! needs (APIService, delegated-auth RBAC, `apiserver --aggregated`).

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, ensure};

const MANIFESTS: &str = "deploy/manifests/service-catalog.yaml";

/// Runs `scripts/validate-deploy ARGS` from the workspace root; returns (success, stdout and
/// stderr together).
fn validate_deploy<S: AsRef<OsStr>>(root: &Path, args: &[S]) -> anyhow::Result<(bool, String)> {
    let script = root.join("scripts/validate-deploy");
    let output = Command::new(&script)
        .args(args)
        .current_dir(root)
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok((output.status.success(), text))
}

/// Writes `text` with `from` replaced (once) by `to` into `dir/name`, and returns its path.
fn corrupted_copy(
    dir: &Path,
    name: &str,
    text: &str,
    from: &str,
    to: &str,
) -> anyhow::Result<PathBuf> {
    ensure!(
        text.contains(from),
        "{MANIFESTS} has no {from:?} to corrupt"
    );
    let path = dir.join(name);
    std::fs::write(&path, text.replacen(from, to, 1))?;
    Ok(path)
}

#[test]
fn manifests_and_helm_chart_pass_strict_schemas_and_aggregated_mode_checks() -> anyhow::Result<()> {
    let root = test_support::workspace_root();
    let (ok, output) = validate_deploy::<&str>(&root, &[])?;
    assert!(ok, "scripts/validate-deploy failed:\n{output}");
    for checked in [
        "APIService v1beta1.servicecatalog.k8s.io registers servicecatalog.k8s.io/v1beta1",
        "ClusterRoleBinding of the API server to system:auth-delegator",
        "RoleBinding in kube-system of the API server to extension-apiserver-authentication-reader",
        "API server Deployment runs `apiserver --aggregated`",
        "helm template (storage.type=etcd, apiserver.replicas=3, etcd TLS) renders",
        "helm template refuses storage.type=sqlite with apiserver.replicas=2",
        "helm lint --strict (defaults): no warnings or errors",
        "is the chart's current render",
    ] {
        assert!(
            output
                .lines()
                .any(|line| line.trim_start().starts_with("ok ") && line.contains(checked)),
            "validate-deploy did not report {checked:?} as passed:\n{output}"
        );
    }
    assert!(
        output.contains("storage.type=sqlite supports exactly one API server replica"),
        "the sqlite refusal's message is missing:\n{output}"
    );
    Ok(())
}

#[test]
fn validator_rejects_deployments_with_an_unknown_or_wrongly_typed_field() -> anyhow::Result<()> {
    let root = test_support::workspace_root();
    let text = std::fs::read_to_string(root.join(MANIFESTS))
        .with_context(|| format!("reading {MANIFESTS}"))?;
    let dir = tempfile::tempdir()?;

    // The intact copy passes, so a rejection below is the corruption's doing.
    let intact = dir.path().join("intact.yaml");
    std::fs::write(&intact, &text)?;
    let (ok, output) = validate_deploy(&root, &[OsStr::new("--file"), intact.as_os_str()])?;
    assert!(ok, "the intact manifests were rejected:\n{output}");

    // `spec.replica` (a typo of `replicas`) is not a DeploymentSpec field.
    let unknown = corrupted_copy(
        dir.path(),
        "unknown-field.yaml",
        &text,
        "\n  replicas: 1\n",
        "\n  replica: 1\n",
    )?;
    let (ok, output) = validate_deploy(&root, &[OsStr::new("--file"), unknown.as_os_str()])?;
    assert!(!ok, "a Deployment with spec.replica passed:\n{output}");
    assert!(
        output.contains("FAIL") && output.contains("'replica' was unexpected"),
        "the rejection does not name the unknown field:\n{output}"
    );

    // A port must be an integer.
    let wrong_type = corrupted_copy(
        dir.path(),
        "wrong-type.yaml",
        &text,
        "containerPort: 8443",
        "containerPort: \"8443\"",
    )?;
    let (ok, output) = validate_deploy(&root, &[OsStr::new("--file"), wrong_type.as_os_str()])?;
    assert!(
        !ok,
        "a Deployment with a string containerPort passed:\n{output}"
    );
    assert!(
        output.contains("containerPort: '8443' is not of type 'integer'"),
        "the rejection does not name the wrongly typed field:\n{output}"
    );
    Ok(())
}
