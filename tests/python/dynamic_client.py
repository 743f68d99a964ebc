#!/usr/bin/env python3
"""The Python `kubernetes` client's dynamic client against our API server: discovery, get,
create, merge patch, server-side apply, watch. Exits non-zero (with the failing step) on any
difference from what Kubernetes does.

    python dynamic_client.py <server URL>
"""

import sys
import uuid

from kubernetes import client, dynamic, watch
from kubernetes.client import Configuration


def main(url: str) -> None:
    configuration = Configuration()
    configuration.host = url
    api = dynamic.DynamicClient(client.ApiClient(configuration))
    configmaps = api.resources.get(api_version="v1", kind="ConfigMap")
    name = f"py-{uuid.uuid4().hex[:8]}"

    created = configmaps.create(
        namespace="default",
        body={"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"a": "1"}},
    )
    assert created.metadata.resourceVersion, "a created object has a resourceVersion"

    fetched = configmaps.get(name=name, namespace="default")
    assert fetched.data.a == "1", fetched

    patched = configmaps.patch(
        name=name,
        namespace="default",
        body={"data": {"b": "2"}},
        content_type="application/merge-patch+json",
    )
    assert patched.data.b == "2" and patched.data.a == "1", patched

    applied = configmaps.server_side_apply(
        namespace="default",
        body={"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"{name}-ssa"}, "data": {"x": "y"}},
        field_manager="python-test",
    )
    assert applied.metadata.managedFields[0].manager == "python-test", applied

    # A watch without a resourceVersion starts with synthetic ADDED events.
    seen = set()
    for event in configmaps.watch(namespace="default", timeout=3):
        seen.add((event["type"], event["object"].metadata.name))
        if ("ADDED", name) in seen and ("ADDED", f"{name}-ssa") in seen:
            break
    assert ("ADDED", name) in seen, seen

    # The typed client's watch helper, resuming from the list's version.
    core = client.CoreV1Api(client.ApiClient(configuration))
    listed = core.list_namespaced_config_map("default")
    stream = watch.Watch().stream(
        core.list_namespaced_config_map, "default",
        resource_version=listed.metadata.resource_version, timeout_seconds=5,
    )
    configmaps.delete(name=name, namespace="default")
    for event in stream:
        if event["type"] == "DELETED" and event["object"].metadata.name == name:
            break
    else:
        raise AssertionError("no DELETED event")
    print("ok")


if __name__ == "__main__":
    main(sys.argv[1])
