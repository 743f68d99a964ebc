//! The servicecatalog.k8s.io/v1beta1 API as users meet it: the original project's manifests
//! applied unchanged with both kubectl versions, every validation rule seen through kubectl, and
//! every field round-tripped through kube-rs (create, get, status, reference, update, watch).
//! The server is the real binary over HTTPS with its generated kubeconfig (so requests carry the
//! admin token and `spec.userInfo` names the admin).

use std::path::{Path, PathBuf};

mod common;

use catalog_api::{ClusterServiceBroker, ClusterServicePlan, ServiceBinding, ServiceInstance};
use futures_util::StreamExt as _;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use serde_json::{Value, json};

const FIXTURES: &str = "shared/fixtures/original-manifests";

use common::ApiServer as Catalog;

/// (success, stdout, stderr) of a kubectl run, with `stdin` fed when given.
fn kubectl(
    binary: &Path,
    config: &Path,
    args: &[&str],
    stdin: Option<&str>,
) -> anyhow::Result<(bool, String, String)> {
    test_support::run_kubectl(binary, config, args, stdin)
}

fn ok(binary: &Path, config: &Path, args: &[&str], stdin: Option<&str>) -> anyhow::Result<String> {
    let (success, stdout, stderr) = kubectl(binary, config, args, stdin)?;
    anyhow::ensure!(success, "kubectl {} failed: {stderr}", args.join(" "));
    Ok(stdout)
}

/// The original project's manifests, shared beside the checkout (`../shared/...`), or where
/// `SERVICE_CATALOG_FIXTURES` says.
fn fixtures_dir() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("SERVICE_CATALOG_FIXTURES") {
        return Ok(PathBuf::from(dir));
    }
    let root = test_support::workspace_root();
    root.ancestors()
        .map(|dir| dir.join(FIXTURES))
        .chain([PathBuf::from("/work/shared/fixtures/original-manifests")])
        .find(|dir| dir.is_dir())
        .ok_or_else(|| {
            anyhow::anyhow!(
                "the original manifests are not beside the checkout ({}/../{FIXTURES}); set SERVICE_CATALOG_FIXTURES",
                root.display()
            )
        })
}

/// Every field of `expected` is in `actual` with the same value (maps may have more).
fn contains(actual: &Value, expected: &Value) -> bool {
    match (actual, expected) {
        (Value::Object(a), Value::Object(e)) => e
            .iter()
            .all(|(k, v)| a.get(k).is_some_and(|av| contains(av, v))),
        _ => actual == expected,
    }
}

/// A class with a single plan named like the original walkthrough's user-provided service, so
/// that its default-plan instance manifest has a plan to default to.
const UPS_CLASS: &str = "apiVersion: servicecatalog.k8s.io/v1beta1
kind: ClusterServiceClass
metadata:
  name: 4f6e6cf6-ffdd-425f-a2c7-3c9258ad2468
spec:
  clusterServiceBrokerName: ups-broker
  externalName: user-provided-service
  externalID: 4f6e6cf6-ffdd-425f-a2c7-3c9258ad2468
  description: A user provided service
  bindable: true
---
apiVersion: servicecatalog.k8s.io/v1beta1
kind: ClusterServicePlan
metadata:
  name: 86064792-7ea2-467b-af93-ac9694d96d52
spec:
  clusterServiceBrokerName: ups-broker
  externalName: default
  externalID: 86064792-7ea2-467b-af93-ac9694d96d52
  description: The default plan
  free: true
  clusterServiceClassRef:
    name: 4f6e6cf6-ffdd-425f-a2c7-3c9258ad2468
";

