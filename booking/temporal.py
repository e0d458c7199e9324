"""Connecting to Temporal and preparing a namespace for the booking workflows.

Every client the project makes (worker, API, ``booking setup``, ``booking doctor``, the
bench against an external system) connects through :func:`connect` with the standard client
configuration the ``temporal`` CLI and every SDK share (``temporalio.envconfig``): a TOML
profile (``TEMPORAL_CONFIG_FILE``, ``TEMPORAL_PROFILE``) and the ``TEMPORAL_*`` variables
over it (``TEMPORAL_ADDRESS``, ``TEMPORAL_NAMESPACE``, ``TEMPORAL_API_KEY``, ``TEMPORAL_TLS``,
``TEMPORAL_TLS_CLIENT_CERT_PATH`` / ``_DATA``, ``TEMPORAL_TLS_CLIENT_KEY_PATH`` / ``_DATA``,
``TEMPORAL_TLS_SERVER_CA_CERT_PATH`` / ``_DATA``, ``TEMPORAL_TLS_SERVER_NAME``), so an
operator configures the service exactly as the CLI. Without any of it: the address and
namespace of :class:`~booking.settings.Settings` (``localhost:7233``, ``default``), plaintext.
A certificate that is wrong or missing, or a server that does not answer, is one
:class:`ConfigurationError` line within ``wait_seconds``, never a hang.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    ListSearchAttributesRequest,
)
from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest
from temporalio.client import Client
from temporalio.common import SearchAttributeIndexedValueType
from temporalio.converter import DataConverter
from temporalio.envconfig import ClientConfig, ClientConnectConfig
from temporalio.service import RPCError, RPCStatusCode

from booking.errors import ConfigurationError
from booking.search_attributes import ALL_KEYS

log = logging.getLogger(__name__)

# The client configuration's variables beyond TEMPORAL_ADDRESS / TEMPORAL_NAMESPACE (which
# Settings reads too): read by temporalio.envconfig, named here for whoever passes them on.
CLIENT_CONFIGURATION = (
    "TEMPORAL_API_KEY",
    "TEMPORAL_PROFILE",
    "TEMPORAL_CONFIG_FILE",
    "TEMPORAL_TLS",
    "TEMPORAL_TLS_CLIENT_CERT_PATH",
    "TEMPORAL_TLS_CLIENT_CERT_DATA",
    "TEMPORAL_TLS_CLIENT_KEY_PATH",
    "TEMPORAL_TLS_CLIENT_KEY_DATA",
    "TEMPORAL_TLS_SERVER_CA_CERT_PATH",
    "TEMPORAL_TLS_SERVER_CA_CERT_DATA",
    "TEMPORAL_TLS_SERVER_NAME",
)

# What a server still starting up answers (the namespace not created yet, its search
# attribute mapping not loaded yet): worth waiting for. Anything else is a real refusal.
_TRANSIENT = frozenset(
    {
        RPCStatusCode.UNAVAILABLE,
        RPCStatusCode.NOT_FOUND,
        RPCStatusCode.DEADLINE_EXCEEDED,
        RPCStatusCode.INTERNAL,
        RPCStatusCode.RESOURCE_EXHAUSTED,
        RPCStatusCode.ABORTED,
    }
)


def connect_config(
    address: str,
    namespace: str,
    *,
    env: Mapping[str, str] | None = None,
    override: bool = False,
) -> ClientConnectConfig:
    """What to connect with: the shared client configuration (profile, then ``TEMPORAL_*``
    variables; ``env`` instead of this process's environment), with ``address`` and
    ``namespace`` where it names none, or over it when ``override`` (an explicit flag)."""
    try:
        config = ClientConfig.load_client_connect_config(override_env_vars=env)
    except (RuntimeError, ValueError, OSError) as exc:
        raise ConfigurationError(f"Temporal client configuration: {exc}") from exc
    if override or not config.get("target_host"):
        config["target_host"] = address
    if override or not config.get("namespace"):
        config["namespace"] = namespace
    return config


async def connect(
    address: str,
    namespace: str,
    *,
    data_converter: DataConverter | None = None,
    wait_seconds: float = 10.0,
    env: Mapping[str, str] | None = None,
    override: bool = False,
    **options: Any,
) -> Client:
    """Connect as :func:`connect_config` says, or raise ConfigurationError saying to what and
    why not (a refused certificate, no answer) within ``wait_seconds``."""
    config = connect_config(address, namespace, env=env, override=override)
    target = config["target_host"]
    secured = " (TLS)" if config.get("tls") else ""
    try:
        async with asyncio.timeout(wait_seconds):
            return await Client.connect(
                **config,
                data_converter=data_converter or DataConverter.default,
                **options,
            )
    except (TimeoutError, RuntimeError, OSError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if isinstance(exc, TimeoutError):
            reason = f"no answer within {wait_seconds:g} s"
        raise ConfigurationError(f"cannot reach Temporal at {target}{secured}: {reason}") from exc


async def prepare_namespace(
    address: str,
    namespace: str,
    *,
    within: float = 300.0,
    interval: float = 2.0,
    say: Callable[[str], None] = log.info,
) -> list[str]:
    """Wait until ``namespace`` exists on ``address``, then register our search attributes.

    What ``booking setup`` runs: a server that is still starting (refuses connections), a
    namespace that a separate step creates a little later, and a search attribute mapping
    that is not loaded yet are all waited for, for at most ``within`` seconds; a real
    refusal (permission, a bad argument) fails at once. Idempotent: a second run finds
    everything in place and changes nothing. Returns the attributes it registered.
    """
    # A configuration that does not load is refused now, and messages name the real target.
    target = connect_config(address, namespace)["target_host"]
    deadline = time.monotonic() + within
    last = "no answer yet"
    while True:
        try:
            client = await connect(address, namespace, wait_seconds=min(10.0, within))
        except ConfigurationError as exc:
            last = str(exc)  # not up yet: waited for
        else:
            try:
                await _describe_namespace(client, namespace)
                # A refusal to add the attributes (Temporal Cloud) is final: raised at once.
                return await register_search_attributes(client, namespace)
            except RPCError as exc:
                if exc.status not in _TRANSIENT:
                    raise ConfigurationError(
                        f"Temporal at {target} refused namespace {namespace!r}: "
                        f"{exc.status.name}: {exc.message}"
                    ) from exc
                last = f"{exc.status.name}: {exc.message}"
        if time.monotonic() + interval > deadline:
            raise ConfigurationError(
                f"namespace {namespace!r} on Temporal at {target} was not ready within "
                f"{within:.0f} s (last answer: {last})"
            )
        say(f"waiting for namespace {namespace!r} on {target} ({last})")
        await asyncio.sleep(interval)


async def _describe_namespace(client: Client, namespace: str) -> None:
    try:
        await client.workflow_service.describe_namespace(
            DescribeNamespaceRequest(namespace=namespace)
        )
    except RPCError as err:
        # The time-skipping test server has one namespace and no namespace API.
        if err.status != RPCStatusCode.UNIMPLEMENTED:
            raise


async def register_search_attributes(client: Client, namespace: str) -> list[str]:
    """Register the booking search attributes that the namespace lacks; return their names."""
    try:
        existing = await client.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace=namespace)
        )
        known = set(existing.custom_attributes) | set(existing.system_attributes)
    except RPCError as err:
        # The time-skipping test server can add search attributes but not list them.
        if err.status != RPCStatusCode.UNIMPLEMENTED:
            raise
        known = set()
    missing = {
        key.name: IndexedValueType.ValueType(key.indexed_value_type.value)
        for key in ALL_KEYS
        if key.name not in known
    }
    if missing:
        try:
            await client.operator_service.add_search_attributes(
                AddSearchAttributesRequest(namespace=namespace, search_attributes=missing)
            )
        except RPCError as err:
            if err.status in (RPCStatusCode.PERMISSION_DENIED, RPCStatusCode.UNIMPLEMENTED):
                # Temporal Cloud: search attributes are made in its UI or with tcld.
                wanted = ", ".join(
                    f"{key.name} ({_KIND_NAMES[key.indexed_value_type]})"
                    for key in ALL_KEYS
                    if key.name in missing
                )
                raise ConfigurationError(
                    f"namespace {namespace!r} lacks the search attributes {wanted}, and this "
                    f"server does not let clients add them ({err.status.name}): create them in "
                    "the Temporal Cloud UI or with `tcld namespace search-attributes add` "
                    "(docs/deployment.md, 'Temporal Cloud')"
                ) from err
            if err.status != RPCStatusCode.ALREADY_EXISTS:
                raise
    return sorted(missing)


# How the temporal CLI and the Cloud UI name the kinds of our search attributes.
_KIND_NAMES = {
    SearchAttributeIndexedValueType.KEYWORD: "Keyword",
    SearchAttributeIndexedValueType.DATETIME: "Datetime",
}


def dev_server_search_attribute_flags() -> list[str]:
    """``--search-attribute`` flags for ``temporal server start-dev``."""
    flags = []
    for key in ALL_KEYS:
        flags += ["--search-attribute", f"{key.name}={_KIND_NAMES[key.indexed_value_type]}"]
    return flags
