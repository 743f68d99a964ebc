#!/usr/bin/env python3
"""Offline checks of the deployment artefacts in deploy/ (run through scripts/validate-deploy).

Helm here is Helm's own Go SDK (v4) through the PyPI package `helm-python-sdk` (a C ABI over
helm.sh/helm/v4, loaded with ctypes): the same template engine, Sprig functions (genCA,
genSignedCert, fail, lookup), values.schema.json validation and linter as the `helm` binary.
Kubernetes objects are checked against the OpenAPI-derived JSON schemas that the PyPI package
`kubernetes-validate` bundles, in strict mode (unknown fields are errors).

    deploycheck.py all                     # everything below; what scripts/validate-deploy runs
    deploycheck.py validate FILE...        # strict schema validation of the objects in FILEs
    deploycheck.py template [--set K=V]... [-f VALUES]... [--name N] [--namespace NS] [CHART]
    deploycheck.py lint [--set K=V]... [CHART]
    deploycheck.py manifests [--write]     # check (or rewrite) deploy/manifests/service-catalog.yaml

Exit status: 0 when everything passed, 1 when a check failed, 2 on a usage error.
"""

from __future__ import annotations

import argparse
import base64
import copy
import difflib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import helm_python as helm
import yaml
from kubernetes_validate import utils as kv

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "service-catalog"
MANIFESTS = ROOT / "deploy" / "manifests" / "service-catalog.yaml"

RELEASE = "service-catalog"
NAMESPACE = "service-catalog"
# The oldest and the newest Kubernetes versions whose schemas kubernetes-validate ships.
KUBE_VERSIONS = [kv.all_versions()[0], kv.latest_version()]

GROUP = "servicecatalog.k8s.io"
CATALOG_KINDS = [
    "clusterservicebrokers",
    "servicebrokers",
    "clusterserviceclasses",
    "serviceclasses",
    "clusterserviceplans",
    "serviceplans",
    "serviceinstances",
    "servicebindings",
]
SQLITE_REPLICAS_MESSAGE = "storage.type=sqlite supports exactly one API server replica"

# Helm's install order (pkg/release/util/kind_sorter.go), for the plain manifests.
INSTALL_ORDER = [
    "PriorityClass", "Namespace", "NetworkPolicy", "ResourceQuota", "LimitRange",
    "PodSecurityPolicy", "PodDisruptionBudget", "ServiceAccount", "Secret", "SecretList",
    "ConfigMap", "StorageClass", "PersistentVolume", "PersistentVolumeClaim",
    "CustomResourceDefinition", "ClusterRole", "ClusterRoleList", "ClusterRoleBinding",
    "ClusterRoleBindingList", "Role", "RoleList", "RoleBinding", "RoleBindingList", "Service",
    "DaemonSet", "Pod", "ReplicationController", "ReplicaSet", "Deployment",
    "HorizontalPodAutoscaler", "StatefulSet", "Job", "CronJob", "IngressClass", "Ingress",
    "APIService", "MutatingWebhookConfiguration", "ValidatingWebhookConfiguration",
]


class CheckFailed(Exception):
    """A check did not hold; the message says which and why."""


class Report:
    """Collects failures so that one run shows all of them."""

    def __init__(self) -> None:
        self.failures: list[str] = []
        self.passed = 0

    def ok(self, what: str) -> None:
        self.passed += 1
        print(f"  ok    {what}")

    def fail(self, what: str, why: str) -> None:
        self.failures.append(f"{what}: {why}")
        print(f"  FAIL  {what}: {why}")

    def check(self, what: str, fn: Callable[[], None]) -> None:
        try:
            fn()
        except CheckFailed as error:
            self.fail(what, str(error))
        except Exception as error:  # a crash in a check is a failure too, never a pass
            self.fail(what, f"{type(error).__name__}: {error}")
        else:
            self.ok(what)


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise CheckFailed(message)


# ---------------------------------------------------------------------------------------------
# Helm


def user_path(path: Path | str) -> Path:
    """A path as the user gave it: relative ones are relative to where scripts/validate-deploy
    was started (it runs this from the repository root)."""
    path = Path(path)
    return path if path.is_absolute() else Path(os.environ.get("VALIDATE_DEPLOY_CWD", os.getcwd())) / path


def deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def values_from(sets: list[str], files: list[str]) -> dict[str, Any]:
    """Values as `helm template -f FILE --set K=V` builds them (files first, then --set)."""
    values: dict[str, Any] = {}
    for file in files:
        values = deep_merge(values, helm.values_from_yaml(user_path(file).read_text()) or {})
    for expression in sets:
        values = deep_merge(values, helm.parse_set_string(expression))
    return values


def render_text(values: dict[str, Any], chart: Path = CHART, name: str = RELEASE,
                namespace: str = NAMESPACE) -> dict[str, str]:
    """The rendered manifests by template path (NOTES.txt and empty renders left out). Raises
    helm.HelmError when values or templates are rejected."""
    with helm.Chart.load(str(chart)) as loaded:
        rendered = loaded.render(values, name=name, namespace=namespace, is_install=True)
    return {path: text for path, text in sorted(rendered.items())
            if path.endswith((".yaml", ".yml")) and text.strip()}