fn apply_fixtures_and_read_back(binary: &Path, config: &Path) -> anyhow::Result<()> {
    ok(binary, config, &["create", "namespace", "test-ns"], None)?;
    ok(binary, config, &["create", "namespace", "ups-broker"], None)?;
    ok(binary, config, &["apply", "-f", "-"], Some(UPS_CLASS))?;
    let mut files: Vec<PathBuf> = std::fs::read_dir(fixtures_dir()?)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    anyhow::ensure!(files.len() >= 13, "fixtures missing: {files:?}");
    for file in &files {
        let path = file.to_string_lossy().into_owned();
        let applied = ok(binary, config, &["apply", "-f", &path], None)?;
        assert!(applied.contains("created"), "{path}: {applied}");
        let expected: Value = serde_yaml::from_str(&std::fs::read_to_string(file)?)?;
        let read = ok(binary, config, &["get", "-f", &path, "-o", "json"], None)?;
        let actual: Value = serde_json::from_str(&read)?;
        assert!(
            contains(&actual["spec"], &expected["spec"]),
            "{path}: spec changed\nsent: {:#}\nread: {:#}",
            expected["spec"],
            actual["spec"]
        );
        assert_eq!(actual["metadata"]["name"], expected["metadata"]["name"]);
        // Applying the same manifest again changes nothing.
        let again = ok(binary, config, &["apply", "-f", &path], None)?;
        assert!(again.contains("unchanged"), "{path}: {again}");
    }
    // The instance that names only its class got the class's single plan.
    let plan = ok(
        binary,
        config,
        &[
            "get",
            "serviceinstance",
            "ups-instance-default",
            "-n",
            "test-ns",
            "-o",
            "jsonpath={.spec.clusterServicePlanExternalName}",
        ],
        None,
    )?;
    assert_eq!(plan, "default");
    // The binding without a secret name writes to a Secret named after itself.
    let secret = ok(
        binary,
        config,
        &[
            "get",
            "servicebinding",
            "mini-binding",
            "-n",
            "test-ns",
            "-o",
            "jsonpath={.spec.secretName}",
        ],
        None,
    )?;
    assert_eq!(secret, "mini-binding");
    let table = ok(
        binary,
        config,
        &["get", "serviceinstances", "-n", "test-ns"],
        None,
    )?;
    let row = table
        .lines()
        .find(|l| l.starts_with("mini-instance"))
        .unwrap_or_default();
    assert!(
        row.contains("ClusterServiceClass/mariadb") && row.contains("10-1-26"),
        "{table}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_original_manifests_apply_unchanged_with_current_kubectl() -> anyhow::Result<()> {
    let catalog = Catalog::start().await?;
    let config = catalog.config.clone();
    tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        let kubectl = test_support::kubectl_current()?;
        apply_fixtures_and_read_back(&kubectl, &config)?;
        // Short names, the category, and explain from the published schema.
        let all = ok(
            &kubectl,
            &config,
            &["get", "servicecatalog", "-A", "-o", "name"],
            None,
        )?;
        for name in [
            "clusterservicebroker.servicecatalog.k8s.io/ups-broker",
            "serviceinstance.servicecatalog.k8s.io/mini-instance",
            "serviceplan.servicecatalog.k8s.io/b20ac1c6-f6d5-4dd0-b30c-c33242ad2083",
        ] {
            assert!(all.contains(name), "{name} missing from:\n{all}");
        }
        let short = ok(
            &kubectl,
            &config,
            &["get", "si,sbd", "-n", "test-ns", "-o", "name"],
            None,
        )?;
        assert!(
            short.contains("servicebinding.servicecatalog.k8s.io/test-binding"),
            "{short}"
        );
        let explained = ok(
            &kubectl,
            &config,
            &[
                "explain",
                "serviceinstance.spec.parametersFrom.secretKeyRef",
            ],
            None,
        )?;
        assert!(
            explained.contains("key") && explained.contains("name"),
            "{explained}"
        );
        Ok(())
    })
    .await?
}

#[tokio::test(flavor = "multi_thread")]
async fn the_original_manifests_apply_unchanged_with_kubectl_1_20() -> anyhow::Result<()> {
    let catalog = Catalog::start().await?;
    let config = catalog.config.clone();
    tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        apply_fixtures_and_read_back(&test_support::kubectl_1_20()?, &config)
    })
    .await?
}

/// A manifest that must be refused, and the field the error must name.
struct Bad {
    manifest: &'static str,
    field: &'static str,
}

const fn bad(manifest: &'static str, field: &'static str) -> Bad {
    Bad { manifest, field }
}

const CSB: &str =
    "apiVersion: servicecatalog.k8s.io/v1beta1\nkind: ClusterServiceBroker\nmetadata: {name: b}\n";
const SI: &str = "apiVersion: servicecatalog.k8s.io/v1beta1\nkind: ServiceInstance\nmetadata: {name: i, namespace: test-ns}\n";

