"""The one configuration object of every process (worker, API, CLI).

Built once at the edge (``Settings()`` reads the environment; CLI flags are
applied with ``model_copy(update=...)``) and passed down; nothing else reads
``os.environ``.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from booking.contract import MAX_HOLD_SECONDS, MIN_HOLD_SECONDS
from booking.errors import ConfigurationError

DEV_API_KEY = "dev-api-key"
DEV_JWT_SECRET = "dev-jwt-secret"  # noqa: S105 - the documented, dev-only value
DEV_WEBHOOK_SECRET = "dev-webhook-secret"  # noqa: S105 - the documented, dev-only value
# RFC 7518 3.2: an HS256 key shorter than the hash is guessable offline; the same holds for
# the webhook's HMAC-SHA256 key. An API key is a bearer secret: 16 characters at least.
MIN_JWT_SECRET_BYTES = 32
MIN_WEBHOOK_SECRET_BYTES = 32
MIN_API_KEY_LENGTH = 16


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", extra="ignore", frozen=True)

    database_url: str | None = Field(default=None, validation_alias="DATABASE_URL")
    temporal_address: str = Field(default="localhost:7233", validation_alias="TEMPORAL_ADDRESS")
    temporal_namespace: str = Field(default="default", validation_alias="TEMPORAL_NAMESPACE")
    task_queue: str = Field(default="apartment-booking", validation_alias="BOOKING_TASK_QUEUE")
    api_keys: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(), validation_alias="BOOKING_API_KEYS"
    )
    jwt_secret: str | None = Field(default=None, validation_alias="BOOKING_JWT_SECRET")
    jwks_url: str | None = Field(default=None, validation_alias="BOOKING_JWKS_URL")
    hold_seconds: int = Field(
        default=900,
        ge=MIN_HOLD_SECONDS,
        le=MAX_HOLD_SECONDS,
        validation_alias="BOOKING_HOLD_SECONDS",
    )
    webhook_secret: str | None = Field(default=None, validation_alias="BOOKING_WEBHOOK_SECRET")
    # Set by `booking dev` for the processes it starts: the only place where the
    # documented dev secrets are accepted.
    dev_mode: bool = Field(default=False, validation_alias="BOOKING_DEV_MODE")
    # host:port for the worker's Prometheus exporter; unset means no exporter.
    worker_metrics_address: str | None = Field(
        default=None, validation_alias="BOOKING_WORKER_METRICS_ADDRESS"
    )
    api_host: str = Field(default="127.0.0.1", validation_alias="BOOKING_API_HOST")
    api_port: int = Field(default=8000, validation_alias="BOOKING_API_PORT")
    db_pool_min: int = Field(default=2, ge=1, validation_alias="BOOKING_DB_POOL_MIN")
    db_pool_max: int = Field(default=20, ge=1, validation_alias="BOOKING_DB_POOL_MAX")
    introspection: bool = Field(default=True, validation_alias="BOOKING_GRAPHQL_INTROSPECTION")
    # Largest estimated result (values, lists multiplied out) a query may ask for: see
    # api/cost.py. Refused before anything runs.
    graphql_max_cost: int = Field(
        default=25_000, ge=100, le=1_000_000, validation_alias="BOOKING_GRAPHQL_MAX_COST"
    )
    log_level: str = Field(default="INFO", validation_alias="BOOKING_LOG_LEVEL")
    # Freshness a CDN may give public GraphQL reads (buildings, apartments and
    # their availability); see api/http_cache.py and docs/caching.md.
    cache_max_age: int = Field(default=5, ge=0, le=3600, validation_alias="BOOKING_CACHE_MAX_AGE")
    cache_stale_while_revalidate: int = Field(
        default=10, ge=0, le=86400, validation_alias="BOOKING_CACHE_STALE_WHILE_REVALIDATE"
    )
    # Longest an API request waits on Temporal (a start, an update) before it
    # answers ServiceUnavailable; without it, no worker means a request that hangs.
    temporal_call_timeout_seconds: float = Field(
        default=20, gt=0, le=600, validation_alias="BOOKING_TEMPORAL_CALL_TIMEOUT_SECONDS"
    )
    # Longest a database call of the API may take (waiting for a pooled connection, then the
    # statement) before it answers ServiceUnavailable; /readyz has its own, shorter budget.
    db_timeout_seconds: float = Field(
        default=5, gt=0, le=300, validation_alias="BOOKING_DB_TIMEOUT_SECONDS"
    )
    # Limits of the API's HTTP server (api/server.py says why each exists).
    http_header_timeout_seconds: float = Field(
        default=10, gt=0, le=300, validation_alias="BOOKING_HTTP_HEADER_TIMEOUT_SECONDS"
    )
    http_keepalive_seconds: int = Field(
        default=75, ge=1, le=3600, validation_alias="BOOKING_HTTP_KEEPALIVE_SECONDS"
    )
    http_max_connections: int = Field(
        default=16_384, ge=1, validation_alias="BOOKING_HTTP_MAX_CONNECTIONS"
    )
    # A stay is at most this long, and starts at most this far ahead (ValidationError beyond).
    max_stay_days: int = Field(
        default=1830, ge=1, le=3660, validation_alias="BOOKING_MAX_STAY_DAYS"
    )
    max_advance_days: int = Field(
        default=730, ge=0, le=3660, validation_alias="BOOKING_MAX_ADVANCE_DAYS"
    )
    # When set, Authorization JWTs must carry this `iss` / `aud` (unset: not checked).
    jwt_issuer: str | None = Field(default=None, validation_alias="BOOKING_JWT_ISSUER")
    jwt_audience: str | None = Field(default=None, validation_alias="BOOKING_JWT_AUDIENCE")

    @field_validator("api_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    def refuse_unsafe_secrets(self, process: str) -> None:
        """Outside ``booking dev``, refuse to start ``process`` with secrets anyone can guess.

        The one check every long-running process (``booking api``, ``booking worker``,
        ``python worker.py``) makes before it opens anything.
        """
        if self.dev_mode:
            return
        found = self.dev_secrets_in_use()
        if found:
            raise ConfigurationError(
                f"refusing to start the {process}: {', '.join(found)} still hold the documented "
                "dev value, which anyone can read in the README. Set your own secret(s), or use "
                "`booking dev` for local development"
            )
        weak = []
        if self.jwt_secret is not None and len(self.jwt_secret.encode()) < MIN_JWT_SECRET_BYTES:
            weak.append(f"BOOKING_JWT_SECRET must be at least {MIN_JWT_SECRET_BYTES} bytes")
        webhook = self.webhook_secret
        if webhook is not None and len(webhook.encode()) < MIN_WEBHOOK_SECRET_BYTES:
            weak.append(f"BOOKING_WEBHOOK_SECRET must be at least {MIN_WEBHOOK_SECRET_BYTES} bytes")
        if any(len(key) < MIN_API_KEY_LENGTH for key in self.api_keys):
            weak.append(
                f"every key in BOOKING_API_KEYS must be at least {MIN_API_KEY_LENGTH} characters"
            )
        if weak:
            raise ConfigurationError(f"refusing to start the {process}: {'; '.join(weak)}")

    def dev_secrets_in_use(self) -> list[str]:
        """Names of settings that still hold a documented dev value."""
        found = []
        if DEV_API_KEY in self.api_keys:
            found.append("BOOKING_API_KEYS")
        if self.jwt_secret == DEV_JWT_SECRET:
            found.append("BOOKING_JWT_SECRET")
        if self.webhook_secret == DEV_WEBHOOK_SECRET:
            found.append("BOOKING_WEBHOOK_SECRET")
        return found

    def require_database_url(self) -> str:
        if not self.database_url:
            raise ConfigurationError(
                "DATABASE_URL is not set (booking dev starts an embedded Postgres; "
                "other commands need DATABASE_URL)"
            )
        return self.database_url
