"""Connecting to Temporal and preparing a namespace for the booking workflows."""

from __future__ import annotations

import asyncio
from typing import Any

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    ListSearchAttributesRequest,
)
from temporalio.client import Client
from temporalio.common import SearchAttributeIndexedValueType
from temporalio.converter import DataConverter
from temporalio.service import RPCError, RPCStatusCode

from booking.errors import ConfigurationError
from workflows.search_attributes import ALL_KEYS


async def connect(
    address: str,
    namespace: str,
    *,
    data_converter: DataConverter | None = None,
    wait_seconds: float = 10.0,
    **options: Any,
) -> Client:
    """Connect, or raise ConfigurationError saying which address did not answer."""
    try:
        async with asyncio.timeout(wait_seconds):
            return await Client.connect(
                address,
                namespace=namespace,
                data_converter=data_converter or DataConverter.default,
                **options,
            )
    except (TimeoutError, RuntimeError, OSError) as exc:
        raise ConfigurationError(
            f"cannot reach Temporal at {address}: {exc or type(exc).__name__}"
        ) from exc


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
            if err.status != RPCStatusCode.ALREADY_EXISTS:
                raise
    return sorted(missing)


def dev_server_search_attribute_flags() -> list[str]:
    """``--search-attribute`` flags for ``temporal server start-dev``."""
    names = {
        SearchAttributeIndexedValueType.KEYWORD: "Keyword",
        SearchAttributeIndexedValueType.DATETIME: "Datetime",
    }
    flags = []
    for key in ALL_KEYS:
        flags += ["--search-attribute", f"{key.name}={names[key.indexed_value_type]}"]
    return flags