fn bad_creates() -> Vec<(String, &'static str)> {
    let cases = [
        bad("spec: {}", "spec.url"),
        bad("spec: {url: 'not a url'}", "spec.url"),
        bad("spec: {url: 'ftp://host'}", "spec.url"),
        bad(
            "spec: {url: 'http://b', relistBehavior: Sometimes}",
            "spec.relistBehavior",
        ),
        bad(
            "spec: {url: 'http://b', relistDuration: soon}",
            "spec.relistDuration",
        ),
        bad(
            "spec: {url: 'http://b', relistDuration: '-5m'}",
            "spec.relistDuration",
        ),
        bad(
            "spec: {url: 'http://b', relistRequests: -1}",
            "spec.relistRequests",
        ),
        bad(
            "spec: {url: 'https://b', insecureSkipTLSVerify: true, caBundle: Zm9v}",
            "spec.caBundle",
        ),
        bad("spec: {url: 'http://b', authInfo: {}}", "spec.authInfo"),
        bad(
            "spec: {url: 'http://b', authInfo: {basic: {}}}",
            "spec.authInfo.basic.secretRef",
        ),
        bad(
            "spec: {url: 'http://b', authInfo: {bearer: {secretRef: {name: s}}}}",
            "spec.authInfo.bearer.secretRef.namespace",
        ),
        bad(
            "spec: {url: 'http://b', catalogRestrictions: {serviceClass: ['color=blue']}}",
            "spec.catalogRestrictions.serviceClass",
        ),
        bad(
            "spec: {url: 'http://b', catalogRestrictions: {servicePlan: ['spec.free in (']}}",
            "spec.catalogRestrictions.servicePlan",
        ),
    ];
    let mut all: Vec<(String, &'static str)> = cases
        .into_iter()
        .map(|c| (format!("{CSB}{}", c.manifest), c.field))
        .collect();
    all.push((
        "apiVersion: servicecatalog.k8s.io/v1beta1\nkind: ClusterServiceBroker\nmetadata: {name: Bad_Name}\nspec: {url: 'http://b'}".into(),
        "metadata.name",
    ));
    let instances = [
        bad("spec: {}", "spec.clusterServiceClassExternalName"),
        bad(
            "spec: {clusterServiceClassName: c, clusterServiceClassExternalName: d}",
            "spec.clusterServiceClassName",
        ),
        bad(
            "spec: {clusterServiceClassName: c, clusterServicePlanExternalName: p}",
            "spec.clusterServicePlanExternalName",
        ),
        bad(
            "spec: {clusterServiceClassName: c, servicePlanName: p}",
            "not both",
        ),
        bad(
            "spec: {clusterServiceClassName: c, clusterServicePlanName: p, parameters: [1, 2]}",
            "spec.parameters",
        ),
        bad(
            "spec: {clusterServiceClassName: c, clusterServicePlanName: p, parametersFrom: [{}]}",
            "spec.parametersFrom[0]",
        ),
        bad(
            "spec: {clusterServiceClassName: c, clusterServicePlanName: p, parametersFrom: [{secretKeyRef: {name: s, key: ''}}]}",
            "spec.parametersFrom[0].secretKeyRef.key",
        ),
        bad(
            "spec: {clusterServiceClassName: c, clusterServicePlanName: p, updateRequests: -1}",
            "spec.updateRequests",
        ),
        bad(
            "spec: {clusterServiceClassName: c, clusterServicePlanName: p, updateRequests: many}",
            "spec.updateRequests",
        ),
        bad(
            "spec: {clusterServiceClassName: c, clusterServicePlanName: p, colour: blue}",
            "spec.colour",
        ),
    ];
    all.extend(
        instances
            .into_iter()
            .map(|c| (format!("{SI}{}", c.manifest), c.field)),
    );
    let binding = "apiVersion: servicecatalog.k8s.io/v1beta1\nkind: ServiceBinding\nmetadata: {name: b, namespace: test-ns}\n";
    for case in [
        bad("spec: {}", "spec.instanceRef.name"),
        bad(
            "spec: {instanceRef: {name: i}, secretName: Bad_Secret}",
            "spec.secretName",
        ),
        bad(
            "spec: {instanceRef: {name: i}, secretTransforms: [{}]}",
            "spec.secretTransforms[0]",
        ),
        bad(
            "spec: {instanceRef: {name: i}, secretTransforms: [{renameKey: {from: a, to: ''}}]}",
            "spec.secretTransforms[0].renameKey.to",
        ),
        bad(
            "spec: {instanceRef: {name: i}, secretTransforms: [{addKey: {key: k}}]}",
            "spec.secretTransforms[0].addKey.value",
        ),
    ] {
        all.push((format!("{binding}{}", case.manifest), case.field));
    }
    let class = "apiVersion: servicecatalog.k8s.io/v1beta1\nkind: ClusterServiceClass\n";
    all.push((
        format!("{class}metadata: {{name: c1}}\nspec: {{clusterServiceBrokerName: b, externalName: nm, description: d}}"),
        "spec.externalID",
    ));
    all.push((
        format!("{class}metadata: {{name: c1}}\nspec: {{externalName: nm, externalID: x, description: d}}"),
        "spec.clusterServiceBrokerName",
    ));
    all.push((
        format!(
            "{class}metadata: {{name: {}}}\nspec: {{clusterServiceBrokerName: b, externalName: nm, externalID: x, description: d}}",
            "x".repeat(64)
        ),
        "metadata.name",
    ));
    all.push((
        "apiVersion: servicecatalog.k8s.io/v1beta1\nkind: ClusterServicePlan\nmetadata: {name: p1}\nspec: {clusterServiceBrokerName: b, externalName: nm, externalID: x, description: d}".into(),
        "spec.clusterServiceClassRef.name",
    ));
    all
}

#[tokio::test(flavor = "multi_thread")]
async fn every_validation_rule_is_a_kubectl_error_naming_the_field() -> anyhow::Result<()> {
    let catalog = Catalog::start().await?;
    let config = catalog.config.clone();
    tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        let current = test_support::kubectl_current()?;
        let old = test_support::kubectl_1_20()?;
        ok(&current, &config, &["create", "namespace", "test-ns"], None)?;
        for (i, (manifest, field)) in bad_creates().into_iter().enumerate() {
            // Every rule with the current kubectl, and every third with 1.20 as well.
            // (1.20 validates against the OpenAPI v2 document first, naming fields its own way:
            // turned off, so that the server's answer is what is checked.)
            let runs: Vec<(&Path, &[&str])> = if i % 3 == 0 {
                vec![
                    (&current, &["create", "-f", "-"]),
                    (&old, &["create", "--validate=false", "-f", "-"]),
                ]
            } else {
                vec![(&current, &["create", "-f", "-"])]
            };
            for (binary, args) in runs {
                let (success, stdout, stderr) = kubectl(binary, &config, args, Some(&manifest))?;
                assert!(!success, "accepted:\n{manifest}\n{stdout}");
                assert!(
                    stderr.contains(field),
                    "the error for\n{manifest}\ndoes not name {field}: {stderr}"
                );
            }
        }
        // Nothing refused was stored.
        let stored = ok(
            &current,
            &config,
            &["get", "servicecatalog", "-A", "-o", "name"],
            None,
        )?;
        assert_eq!(stored.trim(), "", "refused objects were stored: {stored}");
        Ok(())
    })
    .await?
}

