"""Server settings: one typed object, read from flags, then FLEETRUN_* variables, then
defaults (in that order of precedence)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from fleetrun.core.destinations import parse_networks
from fleetrun.core.durations import parse_duration
from fleetrun.core.errors import ValidationError
from fleetrun.server.metrics import scrape_networks


def default_data_dir() -> Path:
    if os.geteuid() == 0:
        return Path("/var/lib/fleetrun")
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "fleetrun"


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8470
    data_dir: Path = field(default_factory=default_data_dir)
    database_url: str | None = None  # default: SQLite in the data dir
    heartbeat_s: float = 5.0  # agents ping this often; 3 missed pings mark the node lost
    # a replica renews its hold on its agents' sessions a third of this apart; a replica
    # gone this long has its nodes marked ConnectionLost by another
    replica_lease_s: float = 30.0
    invoke_resend_s: float = 10.0  # an unacknowledged invoke is sent again after this
    sweep_interval_s: float = 1.0  # how often the dispatcher looks at deadlines
    stop_grace_s: float = 5.0  # SIGTERM, then SIGKILL after this (sent to agents)
    log_level: str = "info"
    tls_cert: Path | None = None  # PEM certificate (chain) to serve HTTPS with
    tls_key: Path | None = None
    tls_self_signed: bool = False  # make a private CA and a certificate in the data dir
    tls_san: str = ""  # extra names/addresses for the self-signed certificate, comma-separated
    insecure_http: bool = False  # allow plain HTTP on an address other than loopback
    rate_limit_per_s: float = 50.0  # API requests per second per principal (0: no limit)
    rate_limit_burst: int = 200  # requests a principal may make at once above that rate
    # requests without a valid token, per source address (0: no limit); past the burst,
    # that address gets 429 until its bucket refills, valid token or not
    unauthenticated_rate_per_s: float = 2.0
    unauthenticated_burst: int = 300
    audit_failure_window_s: float = 60.0  # such requests: one audit record per address per window
    # events and their delivery (docs/events.md)
    delivery_max_attempts: int = 8  # then the delivery is dead-lettered
    delivery_base_s: float = 1.0  # first retry after about this long, doubling
    delivery_cap_s: float = 300.0  # never waiting longer than this between attempts
    delivery_timeout_s: float = 10.0  # one attempt (HTTP, SMTP, broker) may take this long
    delivery_lease_s: float = 60.0  # a claimed delivery is taken up again after this
    outbox_interval_s: float = 0.5  # how often the outbox looks for work when not woken
    event_retention_s: float = 30 * 86400  # events and delivered deliveries kept this long
    secret_key: str | None = None  # base64 of 32 bytes sealing target secrets (default: a file)
    smtp_host: str | None = None
    smtp_port: int = 587
    smtp_security: str = "starttls"  # starttls, tls or none
    smtp_user: str | None = None
    smtp_password: str | None = None  # FLEETRUN_SMTP_PASSWORD or --smtp-password-file
    smtp_from: str = "fleetrun@localhost"
    smtp_ca_file: str | None = None  # CA bundle for the SMTP server's certificate (default: system)
    nats_url: str = "nats://127.0.0.1:4222"
    redis_url: str = "redis://127.0.0.1:6379/0"
    # S3-compatible storage for run commands' outputUri/errorUri (s3://bucket/key).
    s3_endpoint_url: str = ""  # e.g. http://minio:9000; default: AWS in s3_region
    s3_region: str = "us-east-1"
    s3_access_key_id: str = ""
    s3_secret_access_key: str = ""  # from the environment; never logged
    s3_session_token: str = ""  # temporary credentials (STS); never logged
    # Where full output is kept (docs/scale-out.md): the data dir's output/ by default,
    # or s3://BUCKET/PREFIX on the S3 store above, which every replica reads and writes.
    output_store: str = ""
    # Replicas of the server on this machine, one process each on one port (PostgreSQL
    # only): one core each (docs/scale-out.md).
    workers: int = 1
    # Networks server-side requests (output destinations, webhooks) may reach although
    # they are internal (loopback, link-local, private, the server's own), comma-separated.
    allow_destination_cidrs: str = ""
    # GET /metrics (docs/monitoring.md): besides an administrator's API token, a scraper
    # may bear this token (FLEETRUN_METRICS_TOKEN or --metrics-token-file), or come from
    # one of these networks (comma-separated CIDRs; default: none).
    metrics_token: str | None = None
    metrics_allow_cidrs: str = ""
    log_format: str = "text"  # text or json (docs/monitoring.md)
    # Retention per kind of data (docs/output.md), as durations (30d; 0: kept forever).
    # Events and their deliveries follow event_retention_s; the audit log is never
    # pruned by the server (its hash chain is its proof: export it, then archive).
    retention_output_s: float = 0.0  # output of invocations that ended longer ago
    # Forwarding output lines as they arrive (docs/output.md): syslog over TCP or TLS
    # (tcp://HOST:PORT or tls://HOST:PORT, RFC 5424), OpenTelemetry logs over OTLP/HTTP
    # (http(s)://HOST:4318/v1/logs).
    forward_syslog: str = ""
    forward_syslog_ca_file: str | None = None  # CA of the syslog server (default: system)
    forward_otlp: str = ""

    @property
    def s3_enabled(self) -> bool:
        return bool(self.s3_access_key_id and self.s3_secret_access_key)

    @property
    def s3_base_url(self) -> str:
        return (self.s3_endpoint_url or f"https://s3.{self.s3_region}.amazonaws.com").rstrip("/")

    @property
    def output_bucket(self) -> tuple[str, str] | None:
        """(bucket, key prefix) of an s3:// output store; None for the local one."""
        return output_bucket(self.output_store)

    @property
    def serves_tls(self) -> bool:
        return bool(self.tls_self_signed or self.tls_cert)

    @property
    def sqlite_path(self) -> Path:
        return self.data_dir / "fleetrun.db"

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.sqlite_path}"

    @property
    def output_dir(self) -> Path:
        return self.data_dir / "output"

    @property
    def admin_token_path(self) -> Path:
        return self.data_dir / "admin.token"

    @property
    def secret_key_path(self) -> Path:
        return self.data_dir / "secret.key"

    def __repr__(self) -> str:  # secrets stay out of logs
        shown = {f.name: getattr(self, f.name) for f in fields(self)}
        secret = ("smtp_password", "secret_key", "metrics_token", "s3_secret_access_key")
        for name in (*secret, "s3_session_token"):
            if shown[name]:
                shown[name] = "***"
        return "Settings(" + ", ".join(f"{k}={v!r}" for k, v in shown.items()) + ")"

    @classmethod
    def load(
        cls, flags: Mapping[str, Any] | None = None, env: Mapping[str, str] | None = None
    ) -> Settings:
        """Flags (None means not given) win over FLEETRUN_<NAME> variables, which win
        over the defaults."""
        flags = flags or {}
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw: Any = flags.get(f.name)
            if raw is None:
                raw = env.get(f"FLEETRUN_{f.name.upper()}")
            if raw is None or raw == "":
                continue
            values[f.name] = _convert(f.name, f.type, raw)
        settings = cls(**values)
        parse_networks(settings.allow_destination_cidrs.split(","))  # names a bad one
        scrape_networks(settings.metrics_allow_cidrs)  # names a bad one
        if settings.log_format not in ("text", "json"):
            raise ValidationError(
                f"Setting log_format must be text or json, not {settings.log_format!r}."
            )
        for name, url in (
            ("forward_syslog", settings.forward_syslog),
            ("forward_otlp", settings.forward_otlp),
        ):
            _check_forward_url(name, url)
        output_bucket(settings.output_store)  # names what is wrong with it
        if settings.workers < 1:
            raise ValidationError(f"Setting workers must be 1 or more, not {settings.workers}.")
        if settings.workers > 1 and not settings.effective_database_url.startswith("postgres"):
            raise ValidationError(
                f"--workers {settings.workers} needs PostgreSQL (--database-url "
                "postgresql+psycopg://...): SQLite serves one process. Leave --workers at 1, "
                "or move to PostgreSQL (docs/install.md)."
            )
        if settings.smtp_security not in ("starttls", "tls", "none"):
            raise ValidationError(
                f"Setting smtp_security must be starttls, tls or none, not "
                f"{settings.smtp_security!r}."
            )
        return settings


