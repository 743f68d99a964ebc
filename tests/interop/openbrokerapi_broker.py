#!/usr/bin/env python3
"""A small, real Open Service Broker built on the third-party `openbrokerapi`
package (pinned to 4.7.3 by scripts/python-env).  It exists so the Rust OSB
client can be tested against a broker implementation we did not write.

Run it with the venv's python (scripts/python-env prints its path):

    "$(scripts/python-env | tail -n1)" tests/interop/openbrokerapi_broker.py \
        --port 0 --username admin --password secret

Once listening it prints exactly one line on stdout and flushes it:

    listening on http://127.0.0.1:PORT

Everything else (request logs, tracebacks that openbrokerapi logs for every
4xx it maps from an exception) goes to stderr.  It stops on SIGTERM/SIGINT,
or when stdin reaches EOF if --exit-on-stdin-eof is given (so a test harness
that dies without killing it does not leak the process).

Catalog: one bindable service `interop-db` (id `interop-service-id`) with one
plan `small` (id `interop-plan-id`); instances and bindings are retrievable.

Behaviour (all state is in memory):

* provision, accepts_incomplete=true  -> 202 {"operation": "provision-<id>"};
  the instance's last_operation then reports "in progress" on the first poll
  and "succeeded" on every later poll.
* provision, accepts_incomplete=false -> synchronous 201 {} (openbrokerapi
  supports both ProvisionState.SUCCESSFUL_CREATED and raising ErrAsyncRequired;
  we default to the synchronous path, and `--async-required` switches to
  openbrokerapi's 422 {"error": "AsyncRequired", ...} reply instead).
* provisioning the same id again: 200 (identical service/plan/parameters,
  ProvisionState.IDENTICAL_ALREADY_EXISTS) or 409 {} (ErrInstanceAlreadyExists).
* bind: synchronous 201 with credentials
  {"uri": "interop://<binding_id>", "username": "u-<binding_id>",
   "password": "p-<binding_id>"}; the same binding again -> 200 (identical) or
  409 {}; bind on an instance whose async provision has not yet been reported
  as succeeded -> 422 ConcurrencyError; bind on an unknown instance -> 400.
* unbind: synchronous 200 {}; unknown binding -> 410 {}.
* deprovision: synchronous 200 {} (drops the instance's bindings too);
  unknown instance -> 410 {} (ErrInstanceDoesNotExist).
* last_operation on an unknown instance -> 410 {"state": "succeeded",
  "description": ""} (openbrokerapi's fixed reply for ErrInstanceDoesNotExist);
  an `operation` query parameter that does not match the one we returned -> 400.

Quirks that come from openbrokerapi itself (not from this file):

* Every request needs `X-Broker-API-Version` >= 2.13, checked BEFORE basic
  auth: missing -> 400, older -> 412.
* provision/bind bodies must be JSON (Content-Type application/json), else 400.
* provision requires organization_guid and space_guid (top level or inside
  `context`) unless --allow-missing-guids is given (which sets openbrokerapi's
  DISABLE_SPACE_ORG_GUID_CHECK), else 400.
* unbind/deprovision require the service_id and plan_id query parameters and
  plan_id must be in the catalog, else 400.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from typing import Dict, List, Optional

from flask import Flask
from werkzeug.serving import make_server

import openbrokerapi.settings
from openbrokerapi import errors
from openbrokerapi.api import get_blueprint
from openbrokerapi.auth import BrokerCredentials
from openbrokerapi.catalog import ServicePlan
from openbrokerapi.service_broker import (
    BindDetails,
    Binding,
    BindState,
    DeprovisionDetails,
    DeprovisionServiceSpec,
    GetBindingSpec,
    GetInstanceDetailsSpec,
    LastOperation,
    OperationState,
    ProvisionDetails,
    ProvisionedServiceSpec,
    ProvisionState,
    Service,
    ServiceBroker,
    UnbindDetails,
    UnbindSpec,
)

SERVICE_ID = "interop-service-id"
SERVICE_NAME = "interop-db"
PLAN_ID = "interop-plan-id"
PLAN_NAME = "small"

log = logging.getLogger("interop-broker")


class _Instance:
    def __init__(self, service_id: str, plan_id: str, parameters: Optional[dict], operation: Optional[str]):
        self.service_id = service_id
        self.plan_id = plan_id
        self.parameters = parameters
        # Operation handed out for an async provision; None when provisioned synchronously.
        self.operation = operation
        # Number of last_operation polls answered so far.
        self.polls = 0
        self.ready = operation is None
        self.bindings: Dict[str, "_Binding"] = {}


class _Binding:
    def __init__(self, service_id: str, plan_id: str, parameters: Optional[dict]):
        self.service_id = service_id
        self.plan_id = plan_id
        self.parameters = parameters
        self.credentials = {}  # filled in by bind()


class InteropBroker(ServiceBroker):
    def __init__(self, async_required: bool = False):
        self._async_required = async_required
        self._lock = threading.Lock()
        self._instances: Dict[str, _Instance] = {}

    # -- catalog ---------------------------------------------------------------

    def catalog(self) -> List[Service]:
        return [
            Service(
                id=SERVICE_ID,
                name=SERVICE_NAME,
                description="In-memory database used for OSB client interoperability tests",
                bindable=True,
                plans=[
                    ServicePlan(
                        id=PLAN_ID,
                        name=PLAN_NAME,
                        description="A small interop database",
                        free=True,
                    )
                ],
                tags=["interop", "test"],
                instances_retrievable=True,
                bindings_retrievable=True,
            )
        ]

    # -- instances -------------------------------------------------------------

    def provision(
        self, instance_id: str, details: ProvisionDetails, async_allowed: bool, **kwargs
    ) -> ProvisionedServiceSpec:
        with self._lock:
            existing = self._instances.get(instance_id)
            if existing is not None:
                if (existing.service_id, existing.plan_id, existing.parameters) == (
                    details.service_id,
                    details.plan_id,
                    details.parameters,
                ):
                    return ProvisionedServiceSpec(
                        state=ProvisionState.IDENTICAL_ALREADY_EXISTS, operation=existing.operation
                    )
                raise errors.ErrInstanceAlreadyExists()

            if async_allowed:
                operation = f"provision-{instance_id}"
                self._instances[instance_id] = _Instance(
                    details.service_id, details.plan_id, details.parameters, operation
                )
                return ProvisionedServiceSpec(state=ProvisionState.IS_ASYNC, operation=operation)

            if self._async_required:
                # openbrokerapi turns this into 422 {"error": "AsyncRequired", ...}
                raise errors.ErrAsyncRequired()

            self._instances[instance_id] = _Instance(details.service_id, details.plan_id, details.parameters, None)
            return ProvisionedServiceSpec(state=ProvisionState.SUCCESSFUL_CREATED)

    def get_instance(self, instance_id: str, **kwargs) -> GetInstanceDetailsSpec:
        with self._lock:
            inst = self._instances.get(instance_id)
            if inst is None:
                raise errors.ErrInstanceDoesNotExist()
            if not inst.ready:
                raise errors.ErrConcurrentInstanceAccess()
            return GetInstanceDetailsSpec(service_id=inst.service_id, plan_id=inst.plan_id, parameters=inst.parameters)

    def last_operation(
        self,
        instance_id: str,
        operation_data: Optional[str],
        service_id: Optional[str] = None,
        plan_id: Optional[str] = None,
        **kwargs,
    ) -> LastOperation:
        with self._lock:
            inst = self._instances.get(instance_id)
            if inst is None:
                # openbrokerapi answers 410 {"state": "succeeded", "description": ""}
                raise errors.ErrInstanceDoesNotExist()
            if operation_data is not None and operation_data != inst.operation:
                # handled by openbrokerapi's ErrBadRequest handler -> 400
                raise errors.ErrBadRequest(f"unknown operation {operation_data!r} for instance {instance_id!r}")
            inst.polls += 1
            if inst.operation is not None and inst.polls == 1:
                return LastOperation(OperationState.IN_PROGRESS, "provisioning")
            inst.ready = True
            return LastOperation(OperationState.SUCCEEDED, "provisioned")

    def deprovision(
        self, instance_id: str, details: DeprovisionDetails, async_allowed: bool, **kwargs
    ) -> DeprovisionServiceSpec:
        with self._lock:
            if self._instances.pop(instance_id, None) is None:
                # openbrokerapi answers 410 {}
                raise errors.ErrInstanceDoesNotExist()
            return DeprovisionServiceSpec(is_async=False)

    # -- bindings --------------------------------------------------------------

    def bind(self, instance_id: str, binding_id: str, details: BindDetails, async_allowed: bool, **kwargs) -> Binding:
        with self._lock:
            inst = self._instances.get(instance_id)
            if inst is None:
                # openbrokerapi has no dedicated mapping for a bind on an unknown
                # instance; ErrBadRequest gives a clean 400 instead of a 500.
                raise errors.ErrBadRequest(f"service instance {instance_id!r} does not exist")
            if not inst.ready:
                # -> 422 {"error": "ConcurrencyError", ...}
                raise errors.ErrConcurrentInstanceAccess()

            credentials = {
                "uri": f"interop://{binding_id}",
                "username": f"u-{binding_id}",
                "password": f"p-{binding_id}",
            }
            existing = inst.bindings.get(binding_id)
            if existing is not None:
                if (existing.service_id, existing.plan_id, existing.parameters) == (
                    details.service_id,
                    details.plan_id,
                    details.parameters,
                ):
                    return Binding(state=BindState.IDENTICAL_ALREADY_EXISTS, credentials=existing.credentials)
                raise errors.ErrBindingAlreadyExists()

            b = _Binding(details.service_id, details.plan_id, details.parameters)
            b.credentials = credentials
            inst.bindings[binding_id] = b
            return Binding(state=BindState.SUCCESSFUL_BOUND, credentials=credentials)

    def get_binding(self, instance_id: str, binding_id: str, **kwargs) -> GetBindingSpec:
        with self._lock:
            inst = self._instances.get(instance_id)
            b = inst.bindings.get(binding_id) if inst is not None else None
            if b is None:
                raise errors.ErrBindingDoesNotExist()
            return GetBindingSpec(credentials=b.credentials, parameters=b.parameters)

    def unbind(
        self, instance_id: str, binding_id: str, details: UnbindDetails, async_allowed: bool, **kwargs
    ) -> UnbindSpec:
        with self._lock:
            inst = self._instances.get(instance_id)
            if inst is None or inst.bindings.pop(binding_id, None) is None:
                # openbrokerapi answers 410 {}
                raise errors.ErrBindingDoesNotExist()
            return UnbindSpec(is_async=False)


def create_app(username: str, password: str, async_required: bool = False) -> Flask:
    app = Flask("openbrokerapi_interop_broker")
    blueprint = get_blueprint(
        InteropBroker(async_required=async_required),
        BrokerCredentials(username, password),
        log,
    )
    app.register_blueprint(blueprint)
    return app


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0, help="TCP port on 127.0.0.1 (0 = pick a free port)")
    parser.add_argument("--username", default="admin", help="basic-auth username (default: admin)")
    parser.add_argument("--password", default="secret", help="basic-auth password (default: secret)")
    parser.add_argument(
        "--async-required",
        action="store_true",
        help="reply 422 AsyncRequired to provisions without accepts_incomplete=true "
        "(default: provision synchronously, 201)",
    )
    parser.add_argument(
        "--allow-missing-guids",
        action="store_true",
        help="accept provisions without organization_guid/space_guid "
        "(sets openbrokerapi.settings.DISABLE_SPACE_ORG_GUID_CHECK)",
    )
    parser.add_argument(
        "--exit-on-stdin-eof",
        action="store_true",
        help="shut down when stdin is closed (lets a test harness tie our lifetime to its own)",
    )
    parser.add_argument("--quiet", action="store_true", help="only log warnings and errors to stderr")
    args = parser.parse_args(argv)

    logging.basicConfig(
        stream=sys.stderr,
        level=logging.WARNING if args.quiet else logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    if args.quiet:
        # openbrokerapi logs a full traceback for every mapped 4xx; keep quiet mode quiet.
        log.setLevel(logging.CRITICAL)
        # werkzeug forces its logger to INFO unless a level is set explicitly.
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
    if args.allow_missing_guids:
        openbrokerapi.settings.DISABLE_SPACE_ORG_GUID_CHECK = True

    app = create_app(args.username, args.password, async_required=args.async_required)
    server = make_server("127.0.0.1", args.port, app, threaded=True)
    port = server.socket.getsockname()[1]

    stopping = threading.Event()

    def shutdown(*_):
        if not stopping.is_set():
            stopping.set()
            # shutdown() blocks until serve_forever() returns, so call it off the serving thread.
            threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, shutdown)
    signal.signal(signal.SIGINT, shutdown)

    if args.exit_on_stdin_eof:

        def watch_stdin():
            try:
                while sys.stdin.buffer.read(4096):
                    pass
            except (OSError, ValueError):
                pass
            shutdown()

        threading.Thread(target=watch_stdin, daemon=True).start()

    sys.stdout.write(f"listening on http://127.0.0.1:{port}\n")
    sys.stdout.flush()
    log.info("openbrokerapi interop broker listening on 127.0.0.1:%d", port)

    try:
        server.serve_forever()
    finally:
        server.server_close()
    log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