const UPDATABLE: &str = "apiVersion: v1
kind: Namespace
metadata: {name: test-ns}
---
apiVersion: servicecatalog.k8s.io/v1beta1
kind: ClusterServiceBroker
metadata: {name: b}
spec: {url: 'http://broker.example', relistBehavior: Manual, relistRequests: 3}
---
apiVersion: servicecatalog.k8s.io/v1beta1
kind: ClusterServicePlan
metadata: {name: p1}
spec: {clusterServiceBrokerName: b, externalName: small, externalID: p1, description: d, clusterServiceClassRef: {name: c1}}
---
apiVersion: servicecatalog.k8s.io/v1beta1
kind: ClusterServicePlan
metadata: {name: p2}
spec: {clusterServiceBrokerName: b, externalName: large, externalID: p2, description: d, clusterServiceClassRef: {name: c1}}
---
apiVersion: servicecatalog.k8s.io/v1beta1
kind: ClusterServiceClass
metadata: {name: c1}
spec: {clusterServiceBrokerName: b, externalName: db, externalID: c1, description: d}
---
apiVersion: servicecatalog.k8s.io/v1beta1
kind: ServiceInstance
metadata: {name: i, namespace: test-ns}
spec: {clusterServiceClassExternalName: db, clusterServicePlanExternalName: small, updateRequests: 2}
---
apiVersion: servicecatalog.k8s.io/v1beta1
kind: ServiceBinding
metadata: {name: bd, namespace: test-ns}
spec: {instanceRef: {name: i}}
";