def render(values: dict[str, Any], chart: Path = CHART, name: str = RELEASE,
           namespace: str = NAMESPACE) -> list[tuple[str, dict[str, Any]]]:
    """`helm template`: the chart's objects as (template path, object), in Helm's install
    order. Raises helm.HelmError when values or templates are rejected."""
    rendered = render_text(values, chart, name, namespace)
    objects: list[tuple[str, dict[str, Any]]] = []
    for path in rendered:
        for document in yaml.safe_load_all(rendered[path]):
            if document:
                objects.append((path, document))
    order = {kind: index for index, kind in enumerate(INSTALL_ORDER)}
    objects.sort(key=lambda item: order.get(item[1].get("kind", ""), len(order)))
    return objects


class IndentDumper(yaml.SafeDumper):
    """Indents block sequences under their key, as kubectl and Helm charts write them."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> Any:
        return super().increase_indent(flow, False)


def dump(objects: list[dict[str, Any]]) -> str:
    return "---\n".join(
        yaml.dump(obj, Dumper=IndentDumper, sort_keys=False, default_flow_style=False, width=100)
        for obj in objects
    )




def lint(values: dict[str, Any], chart: Path = CHART) -> list[str]:
    """`helm lint --strict`: the findings of severity warning or error."""
    report = helm.lint(str(chart), values, strict=True, namespace=NAMESPACE)
    problems = [f"{m['path']}: {m['error']}" for m in report["messages"] if m["severity"] >= 2]
    return problems + list(report.get("errors") or [])


# ---------------------------------------------------------------------------------------------
# Schema validation


def schema_errors(obj: Any, versions: list[str] = KUBE_VERSIONS) -> list[str]:
    """Strict schema validation of one object against every Kubernetes version in `versions`;
    an object of a kind with no schema is an error, not a warning."""
    if not isinstance(obj, dict) or "apiVersion" not in obj or "kind" not in obj:
        return ["not a Kubernetes object (needs apiVersion and kind)"]
    errors = []
    for version in versions:
        try:
            kv.validate(obj, version, strict=True)
        except kv.ValidationError as error:
            path = ".".join(str(part) for part in error.path) or "(top level)"
            errors.append(f"Kubernetes {error.version}: {path}: {error.message}")
        except kv.SchemaNotFoundError as error:
            errors.append(error.message)
    return errors


def describe(obj: Any) -> str:
    if not isinstance(obj, dict):
        return repr(obj)[:60]
    meta = obj.get("metadata") or {}
    where = f"{meta.get('namespace')}/" if meta.get("namespace") else ""
    return f"{obj.get('kind')} {where}{meta.get('name')}"


def load_file(path: Path) -> list[Any]:
    try:
        return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]
    except (OSError, yaml.YAMLError) as error:
        raise CheckFailed(f"cannot read {path}: {error}") from error


def validate_objects(report: Report, label: str, objects: list[Any]) -> None:
    if not objects:
        report.fail(label, "no Kubernetes objects")
        return
    for obj in objects:
        errors = schema_errors(obj)
        what = f"{label}: {describe(obj)} matches the Kubernetes {'/'.join(KUBE_VERSIONS)} schema (strict)"
        if errors:
            report.fail(what, "; ".join(errors))
        else:
            report.ok(what)


# ---------------------------------------------------------------------------------------------
# Content assertions


def find(objects: list[dict[str, Any]], kind: str, name: str,
         namespace: str | None = None) -> dict[str, Any]:
    for obj in objects:
        meta = obj.get("metadata", {})
        if obj.get("kind") == kind and meta.get("name") == name and (
            namespace is None or meta.get("namespace") == namespace
        ):
            return obj
    raise CheckFailed(f"no {kind} {namespace + '/' if namespace else ''}{name}")


def container(deployment: dict[str, Any], name: str) -> dict[str, Any]:
    for item in deployment["spec"]["template"]["spec"]["containers"]:
        if item["name"] == name:
            return item
    raise CheckFailed(f"Deployment {deployment['metadata']['name']} has no container {name}")


def arg_value(args: list[str], flag: str) -> str:
    """The value of `--flag VALUE` or `--flag=VALUE`."""
    for index, arg in enumerate(args):
        if arg == flag and index + 1 < len(args):
            return args[index + 1]
        if arg.startswith(flag + "="):
            return arg[len(flag) + 1:]
    raise CheckFailed(f"no {flag} in args {args}")


def rule_triples(role: dict[str, Any]) -> set[tuple[str, str, str]]:
    return {
        (group, resource, verb)
        for rule in role.get("rules", [])
        for group in rule.get("apiGroups", [])
        for resource in rule.get("resources", [])
        for verb in rule.get("verbs", [])
    }


def triples(groups: list[str], resources: list[str], verbs: list[str]) -> set[tuple[str, str, str]]:
    return {(g, r, v) for g in groups for r in resources for v in verbs}


READ = ["get", "list", "watch"]
ALL = READ + ["create", "update", "patch", "delete", "deletecollection"]

CONTROLLER_RULES = (
    triples([GROUP], CATALOG_KINDS, READ)
    | triples([GROUP], [k + "/status" for k in CATALOG_KINDS], ["update", "patch"])
    | triples([GROUP], ["clusterserviceclasses", "serviceclasses", "clusterserviceplans",
                        "serviceplans"], ["create", "update", "patch", "delete"])
    | triples([GROUP], ["serviceinstances", "servicebindings"], ["update", "patch"])
    | triples([""], ["secrets"], READ + ["create", "update", "patch", "delete"])
    | triples([""], ["namespaces"], READ)
    | triples(["", "events.k8s.io"], ["events"], ["create", "patch", "update"])
)


def check_release(report: Report, label: str, objects: list[dict[str, Any]], *,
                  namespace: str = NAMESPACE, fullname: str = RELEASE,
                  storage: str = "sqlite", replicas: int = 1, generated_tls: bool = True,
                  rbac: bool = True, tls_secret: str | None = None,
                  ca_bundle: str | None = None, apiserver_sa: str | None = None,
                  controller_sa: str | None = None, etcd_tls_secret: str | None = None) -> None:
    """What every render of the chart must hold (and the plain manifests too)."""
    service = f"{fullname}-apiserver"
    apiserver_sa = apiserver_sa or f"{fullname}-apiserver"
    controller_sa = controller_sa or f"{fullname}-controller-manager"
    tls_secret = tls_secret or f"{fullname}-apiserver-tls"

    def check(what: str, fn: Callable[[], None]) -> None:
        report.check(f"{label}: {what}", fn)

    def apiservice() -> None:
        obj = find(objects, "APIService", "v1beta1.servicecatalog.k8s.io")
        spec = obj["spec"]
        expect(obj["apiVersion"] == "apiregistration.k8s.io/v1", f"apiVersion {obj['apiVersion']}")
        expect(spec.get("group") == GROUP and spec.get("version") == "v1beta1",
               f"group/version {spec.get('group')}/{spec.get('version')}")
        expect(spec.get("groupPriorityMinimum") == 10000 and spec.get("versionPriority") == 20,
               f"priorities {spec.get('groupPriorityMinimum')}/{spec.get('versionPriority')}")
        expect(spec.get("service") == {"namespace": namespace, "name": service, "port": 443},
               f"service {spec.get('service')}")
        expect(not spec.get("insecureSkipTLSVerify"), "insecureSkipTLSVerify is set")
        if ca_bundle is not None:
            expect(spec.get("caBundle") == ca_bundle, f"caBundle {spec.get('caBundle')!r:.40}")
        else:
            pem = base64.b64decode(spec.get("caBundle", ""), validate=True).decode()
            expect(pem.startswith("-----BEGIN CERTIFICATE-----"), "caBundle is not a PEM certificate")
    check("APIService v1beta1.servicecatalog.k8s.io registers servicecatalog.k8s.io/v1beta1 "
          f"at Service {namespace}/{service}:443", apiservice)

    def service_port() -> None:
        obj = find(objects, "Service", service, namespace)
        ports = obj["spec"]["ports"]
        expect(any(p.get("port") == 443 and p.get("targetPort") == 8443 for p in ports),
               f"ports {ports}")
        deployment = find(objects, "Deployment", f"{fullname}-apiserver", namespace)
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        selector = obj["spec"]["selector"]
        expect(all(labels.get(k) == v for k, v in selector.items()),
               f"selector {selector} does not select the API server's pods {labels}")
    check(f"Service {service} sends port 443 to the API server pods' 8443", service_port)

    def apiserver() -> None:
        obj = find(objects, "Deployment", f"{fullname}-apiserver", namespace)
        spec = obj["spec"]
        pod = spec["template"]["spec"]
        c = container(obj, "apiserver")
        args = c.get("args", [])
        expect(args[:1] == ["apiserver"], f"args do not start with the apiserver role: {args}")
        expect("--aggregated" in args, f"no --aggregated in {args}")
        expect(arg_value(args, "--listen") == "0.0.0.0:8443", "--listen")
        expect(arg_value(args, "--data-dir") == "/var/lib/service-catalog", "--data-dir")
        expect(arg_value(args, "--tls-cert-file") == "/etc/service-catalog/tls/tls.crt", "--tls-cert-file")
        expect(arg_value(args, "--tls-private-key-file") == "/etc/service-catalog/tls/tls.key",
               "--tls-private-key-file")
        expect(arg_value(args, "--storage") == storage, f"--storage {arg_value(args, '--storage')}")
        expect(spec.get("replicas") == replicas, f"replicas {spec.get('replicas')}, want {replicas}")
        expect(pod.get("serviceAccountName") == apiserver_sa, f"serviceAccountName {pod.get('serviceAccountName')}")
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
        expect(volumes.get(mounts.get("/etc/service-catalog/tls", ""), {}).get("secret", {}).get("secretName")
               == tls_secret, f"/etc/service-catalog/tls is not Secret {tls_secret}")
        data = volumes.get(mounts.get("/var/lib/service-catalog", ""), {})
        if storage == "sqlite":
            expect(spec.get("strategy", {}).get("type") == "Recreate", "SQLite needs strategy Recreate")
            claim = data.get("persistentVolumeClaim", {}).get("claimName")
            expect(claim == f"{fullname}-data", f"data dir is not on PVC {fullname}-data: {data}")
            find(objects, "PersistentVolumeClaim", f"{fullname}-data", namespace)
            expect(pod.get("securityContext", {}).get("fsGroup") == 65532, "fsGroup 65532 for the PVC")
        else:
            expect(all(o["kind"] != "PersistentVolumeClaim" for o in objects), "a PVC with etcd storage")
            expect(arg_value(args, "--etcd-servers"), "--etcd-servers is empty")
            expect(arg_value(args, "--etcd-prefix").startswith("/"), "--etcd-prefix")
            if etcd_tls_secret:
                for flag, file in (("--etcd-cafile", "ca.crt"), ("--etcd-certfile", "tls.crt"),
                                   ("--etcd-keyfile", "tls.key")):
                    expect(arg_value(args, flag) == f"/etc/service-catalog/etcd/{file}", flag)
                etcd = volumes.get(mounts.get("/etc/service-catalog/etcd", ""), {})
                expect(etcd.get("secret", {}).get("secretName") == etcd_tls_secret,
                       f"/etc/service-catalog/etcd is not Secret {etcd_tls_secret}")
            else:
                expect("--etcd-cafile" not in args and "/etc/service-catalog/etcd" not in mounts,
                       "etcd TLS files without storage.etcd.tlsSecret")
        for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/livez")):
            get = c.get(probe, {}).get("httpGet", {})
            expect(get.get("path") == path and get.get("port") == 8443 and get.get("scheme") == "HTTPS",
                   f"{probe} {get}")
        security = c.get("securityContext", {})
        expect(security.get("readOnlyRootFilesystem") is True, "readOnlyRootFilesystem")
        expect(security.get("allowPrivilegeEscalation") is False, "allowPrivilegeEscalation")
        expect(security.get("capabilities", {}).get("drop") == ["ALL"], "capabilities.drop ALL")
        expect(pod.get("securityContext", {}).get("runAsNonRoot") is True
               or security.get("runAsNonRoot") is True, "runAsNonRoot")
        expect(any(e.get("name") == "RUST_LOG" for e in c.get("env", [])), "no RUST_LOG")
        expect(c.get("resources", {}).get("requests"), "no resource requests")
    check(f"API server Deployment runs `apiserver --aggregated` ({storage}, {replicas} replica(s)), "
          "HTTPS probes, locked-down securityContext", apiserver)

    def controller() -> None:
        obj = find(objects, "Deployment", f"{fullname}-controller-manager", namespace)
        pod = obj["spec"]["template"]["spec"]
        c = container(obj, "controller-manager")
        args = c.get("args", [])
        expect(args[:1] == ["controller-manager"], f"args {args}")
        expect("--leader-elect=true" in args, "--leader-elect=true")
        expect(arg_value(args, "--leader-elect-namespace") == namespace, "--leader-elect-namespace")
        expect(arg_value(args, "--metrics-listen") == "0.0.0.0:8089", "--metrics-listen")
        expect(not any(a.startswith("--kubeconfig") for a in args), "--kubeconfig given")
        arg_value(args, "--broker-relist-interval")
        arg_value(args, "--osb-timeout")
        expect(pod.get("serviceAccountName") == controller_sa, "serviceAccountName")
        for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
            get = c.get(probe, {}).get("httpGet", {})
            expect(get.get("path") == path and get.get("port") == 8089
                   and get.get("scheme", "HTTP") == "HTTP", f"{probe} {get}")
        security = c.get("securityContext", {})
        expect(security.get("readOnlyRootFilesystem") is True
               and security.get("allowPrivilegeEscalation") is False
               and security.get("capabilities", {}).get("drop") == ["ALL"], "securityContext")
    check("controller manager Deployment runs `controller-manager --leader-elect=true` "
          "in-cluster with HTTP probes on 8089", controller)

    def selectors() -> None:
        for obj in objects:
            if obj["kind"] == "Deployment":
                labels = obj["spec"]["template"]["metadata"]["labels"]
                selector = obj["spec"]["selector"]["matchLabels"]
                expect(all(labels.get(k) == v for k, v in selector.items()),
                       f"{describe(obj)}: selector {selector} does not match its pods")
    check("every Deployment's selector matches its pod template", selectors)

    def namespaces() -> None:
        cluster_scoped = {"Namespace", "ClusterRole", "ClusterRoleBinding", "APIService"}
        for obj in objects:
            ns = obj["metadata"].get("namespace")
            if obj["kind"] in cluster_scoped:
                expect(ns is None, f"{describe(obj)} is cluster-scoped but has a namespace")
            elif not (obj["kind"] == "RoleBinding" and ns == "kube-system"):
                expect(ns == namespace, f"{describe(obj)} is not in namespace {namespace}")
    check(f"namespaced objects are in {namespace} (the authentication reader in kube-system)", namespaces)

    def tls() -> None:
        if generated_tls:
            secret = find(objects, "Secret", tls_secret, namespace)
            expect(secret.get("type") == "kubernetes.io/tls", "type kubernetes.io/tls")
            api = find(objects, "APIService", "v1beta1.servicecatalog.k8s.io")
            expect(secret["data"].get("ca.crt") == api["spec"]["caBundle"],
                   "the APIService's caBundle is not the Secret's CA")
            verify_serving_cert(secret["data"], service, namespace)
        else:
            expect(all(not (o["kind"] == "Secret" and o["metadata"]["name"] == tls_secret)
                       for o in objects), f"Secret {tls_secret} is rendered though it is the user's")
    check("serving certificate: generated for the Service's DNS names and trusted by the caBundle"
          if generated_tls else f"serving certificate from the user's Secret {tls_secret}", tls)

    if not rbac:
        def no_rbac() -> None:
            kinds = {o["kind"] for o in objects}
            expect(not kinds & {"ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"},
                   f"RBAC objects rendered with rbac.create=false: {kinds}")
        check("no RBAC objects with rbac.create=false", no_rbac)
        return

    def subjects_are(binding: dict[str, Any], sa: str) -> None:
        expect(binding.get("subjects") == [{"kind": "ServiceAccount", "name": sa, "namespace": namespace}],
               f"{describe(binding)} subjects {binding.get('subjects')}")

    def service_accounts() -> None:
        find(objects, "ServiceAccount", apiserver_sa, namespace)
        find(objects, "ServiceAccount", controller_sa, namespace)
    check("both ServiceAccounts exist", service_accounts)

    def auth_delegator() -> None:
        bindings = [o for o in objects if o["kind"] == "ClusterRoleBinding"
                    and o["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                                         "name": "system:auth-delegator"}]
        expect(len(bindings) == 1, "no ClusterRoleBinding to system:auth-delegator")
        subjects_are(bindings[0], apiserver_sa)
    check("ClusterRoleBinding of the API server to system:auth-delegator", auth_delegator)

    def auth_reader() -> None:
        bindings = [o for o in objects if o["kind"] == "RoleBinding"
                    and o["metadata"].get("namespace") == "kube-system"
                    and o["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                         "name": "extension-apiserver-authentication-reader"}]
        expect(len(bindings) == 1,
               "no RoleBinding in kube-system to Role extension-apiserver-authentication-reader")
        subjects_are(bindings[0], apiserver_sa)
    check("RoleBinding in kube-system of the API server to extension-apiserver-authentication-reader",
          auth_reader)

    def apiserver_role() -> None:
        role = find(objects, "ClusterRole", "servicecatalog.k8s.io:apiserver")
        expect(rule_triples(role) == triples([""], ["namespaces"], READ), f"rules {role['rules']}")
        subjects_are(find(objects, "ClusterRoleBinding", "servicecatalog.k8s.io:apiserver"), apiserver_sa)
    check("API server may read namespaces, nothing more", apiserver_role)

    def controller_role() -> None:
        role = find(objects, "ClusterRole", "servicecatalog.k8s.io:controller-manager")
        got = rule_triples(role)
        expect(got == CONTROLLER_RULES,
               f"missing {sorted(CONTROLLER_RULES - got)}, extra {sorted(got - CONTROLLER_RULES)}")
        subjects_are(find(objects, "ClusterRoleBinding", "servicecatalog.k8s.io:controller-manager"),
                     controller_sa)
        lease_role = find(objects, "Role", f"{fullname}-controller-manager-leader-election", namespace)
        expect(rule_triples(lease_role) == triples(["coordination.k8s.io"], ["leases"],
                                                   ["get", "create", "update"]),
               f"lease rules {lease_role['rules']}")
        subjects_are(find(objects, "RoleBinding", f"{fullname}-controller-manager-leader-election",
                          namespace), controller_sa)
    check("controller manager ClusterRole has exactly the catalog, Secret, namespace and event "
          "rights; Leases through a Role in the release namespace", controller_role)

    def user_roles() -> None:
        for level in ("admin", "edit", "view"):
            role = find(objects, "ClusterRole", f"servicecatalog.k8s.io:aggregate-to-{level}")
            expect(role["metadata"]["labels"].get(f"rbac.authorization.k8s.io/aggregate-to-{level}") == "true",
                   f"{level}: no aggregate-to-{level} label")
            got = rule_triples(role)
            expect(all(g == GROUP for g, _, _ in got), f"{level}: rules outside {GROUP}")
            expect(triples([GROUP], CATALOG_KINDS, READ) <= got, f"{level}: cannot read every catalog kind")
        admin = rule_triples(find(objects, "ClusterRole", "servicecatalog.k8s.io:aggregate-to-admin"))
        edit = rule_triples(find(objects, "ClusterRole", "servicecatalog.k8s.io:aggregate-to-edit"))
        view = rule_triples(find(objects, "ClusterRole", "servicecatalog.k8s.io:aggregate-to-view"))
        expect(triples([GROUP], ["serviceinstances", "servicebindings", "servicebrokers"], ALL) <= admin,
               "admin cannot manage instances, bindings and brokers")
        expect(triples([GROUP], ["serviceinstances", "servicebindings"], ALL) <= edit,
               "edit cannot manage instances and bindings")
        expect(not any(r == "servicebrokers" and v not in READ for _, r, v in edit), "edit writes brokers")
        expect(all(v in READ for _, _, v in view), "view has write verbs")
        for level, got in (("admin", admin), ("edit", edit)):
            expect(not any(r.startswith("cluster") and v not in READ for _, r, v in got),
                   f"{level} writes cluster-scoped kinds")
        catalog_admin = find(objects, "ClusterRole", "servicecatalog.k8s.io:catalog-admin")
        expect(rule_triples(catalog_admin) == {(GROUP, "*", "*")}, f"catalog-admin {catalog_admin['rules']}")
    check("aggregate-to-admin/edit/view ClusterRoles extend the built-in roles; catalog-admin "
          "has everything in the group", user_roles)


def verify_serving_cert(data: dict[str, str], service: str, namespace: str) -> None:
    """The Secret's tls.crt is signed by its ca.crt, for server auth, with the Service's DNS
    names, and tls.key is its key (checked with openssl)."""
    openssl = shutil.which("openssl")
    expect(openssl is not None, "openssl is needed to check the generated certificate")
    with tempfile.TemporaryDirectory() as tmp:
        files = {}
        for key in ("tls.crt", "tls.key", "ca.crt"):
            files[key] = Path(tmp, key)
            files[key].write_bytes(base64.b64decode(data[key], validate=True))

        def run(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run([openssl, *args], check=False, capture_output=True, text=True)

        verified = run("verify", "-purpose", "sslserver", "-CAfile", str(files["ca.crt"]), str(files["tls.crt"]))
        expect(verified.returncode == 0, f"openssl verify: {verified.stdout}{verified.stderr}")
        sans = run("x509", "-noout", "-ext", "subjectAltName", "-in", str(files["tls.crt"])).stdout
        names = set(re.findall(r"DNS:([^,\s]+)", sans))
        want = {service, f"{service}.{namespace}", f"{service}.{namespace}.svc",
                f"{service}.{namespace}.svc.cluster.local"}
        expect(want <= names, f"DNS names {sorted(names)}, want {sorted(want)}")
        cert_key = run("x509", "-noout", "-pubkey", "-in", str(files["tls.crt"])).stdout
        key_pub = run("pkey", "-pubout", "-in", str(files["tls.key"])).stdout
        expect(cert_key and cert_key == key_pub, "tls.key is not tls.crt's key")


# ---------------------------------------------------------------------------------------------
# The plain manifests


MANIFESTS_TLS_SECRET = "service-catalog-apiserver-tls"
_SERVICE = f"{RELEASE}-apiserver"
_DNS = ",".join(f"DNS:{_SERVICE}{suffix}" for suffix in
                ("", f".{NAMESPACE}", f".{NAMESPACE}.svc", f".{NAMESPACE}.svc.cluster.local"))
# Step 1 of the header: run as written by the `documented steps` check.
MANIFESTS_PKI_STEPS = f"""\
openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=service-catalog-ca" \\
  -keyout ca.key -out ca.crt
