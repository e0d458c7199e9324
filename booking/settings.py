"""The one configuration object of every process (worker, API, CLI).

Built once at the edge (``Settings()`` reads the environment; CLI flags are
applied with ``model_copy(update=...)``) and passed down; nothing else reads
``os.environ``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated
from urllib.parse import quote

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from booking.contract import MAX_HOLD_SECONDS, MIN_HOLD_SECONDS
from booking.errors import ConfigurationError
from booking.rent import RentRules

DEV_API_KEY = "dev-api-key"
DEV_JWT_SECRET = "dev-jwt-secret"  # noqa: S105 - the documented, dev-only value
DEV_WEBHOOK_SECRET = "dev-webhook-secret"  # noqa: S105 - the documented, dev-only value
# RFC 7518 3.2: an HS256 key shorter than the hash is guessable offline; the same holds for
# the webhook's HMAC-SHA256 key. An API key is a bearer secret: 16 characters at least.
MIN_JWT_SECRET_BYTES = 32
MIN_WEBHOOK_SECRET_BYTES = 32
MIN_API_KEY_LENGTH = 16
# What a browser sends as Origin: a scheme, a host (a name, IPv4 or [IPv6]) and maybe a port.
_ORIGIN = re.compile(r"https?://(\[[0-9a-f:.]+\]|[a-z0-9.-]+)(:[0-9]{1,5})?", re.IGNORECASE)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", extra="ignore", frozen=True)

    database_url: str | None = Field(default=None, validation_alias="DATABASE_URL")
    # Or the parts of it, for deployments whose password is a secret of its own: the URL is
    # then built here with every part percent-encoded, so that any character (@ : / # ? %
    # and the rest) is safe in the password. DATABASE_URL wins when both are set.
    db_host: str | None = Field(default=None, validation_alias="BOOKING_DB_HOST")
    db_port: int = Field(default=5432, ge=1, le=65535, validation_alias="BOOKING_DB_PORT")
    db_name: str = Field(default="booking", validation_alias="BOOKING_DB_NAME")
    db_user: str = Field(default="booking", validation_alias="BOOKING_DB_USER")
    db_password: str | None = Field(default=None, validation_alias="BOOKING_DB_PASSWORD")
    temporal_address: str = Field(default="localhost:7233", validation_alias="TEMPORAL_ADDRESS")
    temporal_namespace: str = Field(default="default", validation_alias="TEMPORAL_NAMESPACE")
    task_queue: str = Field(default="apartment-booking", validation_alias="BOOKING_TASK_QUEUE")
    api_keys: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(), validation_alias="BOOKING_API_KEYS"
    )
    # Browser origins allowed to call the API (exact `scheme://host[:port]`, comma-separated);
    # unset: none, the API serves its own origin only (api/cors.py).
    cors_origins: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(), validation_alias="BOOKING_CORS_ORIGINS"
    )
    jwt_secret: str | None = Field(default=None, validation_alias="BOOKING_JWT_SECRET")
    jwks_url: str | None = Field(default=None, validation_alias="BOOKING_JWKS_URL")
    hold_seconds: int = Field(
        default=900,
        ge=MIN_HOLD_SECONDS,
        le=MAX_HOLD_SECONDS,
        validation_alias="BOOKING_HOLD_SECONDS",
    )
    # extendHold: how often one booking's hold may be moved later (the whole hold stays
    # within 24 h); read by the API.
    max_hold_extensions: int = Field(
        default=1, ge=0, le=100, validation_alias="BOOKING_MAX_HOLD_EXTENSIONS"
    )
    # A tenant's open holds at once (an Admin or API key reserving in the tenant's name
    # included); the next is HoldLimitReached. Enforced by the worker's reserve step.
    # 0: no limit (the benchmark's few tenants hold thousands).
    max_holds_per_tenant: int = Field(
        default=3, ge=0, le=1000, validation_alias="BOOKING_MAX_HOLDS_PER_TENANT"
    )
    # How long the waiting list's offer (a hold in the first waiting tenant's name) lasts;
    # placed by the worker's release step.
    waitlist_offer_seconds: int = Field(
        default=86_400,
        ge=MIN_HOLD_SECONDS,
        le=MAX_HOLD_SECONDS,
        validation_alias="BOOKING_WAITLIST_OFFER_SECONDS",
    )
    # A lease's rent (booking.rent): an invoice is issued this many days before its due date
    # (the period's first day), becomes OVERDUE (with the late fee, once) this many days after
    # it unpaid, and is reminded of every few days while overdue. Read by the worker when a
    # lease begins; a running lease keeps the rules it began with.
    rent_issue_days: int = Field(default=7, ge=0, le=60, validation_alias="BOOKING_RENT_ISSUE_DAYS")
    rent_grace_days: int = Field(default=5, ge=0, le=60, validation_alias="BOOKING_RENT_GRACE_DAYS")
    rent_reminder_days: int = Field(
        default=3, ge=1, le=60, validation_alias="BOOKING_RENT_REMINDER_DAYS"
    )
    # A tenant's endLease must name a move-out day at least this many days ahead (an Admin
    # may end a stay on any day from today). Read by the API.
    lease_notice_days: int = Field(
        default=30, ge=0, le=365, validation_alias="BOOKING_LEASE_NOTICE_DAYS"
    )
    # "2500" (a flat fee in minor units) or "5%" (a share of the period's rent, rounded up).
    late_fee: str = Field(default="0", validation_alias="BOOKING_LATE_FEE")
    webhook_secret: str | None = Field(default=None, validation_alias="BOOKING_WEBHOOK_SECRET")
    # Run workflow code in Temporal's sandbox in `booking worker` (worker.workflow_runner):
    # the tests always do; production skips its run-time checks for a quarter less CPU.
    workflow_sandbox: bool = Field(default=False, validation_alias="BOOKING_WORKFLOW_SANDBOX")
    # A hold's tenant is emailed this long before it ends (for holds longer than twice it);
    # 0: never. Read by the worker's reserve step.
    hold_reminder_seconds: int = Field(
        default=300, ge=0, le=MAX_HOLD_SECONDS, validation_alias="BOOKING_HOLD_REMINDER_SECONDS"
    )
    # Mail to tenants (booking.mail), sent by the worker. Unset host: nothing is sent (the
    # notifications stay PENDING); `booking dev` runs a local server and sets it.
    smtp_host: str | None = Field(default=None, validation_alias="BOOKING_SMTP_HOST")
    smtp_port: int = Field(default=25, ge=1, le=65535, validation_alias="BOOKING_SMTP_PORT")
    smtp_username: str | None = Field(default=None, validation_alias="BOOKING_SMTP_USERNAME")
    smtp_password: str | None = Field(default=None, validation_alias="BOOKING_SMTP_PASSWORD")
    # STARTTLS after connecting, or TLS from the first byte (port 465); not both.
    smtp_starttls: bool = Field(default=False, validation_alias="BOOKING_SMTP_STARTTLS")
    smtp_tls: bool = Field(default=False, validation_alias="BOOKING_SMTP_TLS")
    mail_from: str = Field(
        default="Apartment booking <booking@localhost>", validation_alias="BOOKING_MAIL_FROM"
    )
    # Set by `booking dev` when it runs the local mailbox: the dev API shows what it holds at
    # /dev/mailbox (ignored outside dev mode).
    dev_mailbox_dir: Path | None = Field(default=None, validation_alias="BOOKING_DEV_MAILBOX_DIR")
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
    http_body_timeout_seconds: float = Field(
        default=10, gt=0, le=300, validation_alias="BOOKING_HTTP_BODY_TIMEOUT_SECONDS"
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
    # How often an idle WebSocket gets a keep-alive (`ka`); AppSync clients give up on a
    # connection after connectionTimeoutMs (api/realtime.py) without one, Amplify warns after 65 s.
    ws_keepalive_seconds: float = Field(
        default=15, gt=0, le=240, validation_alias="BOOKING_WS_KEEPALIVE_SECONDS"
    )
    # `booking api` serves HTTPS and WSS when both are set (PEM files); `booking dev --tls`
    # sets them to a certificate of its local CA.
    tls_certfile: Path | None = Field(default=None, validation_alias="BOOKING_TLS_CERTFILE")
    tls_keyfile: Path | None = Field(default=None, validation_alias="BOOKING_TLS_KEYFILE")
    # When set, Authorization JWTs must carry this `iss` / `aud` (unset: not checked).
    jwt_issuer: str | None = Field(default=None, validation_alias="BOOKING_JWT_ISSUER")
    jwt_audience: str | None = Field(default=None, validation_alias="BOOKING_JWT_AUDIENCE")

    @field_validator("late_fee")
    @classmethod
    def _late_fee_syntax(cls, value: str) -> str:
        text = value.strip()
        number = text.removesuffix("%")
        if not number.isdigit() or (text.endswith("%") and int(number) > 100):
            raise ValueError(
                'BOOKING_LATE_FEE is a flat fee in minor units ("2500") or a percentage of the '
                f'rent up to 100 ("5%"), got {value!r}'
            )
        return text

    def rent_rules(self) -> RentRules:
        """The rules a lease beginning now follows."""
        percent = self.late_fee.endswith("%")
        amount = int(self.late_fee.removesuffix("%"))
        return RentRules(
            issue_days=self.rent_issue_days,
            grace_days=self.rent_grace_days,
            reminder_days=self.rent_reminder_days,
            late_fee_flat=0 if percent else amount,
            late_fee_percent=amount if percent else 0,
        )

    @field_validator("api_keys", "cors_origins", mode="before")
    @classmethod
    def _split_keys(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("cors_origins")
    @classmethod
    def _exact_origins(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for origin in value:
            if not _ORIGIN.fullmatch(origin):
                raise ValueError(
                    f"BOOKING_CORS_ORIGINS: {origin!r} is not an exact origin; write each as "
                    "scheme://host[:port] (no path, no wildcard), e.g. https://app.example.com"
                )
        # As browsers send it: lower case, no default port.
        normal = []
        for origin in (o.lower() for o in value):
            for scheme, port in (("https://", ":443"), ("http://", ":80")):
                if origin.startswith(scheme) and origin.endswith(port):
                    origin = origin.removesuffix(port)
            normal.append(origin)
        return tuple(normal)

    @model_validator(mode="after")
    def _tls_pair(self) -> Settings:
        if (self.tls_certfile is None) != (self.tls_keyfile is None):
            raise ValueError("set both BOOKING_TLS_CERTFILE and BOOKING_TLS_KEYFILE, or neither")
        if self.smtp_starttls and self.smtp_tls:
            raise ValueError(
                "set BOOKING_SMTP_STARTTLS (upgrade after connecting, port 587) or "
                "BOOKING_SMTP_TLS (TLS from the first byte, port 465), not both"
            )
        if (self.smtp_username is None) != (self.smtp_password is None):
            raise ValueError("set both BOOKING_SMTP_USERNAME and BOOKING_SMTP_PASSWORD, or neither")
        return self

    @property
    def tls(self) -> bool:
        return self.tls_certfile is not None

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
        if self.database_url:
            return self.database_url
        if self.db_host:
            return database_url_from_parts(
                self.db_host, self.db_port, self.db_name, self.db_user, self.db_password
            )
        raise ConfigurationError(
            "DATABASE_URL is not set (booking dev starts an embedded Postgres; other "
            "commands need DATABASE_URL, or BOOKING_DB_HOST with BOOKING_DB_USER / _PASSWORD)"
        )


def database_url_from_parts(
    host: str, port: int, name: str, user: str, password: str | None
) -> str:
    """A Postgres URL whose user, password and database name may hold any character."""
    credentials = quote(user, safe="")
    if password is not None:
        credentials += ":" + quote(password, safe="")
    return f"postgresql://{credentials}@{host}:{port}/{quote(name, safe='')}"