#[tokio::test(flavor = "multi_thread")]
async fn immutable_fields_and_admission_refusals_name_what_is_wrong() -> anyhow::Result<()> {
    let catalog = Catalog::start().await?;
    let config = catalog.config.clone();
    tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        let kubectl_bin = test_support::kubectl_current()?;
        ok(&kubectl_bin, &config, &["apply", "-f", "-"], Some(UPDATABLE))?;
        let refused = |args: &[&str], needle: &str| -> anyhow::Result<()> {
            let (success, stdout, stderr) = kubectl(&kubectl_bin, &config, args, None)?;
            assert!(!success, "kubectl {} succeeded: {stdout}", args.join(" "));
            assert!(stderr.contains(needle), "kubectl {}: {stderr}", args.join(" "));
            Ok(())
        };
        let merge = |kind: &'static str, name: &'static str, patch: &'static str| {
            [
                "patch", kind, name, "-n", "test-ns", "--type", "merge", "-p", patch,
            ]
        };
        refused(
            &merge("serviceinstance", "i", r#"{"spec":{"externalID":"other"}}"#),
            "spec.externalID: Invalid value: \"other\": field is immutable",
        )?;
        refused(
            &merge("serviceinstance", "i", r#"{"spec":{"clusterServiceClassExternalName":"cache"}}"#),
            "spec.clusterServiceClassExternalName",
        )?;
        refused(
            &merge("serviceinstance", "i", r#"{"spec":{"updateRequests":1}}"#),
            "spec.updateRequests",
        )?;
        refused(
            &merge("servicebinding", "bd", r#"{"spec":{"instanceRef":{"name":"other"}}}"#),
            "spec.instanceRef: Invalid value",
        )?;
        refused(
            &merge("clusterserviceplan", "p1", r#"{"spec":{"externalID":"p9"}}"#),
            "externalID cannot change",
        )?;
        refused(
            &merge("clusterservicebroker", "b", r#"{"spec":{"relistRequests":1}}"#),
            "spec.relistRequests",
        )?;
        // Catalog kinds take JSON merge and JSON patches, not strategic merge (like CRDs).
        refused(
            &["patch", "clusterservicebroker", "b", "-p", r#"{"spec":{"url":"http://x"}}"#],
            "accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml\n",
        )?;
        // Two plans: there is no default to choose.
        let (success, _, stderr) = kubectl(
            &kubectl_bin,
            &config,
            &["create", "-f", "-"],
            Some(&format!("{SI}spec: {{clusterServiceClassExternalName: db}}")),
        )?;
        assert!(!success);
        assert!(
            stderr.contains("has more than one plan (large, small), PlanName must be specified"),
            "{stderr}"
        );
        // An instance being deleted (its finalizer holds it) takes no new bindings.
        ok(
            &kubectl_bin,
            &config,
            &["delete", "serviceinstance", "i", "-n", "test-ns", "--wait=false"],
            None,
        )?;
        let (success, _, stderr) = kubectl(
            &kubectl_bin,
            &config,
            &["create", "-f", "-"],
            Some("apiVersion: servicecatalog.k8s.io/v1beta1\nkind: ServiceBinding\nmetadata: {name: late, namespace: test-ns}\nspec: {instanceRef: {name: i}}"),
        )?;
        assert!(!success);
        assert!(
            stderr.contains("references a ServiceInstance that is being deleted: test-ns/i"),
            "{stderr}"
        );
        // A namespace being deleted (held by the instance's finalizer) takes no new objects.
        ok(
            &kubectl_bin,
            &config,
            &["apply", "-f", "-"],
            Some("apiVersion: v1\nkind: Namespace\nmetadata: {name: doomed}\n---\napiVersion: servicecatalog.k8s.io/v1beta1\nkind: ServiceInstance\nmetadata: {name: held, namespace: doomed}\nspec: {clusterServiceClassExternalName: db, clusterServicePlanExternalName: small}\n"),
        )?;
        ok(&kubectl_bin, &config, &["delete", "namespace", "doomed", "--wait=false"], None)?;
        let (success, _, stderr) = kubectl(
            &kubectl_bin,
            &config,
            &["create", "-f", "-"],
            Some("apiVersion: servicecatalog.k8s.io/v1beta1\nkind: ServiceBinding\nmetadata: {name: late, namespace: doomed}\nspec: {instanceRef: {name: held}}"),
        )?;
        assert!(!success);
        assert!(
            stderr.contains("unable to create new content in namespace doomed because it is being terminated"),
            "{stderr}"
        );
        // The refused changes left everything as it was.
        let instance = ok(
            &kubectl_bin,
            &config,
            &["get", "serviceinstance", "i", "-n", "test-ns", "-o", "json"],
            None,
        )?;
        let instance: Value = serde_json::from_str(&instance)?;
        assert_eq!(instance["spec"]["updateRequests"], 2);
        assert_eq!(instance["spec"]["clusterServiceClassExternalName"], "db");
        // Only the deletion changed it (Kubernetes bumps the generation with deletionTimestamp).
        assert_eq!(instance["metadata"]["generation"], 2);
        assert!(instance["metadata"]["deletionTimestamp"].is_string());
        Ok(())
    })
    .await?
}

fn full_instance() -> anyhow::Result<ServiceInstance> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "servicecatalog.k8s.io/v1beta1", "kind": "ServiceInstance",
        "metadata": {"name": "full", "namespace": "default", "labels": {"app": "shop"}},
        "spec": {
            "clusterServiceClassExternalName": "db", "clusterServicePlanExternalName": "small",
            "parameters": {"size": 3, "nested": {"tags": ["a", "b"]}},
            "parametersFrom": [{"secretKeyRef": {"name": "params", "key": "extra"}}],
            "externalID": "4c1bd6b2-0f5f-4d9c-a7a1-8f0c8b3f7a10", "updateRequests": 0,
        },
        // A create cannot set status: this is dropped.
        "status": {"dashboardURL": "http://forged", "provisionStatus": "Provisioned"},
    }))?)
}