def output_bucket(value: str) -> tuple[str, str] | None:
    """(bucket, key prefix) of an s3:// output store; None for the local one."""
    if not value:
        return None
    rest = value.removeprefix("s3://")
    bucket, _, prefix = rest.partition("/")
    if rest == value or not bucket:
        raise ValidationError(
            f"Setting output_store must be s3://BUCKET or s3://BUCKET/PREFIX, not {value!r}; "
            "leave it unset to keep output in the data directory."
        )
    prefix = prefix.strip("/")
    return bucket, f"{prefix}/" if prefix else ""


def _convert(name: str, type_: Any, raw: Any) -> Any:
    kind = str(type_)
    if name.startswith("retention_") and isinstance(raw, str):
        return parse_duration(raw, f"Setting {name} (FLEETRUN_{name.upper()})")
    try:
        if "Path" in kind:
            return Path(raw).expanduser()
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
        if kind == "bool":
            if isinstance(raw, bool):
                return raw
            if str(raw).lower() in ("1", "true", "yes", "on"):
                return True
            if str(raw).lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
    except ValueError as exc:
        raise ValidationError(
            f"Setting {name} (FLEETRUN_{name.upper()}) must be a {kind.split('|')[0].strip()}, "
            f"not {raw!r}."
        ) from exc
    return str(raw)


def _check_forward_url(name: str, url: str) -> None:
    schemes = ("tcp://", "tls://") if name == "forward_syslog" else ("http://", "https://")
    if url and not (url.startswith(schemes) and len(url) > len(schemes[0]) + 1):
        raise ValidationError(
            f"Setting {name} must start with {' or '.join(schemes)} and name a host, not {url!r}."
        )
