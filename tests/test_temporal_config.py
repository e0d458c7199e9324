"""booking.temporal: the shared client configuration, and a server that will not add our
search attributes (Temporal Cloud)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from temporalio.api.operatorservice.v1 import ListSearchAttributesResponse
from temporalio.service import RPCError, RPCStatusCode

from booking import temporal
from booking.errors import ConfigurationError
from booking.search_attributes import ALL_KEYS
from booking.temporal import connect, connect_config, register_search_attributes


def test_the_environment_configures_like_the_temporal_cli(tmp_path: Path) -> None:
    profile = tmp_path / "temporal.toml"
    profile.write_text(
        '[profile.default]\naddress = "cluster.example.com:7233"\nnamespace = "prod"\n'
        '[profile.cloud]\naddress = "eu.aws.api.temporal.io:7233"\nnamespace = "b.acct"\n'
        'api_key = "cloud-key"\n'
    )
    # Nothing configured: the settings' address and namespace, plaintext.
    bare = connect_config("localhost:7233", "default", env={})
    assert bare == {"target_host": "localhost:7233", "namespace": "default"}
    # A profile names them; the variables override it; an explicit flag overrides both.
    from_file = {"TEMPORAL_CONFIG_FILE": str(profile)}
    file_only = connect_config("localhost:7233", "default", env=from_file)
    assert file_only["target_host"] == "cluster.example.com:7233"
    assert file_only["namespace"] == "prod"
    cloud = connect_config(
        "localhost:7233",
        "default",
        env={"TEMPORAL_CONFIG_FILE": str(profile), "TEMPORAL_PROFILE": "cloud"},
    )
    assert cloud["api_key"] == "cloud-key" and cloud["tls"] is True
    env = {"TEMPORAL_CONFIG_FILE": str(profile), "TEMPORAL_ADDRESS": "other:7233"}
    assert connect_config("localhost:7233", "default", env=env)["target_host"] == "other:7233"
    flagged = connect_config("flag:7233", "ns", env=env, override=True)
    assert (flagged["target_host"], flagged["namespace"]) == ("flag:7233", "ns")


def test_an_unreadable_configuration_is_a_configuration_error(tmp_path: Path) -> None:
    broken = tmp_path / "temporal.toml"
    broken.write_text("[profile.default\naddress = ")
    with pytest.raises(ConfigurationError, match="Temporal client configuration"):
        connect_config("localhost:7233", "default", env={"TEMPORAL_CONFIG_FILE": str(broken)})


async def test_a_frontend_that_does_not_answer_is_one_line_within_the_wait() -> None:
    with pytest.raises(ConfigurationError, match=r"cannot reach Temporal at 127\.0\.0\.1:9: "):
        await connect("127.0.0.1:9", "default", env={}, wait_seconds=2)


class _RefusingOperator:
    """An operator service that lists nothing and may not add (as Temporal Cloud's)."""

    async def list_search_attributes(self, _request: Any) -> ListSearchAttributesResponse:
        return ListSearchAttributesResponse()

    async def add_search_attributes(self, _request: Any) -> None:
        raise RPCError("not allowed", RPCStatusCode.PERMISSION_DENIED, b"")


class _Client:
    operator_service = _RefusingOperator()


async def test_search_attributes_a_server_will_not_add_are_named_with_the_way_to_add_them() -> None:
    with pytest.raises(ConfigurationError) as refused:
        await register_search_attributes(_Client(), "b.acct")  # type: ignore[arg-type]
    message = str(refused.value)
    for key in ALL_KEYS:
        assert key.name in message
    assert "tcld namespace search-attributes add" in message and "Keyword" in message


class _Namespaces:
    async def describe_namespace(self, _request: Any) -> None:
        return None


class _CloudClient(_Client):
    workflow_service = _Namespaces()


async def test_setup_stops_at_once_on_a_server_that_will_not_add_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A final refusal is not waited out as if the server were still starting."""

    async def connected(*_args: Any, **_kwargs: Any) -> _CloudClient:
        return _CloudClient()

    monkeypatch.setattr(temporal, "connect", connected)
    started = time.monotonic()
    with pytest.raises(ConfigurationError, match="tcld"):
        await temporal.prepare_namespace("localhost:7233", "b.acct", within=30, interval=0.1)
    assert time.monotonic() - started < 2