fn full_status() -> Value {
    json!({
        "conditions": [{"type": "Ready", "status": "False", "lastTransitionTime": "2026-11-25T10:00:00Z",
                         "reason": "Provisioning", "message": "The instance is being provisioned asynchronously"}],
        "asyncOpInProgress": true, "orphanMitigationInProgress": false,
        "lastOperation": "op-1", "dashboardURL": "http://dash/1", "currentOperation": "Provision",
        "reconciledGeneration": 0, "observedGeneration": 1,
        "operationStartTime": "2026-11-25T10:00:00Z",
        "inProgressProperties": {"clusterServicePlanExternalName": "small", "clusterServicePlanExternalID": "p1",
            "parameters": {"size": 3, "extra": "<redacted>"},
            "parameterChecksum": "a".repeat(64),
            "userInfo": {"username": "admin", "uid": "admin"}},
        "externalProperties": {"clusterServicePlanExternalName": "small", "clusterServicePlanExternalID": "p1"},
        "provisionStatus": "NotProvisioned", "deprovisionStatus": "Required",
        "defaultProvisionParameters": {"region": "eu"},
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn every_instance_field_survives_create_get_status_reference_update_and_watch()
-> anyhow::Result<()> {
    let catalog = Catalog::start().await?;
    let client = catalog.client().await?;
    let instances: Api<ServiceInstance> = Api::namespaced(client.clone(), "default");
    let mut watch = instances
        .watch(&WatchParams::default().timeout(30), "0")
        .await?
        .boxed();
    let sent = full_instance()?;
    let created = instances.create(&PostParams::default(), &sent).await?;
    let mut expected_spec = sent.spec.clone();
    // The server records who asked.
    let user = created.spec.user_info.clone().unwrap_or_default();
    assert_eq!(user.username, "admin");
    assert!(
        user.groups.contains(&"system:masters".to_owned()),
        "{user:?}"
    );
    expected_spec.user_info = Some(user);
    assert_eq!(created.spec, expected_spec);
    let status = created.status.clone().unwrap_or_default();
    assert_eq!(status.dashboard_url, None, "status is reset on create");
    assert_eq!(status.deprovision_status, "NotRequired");
    assert_eq!(created.metadata.generation, Some(1));
    assert_eq!(
        created.metadata.finalizers.as_deref(),
        Some(&[catalog_api::FINALIZER.to_owned()][..])
    );

    // The controller's resolution, through /reference: only the refs change.
    let reference = json!({"spec": {"clusterServiceClassRef": {"name": "c1"},
                                    "clusterServicePlanRef": {"name": "p1"},
                                    "parameters": {"sneaked": true}}});
    let referenced = instances
        .patch_subresource(
            "reference",
            "full",
            &PatchParams::default(),
            &Patch::Merge(&reference),
        )
        .await?;
    expected_spec.cluster_service_class_ref =
        Some(catalog_api::ClusterObjectReference { name: "c1".into() });
    expected_spec.cluster_service_plan_ref =
        Some(catalog_api::ClusterObjectReference { name: "p1".into() });
    assert_eq!(referenced.spec, expected_spec);
    assert_eq!(referenced.metadata.generation, Some(1));
    // Once set, a reference does not change.
    let moved = json!({"spec": {"clusterServiceClassRef": {"name": "c2"}}});
    let error = instances
        .patch_subresource(
            "reference",
            "full",
            &PatchParams::default(),
            &Patch::Merge(&moved),
        )
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(error.contains("spec.clusterServiceClassRef"), "{error}");
    // The main resource cannot touch the refs either: they stay as stored.
    let main = json!({"spec": {"clusterServiceClassRef": {"name": "c3"}}});
    let kept = instances
        .patch("full", &PatchParams::default(), &Patch::Merge(&main))
        .await?;
    assert_eq!(kept.spec, expected_spec);

    // Every status field, through /status, without touching spec or generation.
    let status = full_status();
    let with_status = instances
        .patch_status(
            "full",
            &PatchParams::default(),
            &Patch::Merge(&json!({"status": status})),
        )
        .await?;
    assert_eq!(serde_json::to_value(&with_status.status)?, status);
    assert_eq!(with_status.metadata.generation, Some(1));
    // A status that lies is refused: Ready during an operation.
    let lie = json!({"status": {"conditions": [{"type": "Ready", "status": "True",
        "lastTransitionTime": "2026-11-25T10:00:00Z", "reason": "ProvisionedSuccessfully", "message": "done"}]}});
    let error = instances
        .patch_status("full", &PatchParams::default(), &Patch::Merge(&lie))
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(error.contains("status.conditions[0]"), "{error}");

    // A spec change bumps the generation and keeps everything else.
    let bump = json!({"spec": {"updateRequests": 1}});
    let updated = instances
        .patch("full", &PatchParams::default(), &Patch::Merge(&bump))
        .await?;
    expected_spec.update_requests = 1;
    assert_eq!(updated.spec, expected_spec);
    assert_eq!(updated.metadata.generation, Some(2));
    assert_eq!(serde_json::to_value(&updated.status)?, status);
    // A metadata-only change does not.
    let label = json!({"metadata": {"labels": {"tier": "gold"}}});
    let labelled = instances
        .patch("full", &PatchParams::default(), &Patch::Merge(&label))
        .await?;
    assert_eq!(labelled.metadata.generation, Some(2));

    // The watch saw every step, ending with the object as it is now.
    let last_version = labelled.metadata.resource_version.clone();
    let mut seen = Vec::new();
    while let Some(event) =
        tokio::time::timeout(std::time::Duration::from_secs(10), watch.next()).await?
    {
        if let WatchEvent::Added(o) | WatchEvent::Modified(o) = event? {
            let done = o.metadata.resource_version == last_version;
            seen.push(o);
            if done {
                break;
            }
        }
    }
    // Create, reference, status, spec, label: refused writes and the no-op were not events.
    assert_eq!(seen.len(), 5, "{seen:#?}");
    let now = serde_json::to_value(&labelled)?;
    assert_eq!(serde_json::to_value(seen.last())?, now);
    assert_eq!(serde_json::to_value(instances.get("full").await?)?, now);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn every_broker_plan_and_binding_field_round_trips() -> anyhow::Result<()> {
    let catalog = Catalog::start().await?;
    let client = catalog.client().await?;
    let broker: ClusterServiceBroker = serde_json::from_value(json!({
        "metadata": {"name": "full"},
        "spec": {"url": "https://broker.example:8443/osb", "caBundle": "LS0tLS1CRUdJTg==",
                 "relistBehavior": "Duration", "relistDuration": "10m0s", "relistRequests": 4,
                 "catalogRestrictions": {"serviceClass": ["spec.externalName in (db, cache)"],
                                         "servicePlan": ["spec.free=true"]},
                 "authInfo": {"bearer": {"secretRef": {"namespace": "ops", "name": "token"}}}}
    }))?;
    let brokers: Api<ClusterServiceBroker> = Api::all(client.clone());
    let created = brokers.create(&PostParams::default(), &broker).await?;
    assert_eq!(created.spec, broker.spec);
    assert_eq!(brokers.get("full").await?.spec, broker.spec);

    let plan: ClusterServicePlan = serde_json::from_value(json!({
        "metadata": {"name": "9A4F3B2E-PLAN"},
        "spec": {"clusterServiceBrokerName": "full", "externalName": "small", "externalID": "9A4F3B2E-PLAN",
                 "description": "A small one", "bindable": false, "free": true,
                 "externalMetadata": {"bullets": ["1 GB"], "displayName": "Small"},
                 "instanceCreateParameterSchema": {"type": "object", "properties": {"size": {"type": "integer"}}},
                 "instanceUpdateParameterSchema": {"type": "object"},
                 "serviceBindingCreateParameterSchema": {"type": "object"},
                 "serviceBindingCreateResponseSchema": {"type": "object"},
                 "defaultProvisionParameters": {"size": 1},
                 "clusterServiceClassRef": {"name": "db"}}
    }))?;
    let plans: Api<ClusterServicePlan> = Api::all(client.clone());
    plans.create(&PostParams::default(), &plan).await?;
    assert_eq!(plans.get("9A4F3B2E-PLAN").await?.spec, plan.spec);
    // The original's field selectors, and a clear error for others.
    let other = json!({"metadata": {"name": "other"}, "spec": {"clusterServiceBrokerName": "full",
        "externalName": "x", "externalID": "other", "description": "d", "clusterServiceClassRef": {"name": "cache"}}});
    plans
        .create(&PostParams::default(), &serde_json::from_value(other)?)
        .await?;
    let of_db = plans
        .list(&kube::api::ListParams::default().fields("spec.clusterServiceClassRef.name=db"))
        .await?;
    assert_eq!(of_db.items.len(), 1);
    let error = plans
        .list(&kube::api::ListParams::default().fields("spec.colour=red"))
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        error.contains("field label not supported: spec.colour"),
        "{error}"
    );

    let binding: ServiceBinding = serde_json::from_value(json!({
        "metadata": {"name": "full", "namespace": "default"},
        "spec": {"instanceRef": {"name": "db"}, "secretName": "db-credentials",
                 "parameters": {"role": "reader"},
                 "parametersFrom": [{"secretKeyRef": {"name": "p", "key": "k"}}],
                 "externalID": "b7d0b8a4-2b8e-4ed9-9f07-5bb2c3e6f0d1",
                 "secretTransforms": [
                     {"renameKey": {"from": "host", "to": "HOST"}},
                     {"addKey": {"key": "url", "jsonPathExpression": "{.host}:{.port}"}},
                     {"addKey": {"key": "raw", "value": "aGVsbG8="}},
                     {"addKeysFrom": {"secretRef": {"namespace": "default", "name": "extra"}}},
                     {"removeKey": {"key": "password"}}]}
    }))?;
    let bindings: Api<ServiceBinding> = Api::namespaced(client, "default");
    let created = bindings.create(&PostParams::default(), &binding).await?;
    let mut expected = binding.spec.clone();
    expected.user_info = created.spec.user_info.clone();
    assert_eq!(created.spec, expected);
    assert_eq!(bindings.get("full").await?.spec, expected);
    assert_eq!(
        created.status.map(|s| s.unbind_status).unwrap_or_default(),
        "NotRequired"
    );
    Ok(())
}