openssl req -newkey rsa:2048 -nodes -subj "/CN={_SERVICE}.{NAMESPACE}.svc" \\
  -keyout tls.key -out tls.csr
printf 'subjectAltName=%s\\nextendedKeyUsage=serverAuth\\n' \\
  "{_DNS}" \\
  > tls.ext
openssl x509 -req -in tls.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 825 \\
  -extfile tls.ext -out tls.crt
"""
# Step 3 of the header, with MANIFESTS standing for the file's path.
MANIFESTS_APPLY_STEP = """\
sed "s|caBundle: ''|caBundle: $(base64 -w0 ca.crt)|" MANIFESTS \\
  | kubectl apply -f -
"""


def _commented(text: str) -> str:
    return "".join(f"#       {line}\n" for line in text.splitlines())


MANIFESTS_HEADER = f"""\
# Service Catalog (servicecatalog.k8s.io/v1beta1) in aggregated mode: plain manifests.
#
# What `helm template {RELEASE} deploy/helm/service-catalog --namespace {NAMESPACE}`
# renders with the chart's defaults (SQLite storage on a 1Gi PersistentVolumeClaim, one API
# server, one controller manager), plus the Namespace, except that the API server's serving
# certificate comes from a Secret you create instead of one the chart generates.
# Generated by `scripts/validate-deploy --write-manifests`; do not edit by hand.
#
# Before applying:
#
#  1. Make a CA and a serving certificate for the API server's Service (or use your own PKI):
#
{_commented(MANIFESTS_PKI_STEPS)}#
#  2. Create the namespace and the kubernetes.io/tls Secret the API server mounts:
#
#       kubectl create namespace {NAMESPACE}
#       kubectl -n {NAMESPACE} create secret tls {MANIFESTS_TLS_SECRET} --cert=tls.crt --key=tls.key
#
#  3. Apply, putting the CA (base64 of ca.crt) into the APIService's caBundle, left empty below:
#
{_commented(MANIFESTS_APPLY_STEP.replace("MANIFESTS", "deploy/manifests/service-catalog.yaml"))}#
#  4. kubectl get apiservice v1beta1.servicecatalog.k8s.io   # AVAILABLE turns True
#
"""
MANIFESTS_PLACEHOLDER = "PLACEHOLDER-REPLACED-BELOW"
HELM_ONLY_LABELS = ("helm.sh/chart", "app.kubernetes.io/managed-by")


def strip_helm_labels(obj: Any) -> Any:
    """Drops the labels that say Helm manages an object, everywhere in it."""
    if isinstance(obj, dict):
        return {
            key: (
                {k: v for k, v in value.items() if k not in HELM_ONLY_LABELS}
                if key == "labels" and isinstance(value, dict)
                else strip_helm_labels(value)
            )
            for key, value in obj.items()
        }
    if isinstance(obj, list):
        return [strip_helm_labels(item) for item in obj]
    return obj


def manifests_text() -> str:
    """The plain manifests, rendered from the chart."""
    objects = render({"tls": {"existingSecret": MANIFESTS_TLS_SECRET, "caBundle": MANIFESTS_PLACEHOLDER}})
    namespace = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": NAMESPACE, "labels": {"app.kubernetes.io/name": "service-catalog",
                                                   "app.kubernetes.io/part-of": "service-catalog"}},
    }
    plain = [namespace]
    for _, obj in objects:
        obj = strip_helm_labels(obj)
        if obj["kind"] == "APIService":
            obj["spec"]["caBundle"] = ""
        plain.append(obj)
    # YAML 1.1 reads 0440 as octal, which PyYAML writes back in decimal; keep the file readable.
    return MANIFESTS_HEADER + "---\n" + dump(plain).replace("defaultMode: 288\n", "defaultMode: 0440\n")


def check_manifests(report: Report) -> None:
    label = str(MANIFESTS.relative_to(ROOT))
    try:
        objects = load_file(MANIFESTS)
    except CheckFailed as error:
        report.fail(label, str(error))
        return
    validate_objects(report, label, objects)

    def up_to_date() -> None:
        want, got = manifests_text(), MANIFESTS.read_text()
        diff = "".join(list(difflib.unified_diff(want.splitlines(True), got.splitlines(True),
                                                 "rendered", "file", n=1))[:30])
        expect(got == want, "differs from the chart's render; run "
               f"`scripts/validate-deploy --write-manifests`:\n{diff}")
    report.check(f"{label}: is the chart's current render (defaults, user-provided TLS Secret)", up_to_date)

    def namespace() -> None:
        find(objects, "Namespace", NAMESPACE)
        expect(objects[0]["kind"] == "Namespace", "the Namespace is not the first object")
        body = [line for line in MANIFESTS.read_text().splitlines() if not line.startswith("#")]
        expect(sum(line.strip() == "caBundle: ''" for line in body) == 1,
               "the documented sed step needs exactly one `caBundle: ''`")
        expect(not any(helm_label in str(o) for o in objects for helm_label in HELM_ONLY_LABELS),
               "Helm's labels are left in")
    report.check(f"{label}: Namespace first, an empty caBundle for the documented sed step, no Helm labels",
                 namespace)
    check_release(report, label, objects, generated_tls=False, tls_secret=MANIFESTS_TLS_SECRET, ca_bundle="")

    def documented_steps() -> None:
        """Runs the header's openssl commands and its sed (without kubectl apply), then checks
        the certificate and the file that would be applied."""
        bash = shutil.which("bash")
        expect(bash is not None and shutil.which("openssl") is not None, "needs bash and openssl")
        with tempfile.TemporaryDirectory() as tmp:
            made = subprocess.run([bash, "-euo", "pipefail", "-c", MANIFESTS_PKI_STEPS], cwd=tmp,
                                  check=False, capture_output=True, text=True)
            expect(made.returncode == 0, f"step 1 failed: {made.stderr}")
            # The sed alone: its output is what `kubectl apply` would be given.
            sed = MANIFESTS_APPLY_STEP.replace("MANIFESTS", f"'{MANIFESTS}'")
            sed = sed.replace(" \\\n  | kubectl apply -f -\n", "\n")
            expect("kubectl" not in sed, f"could not take kubectl out of {sed!r}")
            applied = subprocess.run([bash, "-euo", "pipefail", "-c", sed], cwd=tmp, check=False,
                                     capture_output=True, text=True)
            expect(applied.returncode == 0, f"step 3's sed failed: {applied.stderr}")
            data = {key: base64.b64encode(Path(tmp, key).read_bytes()).decode()
                    for key in ("tls.crt", "tls.key", "ca.crt")}
            verify_serving_cert(data, f"{RELEASE}-apiserver", NAMESPACE)
            result = [doc for doc in yaml.safe_load_all(applied.stdout) if doc]
            for obj in result:
                errors = schema_errors(obj)
                expect(not errors, f"{describe(obj)}: {errors}")
            api = find(result, "APIService", "v1beta1.servicecatalog.k8s.io")
            expect(api["spec"]["caBundle"] == data["ca.crt"], "the sed did not put ca.crt into caBundle")
    report.check(f"{label}: the header's steps make a certificate for the Service and a caBundle "
                 "the APIService accepts", documented_steps)


# ---------------------------------------------------------------------------------------------
# The chart


def test_ca_pem() -> str:
    """A throwaway CA certificate (for tls.caBundle), made with openssl."""
    openssl = shutil.which("openssl")
    if openssl is None:
        raise CheckFailed("openssl is needed")
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=test-ca",
             "-keyout", str(Path(tmp, "ca.key")), "-out", str(Path(tmp, "ca.crt"))],
            check=True, capture_output=True,
        )
        return Path(tmp, "ca.crt").read_text()


def check_chart(report: Report) -> None:
    print(f"\n== helm lint --strict {CHART.relative_to(ROOT)} (Helm SDK {helm.helm_sdk_version()})")
    etcd_values = values_from(
        ["storage.type=etcd,apiserver.replicas=3,storage.etcd.tlsSecret=etcd-client-tls",
         "storage.etcd.servers={https://etcd-0.etcd:2379,https://etcd-1.etcd:2379,https://etcd-2.etcd:2379}"],
        [])
    for name, values in (("defaults", {}), ("etcd", etcd_values)):
        def lint_clean(values: dict[str, Any] = values) -> None:
            problems = lint(values)
            expect(not problems, "; ".join(problems))
        report.check(f"helm lint --strict ({name}): no warnings or errors", lint_clean)

    ca_pem = test_ca_pem()
    ca_b64 = base64.b64encode(ca_pem.encode()).decode()
    cases: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
        ("defaults", {}, {}),
        ("storage.type=etcd, apiserver.replicas=3, etcd TLS", etcd_values,
         {"storage": "etcd", "replicas": 3, "etcd_tls_secret": "etcd-client-tls"}),
        ("storage.type=etcd, replicas left empty (2)",
         values_from(["storage.type=etcd,storage.etcd.servers={http://etcd:2379}"], []),
         {"storage": "etcd", "replicas": 2}),
        ("tls.existingSecret with a PEM caBundle",
         {"tls": {"existingSecret": "my-apiserver-tls", "caBundle": ca_pem}},
         {"generated_tls": False, "tls_secret": "my-apiserver-tls", "ca_bundle": ca_b64}),
        ("tls.existingSecret with a base64 caBundle, release `catalog` in namespace `platform`",
         {"tls": {"existingSecret": "my-apiserver-tls", "caBundle": ca_b64}},
         {"generated_tls": False, "tls_secret": "my-apiserver-tls", "ca_bundle": ca_b64,
          "release": "catalog", "namespace": "platform", "fullname": "catalog-service-catalog"}),
        ("rbac.create=false, serviceAccount.create=false",
         values_from(["rbac.create=false,serviceAccount.create=false",
                      "serviceAccount.apiserver.name=sa-a,serviceAccount.controllerManager.name=sa-c"], []),
         {"rbac": False, "apiserver_sa": "sa-a", "controller_sa": "sa-c"}),
    ]
    for name, values, expected in cases:
        print(f"\n== helm template ({name})")
        release = expected.pop("release", RELEASE)
        namespace = expected.get("namespace", NAMESPACE)
        try:
            objects = [obj for _, obj in render(values, name=release, namespace=namespace)]
        except helm.HelmError as error:
            report.fail(f"helm template ({name})", str(error))
            continue
        report.ok(f"helm template ({name}) renders {len(objects)} objects")
        validate_objects(report, f"chart ({name})", objects)
        if expected.get("rbac") is False:
            check_release_without_accounts(report, f"chart ({name})", objects)
        check_release(report, f"chart ({name})", objects, **expected)

    print("\n== helm template must refuse")
    refusals = [
        ("storage.type=sqlite with apiserver.replicas=2",
         values_from(["apiserver.replicas=2"], []), SQLITE_REPLICAS_MESSAGE),
        ("storage.type=etcd without storage.etcd.servers",
         values_from(["storage.type=etcd"], []), "storage.type=etcd needs storage.etcd.servers"),
        ("tls.existingSecret without tls.caBundle",
         values_from(["tls.existingSecret=x"], []), "needs tls.caBundle"),
        ("an unknown value (schema)", values_from(["apiserver.replica=1"], []), "replica"),
        ("storage.type=postgres (schema)", values_from(["storage.type=postgres"], []), "storage/type"),
        ("a malformed duration (schema)", values_from(["controllerManager.osbTimeout=sixty"], []),
         "osbTimeout"),
    ]
    for name, values, message in refusals:
        def refused(values: dict[str, Any] = values, message: str = message) -> None:
            try:
                render(values)
            except helm.HelmError as error:
                expect(message in str(error), f"refused, but not saying {message!r}: {error}")
                print(f"        helm said: {str(error).strip().splitlines()[-1].strip()}")
                return
            raise CheckFailed("rendered without an error")
        report.check(f"helm template refuses {name}", refused)


def check_release_without_accounts(report: Report, label: str, objects: list[dict[str, Any]]) -> None:
    def accounts() -> None:
        expect(all(o["kind"] != "ServiceAccount" for o in objects), "ServiceAccounts rendered")
        pods = {o["metadata"]["name"]: o["spec"]["template"]["spec"]["serviceAccountName"]
                for o in objects if o["kind"] == "Deployment"}
        expect(sorted(pods.values()) == ["sa-a", "sa-c"], f"serviceAccountName {pods}")
    report.check(f"{label}: the given ServiceAccounts are used, none created", accounts)


# ---------------------------------------------------------------------------------------------
# Command line


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("all")
    validate = sub.add_parser("validate")
    validate.add_argument("files", nargs="+", type=Path)
    for name in ("template", "lint"):
        p = sub.add_parser(name)
        p.add_argument("chart", nargs="?", type=Path, default=CHART)
        p.add_argument("--set", action="append", default=[], dest="sets")
        p.add_argument("-f", "--values", action="append", default=[], dest="files")
        p.add_argument("--name", default=RELEASE)
        p.add_argument("--namespace", default=NAMESPACE)
    manifests = sub.add_parser("manifests")
    manifests.add_argument("--write", action="store_true")
    args = parser.parse_args(argv)

    report = Report()
    if args.command == "template":
        try:
            rendered = render_text(values_from(args.sets, args.files), user_path(args.chart), args.name,
                                   args.namespace)
            for path, text in rendered.items():
                print(f"---\n# Source: {path}\n{text.strip()}")
        except helm.HelmError as error:
            print(f"Error: {error}", file=sys.stderr)
            return 1
        return 0
    if args.command == "lint":
        problems = lint(values_from(args.sets, args.files), user_path(args.chart))
        for problem in problems:
            print(problem)
        return 1 if problems else 0
    if args.command == "manifests" and args.write:
        MANIFESTS.write_text(manifests_text())
        print(f"wrote {MANIFESTS.relative_to(ROOT)}")
        return 0
    if args.command == "validate":
        for path in map(user_path, args.files):
            print(f"\n== {path}")
            try:
                validate_objects(report, str(path), load_file(path))
            except CheckFailed as error:
                report.fail(str(path), str(error))
    elif args.command == "manifests":
        check_manifests(report)
    elif args.command == "all":
        print(f"== {MANIFESTS.relative_to(ROOT)}")
        check_manifests(report)
        check_chart(report)

    total = report.passed + len(report.failures)
    if report.failures:
        print(f"\nvalidate-deploy: {len(report.failures)} of {total} checks FAILED")
        print("\nfailures:", file=sys.stderr)
        for failure in report.failures:
            print(f"  - {failure}", file=sys.stderr)
        return 1
    print(f"\nvalidate-deploy: all {total} checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
