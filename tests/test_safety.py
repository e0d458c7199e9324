"""Secrets and safety outside the API's own tests: processes refuse the documented dev secrets.

The dev values (``dev-api-key``, ``dev-jwt-secret``, ``dev-webhook-secret``) are printed in
the README, so anyone can use them: only processes started by ``booking dev``
(``BOOKING_DEV_MODE=1``) may run with them. Each refusal must happen before the process
listens or connects, exit non-zero, name the setting, and not echo any secret value.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from api.app import create_app
from booking.errors import ConfigurationError
from booking.settings import DEV_API_KEY, DEV_JWT_SECRET, DEV_WEBHOOK_SECRET, Settings

REAL_JWT_SECRET = "a-real-jwt-secret-0123456789abcdef"
REAL_KEY = "a-real-api-key-0123456789"


def _run(command: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("BOOKING_")}
    base.update(
        {
            # Nothing listens here: a process that got past the check would fail differently.
            "DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none",
            "TEMPORAL_ADDRESS": "127.0.0.1:1",
            "BOOKING_API_PORT": "1",
            **env,
        }
    )
    return subprocess.run(
        [sys.executable, "-m", "cli", command],
        env=base,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("command", ["api", "worker"])
@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("BOOKING_API_KEYS", f"{REAL_KEY},{DEV_API_KEY}"),
        ("BOOKING_JWT_SECRET", DEV_JWT_SECRET),
        ("BOOKING_WEBHOOK_SECRET", DEV_WEBHOOK_SECRET),
    ],
)
def test_processes_refuse_dev_secrets_outside_dev(command: str, variable: str, value: str) -> None:
    env = {"BOOKING_API_KEYS": REAL_KEY, "BOOKING_JWT_SECRET": REAL_JWT_SECRET, variable: value}
    result = _run(command, **env)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert variable in result.stderr
    assert "booking dev" in result.stderr
    for secret in (REAL_KEY, REAL_JWT_SECRET, DEV_JWT_SECRET, DEV_WEBHOOK_SECRET):
        assert secret not in result.stderr + result.stdout


def test_the_api_refuses_the_dev_webhook_secret_unless_in_dev_mode() -> None:
    settings = Settings(  # type: ignore[call-arg]
        BOOKING_API_KEYS=REAL_KEY,
        BOOKING_JWT_SECRET=REAL_JWT_SECRET,
        BOOKING_WEBHOOK_SECRET=DEV_WEBHOOK_SECRET,
    )
    with pytest.raises(ConfigurationError, match="BOOKING_WEBHOOK_SECRET"):
        create_app(settings)
    app = create_app(settings.model_copy(update={"dev_mode": True}))
    assert any(getattr(r, "path", None) == "/webhooks/payments" for r in app.routes)


@pytest.mark.parametrize("command", ["api", "worker"])
@pytest.mark.parametrize(
    ("variable", "value", "rule"),
    [
        ("BOOKING_API_KEYS", f"{REAL_KEY},short-key", "at least 16 characters"),
        ("BOOKING_WEBHOOK_SECRET", "only-31-bytes-of-webhook-secret", "at least 32 bytes"),
        ("BOOKING_JWT_SECRET", "a-31-byte-jwt-secret-0123456789", "at least 32 bytes"),
    ],
)
def test_processes_refuse_guessable_secrets_outside_dev(
    command: str, variable: str, value: str, rule: str
) -> None:
    env = {"BOOKING_API_KEYS": REAL_KEY, "BOOKING_JWT_SECRET": REAL_JWT_SECRET, variable: value}
    result = _run(command, **env)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert variable in result.stderr and rule in result.stderr
    assert value not in result.stderr + result.stdout
    # booking dev's children may use them (a developer's short local values).
    Settings.model_validate({**env, "BOOKING_DEV_MODE": "1"}).refuse_unsafe_secrets(command)


def test_secrets_of_the_minimum_length_are_accepted() -> None:
    Settings.model_validate(
        {
            "BOOKING_API_KEYS": "k" * 16,
            "BOOKING_JWT_SECRET": "j" * 32,
            "BOOKING_WEBHOOK_SECRET": "w" * 32,
        }
    ).refuse_unsafe_secrets("API")
