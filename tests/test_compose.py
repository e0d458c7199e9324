"""docker-compose.yml: valid against the Compose specification, and in step with Settings.

No Docker engine runs here, so the file is checked as data: the vendored
compose-spec JSON schema (tests/data/compose-spec.json, from the
check-jsonschema package's vendored copy, Apache-2.0, see
LICENSE.compose-spec) and the environment names that Settings reads.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import pytest
import yaml

from booking.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = ROOT / "tests" / "data" / "compose-spec.json"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return loaded


def settings_env_names() -> set[str]:
    names = set()
    for field in Settings.model_fields.values():
        assert isinstance(field.validation_alias, str)
        names.add(field.validation_alias)
    return names


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


def test_the_production_services_are_there(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert {"postgres", "temporal", "temporal-ui", "worker", "api"} <= set(services)
    assert "healthcheck" in services["postgres"]
    assert services["temporal"]["image"].startswith(
        ("temporalio/auto-setup:", "temporalio/server:")
    )
    assert services["temporal-ui"]["image"].startswith("temporalio/ui:")
    assert services["temporal"]["environment"]["DB"].startswith("postgres")
    assert services["temporal"]["environment"]["POSTGRES_SEEDS"] == "postgres"
    for name in ("worker", "api"):
        assert services[name]["build"] == "."
    assert services["worker"]["command"] == ["booking", "worker"]
    assert services["api"]["command"] == ["booking", "api"]


def test_ports_agree_with_the_defaults_and_the_environment(compose: dict[str, Any]) -> None:
    services = compose["services"]
    api_env = services["api"]["environment"]
    assert (
        f"{api_env['BOOKING_API_PORT']}:{api_env['BOOKING_API_PORT']}" in services["api"]["ports"]
    )
    assert api_env["BOOKING_API_HOST"] == "0.0.0.0"
    metrics = services["worker"]["environment"]["BOOKING_WORKER_METRICS_ADDRESS"]
    port = metrics.rsplit(":", 1)[1]
    assert port in services["worker"]["expose"]
    assert "ports" not in services["worker"]  # replicas would fight over a host port
    temporal_host, temporal_port = services["api"]["environment"]["TEMPORAL_ADDRESS"].split(":")
    assert temporal_host == "temporal"
    assert f"{temporal_port}:{temporal_port}" in services["temporal"]["ports"]
    assert services["temporal-ui"]["environment"]["TEMPORAL_ADDRESS"] == "temporal:7233"


def test_every_booking_variable_is_one_that_settings_reads(compose: dict[str, Any]) -> None:
    known = settings_env_names()
    for name in ("setup", "worker", "api"):
        env = compose["services"][name]["environment"]
        ours = {key for key in env if key.startswith(("BOOKING_", "TEMPORAL_", "DATABASE_"))}
        unknown = ours - known
        assert not unknown, f"{name} sets variables Settings does not read: {unknown}"
        # The connection settings every process needs are given, not defaulted.
        assert {"DATABASE_URL", "TEMPORAL_ADDRESS", "BOOKING_API_KEYS"} <= set(env)


def test_database_url_points_at_the_compose_postgres(compose: dict[str, Any]) -> None:
    services = compose["services"]
    pg = services["postgres"]["environment"]
    url = services["api"]["environment"]["DATABASE_URL"]
    match = re.fullmatch(
        r"postgresql://([^:]+):\$\{POSTGRES_PASSWORD[^}]*\}@postgres:5432/(\w+)", url
    )
    assert match, url
    assert match.group(1) == pg["POSTGRES_USER"]
    assert match.group(2) == pg["POSTGRES_DB"]


def test_secrets_have_no_defaults(compose: dict[str, Any]) -> None:
    # Production must never run on a documented value: compose refuses to start
    # without them (the :? form) or passes them through from the host only.
    env = compose["services"]["api"]["environment"]
    for name in ("BOOKING_API_KEYS", "BOOKING_WEBHOOK_SECRET"):
        assert re.fullmatch(r"\$\{" + name + r":\?[^}]*\}", env[name]), env[name]
    for name in ("BOOKING_JWT_SECRET", "BOOKING_JWKS_URL"):
        assert env[name] is None
    text = (ROOT / "docker-compose.yml").read_text()
    assert "dev-api-key" not in text
    assert "dev-jwt-secret" not in text


def test_dockerfile_installs_what_the_services_run() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.1[1-9]", dockerfile, re.M)
    assert "pip install ." in dockerfile
    for package in ("booking", "workflows", "activities", "api"):
        assert re.search(rf"^COPY {package} {package}$", dockerfile, re.M), package
    assert "worker.py" in dockerfile
    assert re.search(r"^USER (?!root)\w+", dockerfile, re.M)
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert ".venv" in ignored
    assert ".booking" in ignored
