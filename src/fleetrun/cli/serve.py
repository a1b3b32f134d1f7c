"""`fleetrun server` and `fleetrun login`."""

from __future__ import annotations

import contextlib
from pathlib import Path

import click

from fleetrun.cli import render
from fleetrun.cli.base import insecure_option, json_option, options, profile_option
from fleetrun.core.errors import AccessDeniedError
from fleetrun.sdk import Client, config


@click.group("server", invoke_without_command=True)
@click.option("--host", default=None, help="Address to listen on (default 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port (default 8470).")
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Where the database, output and admin token live.",
)
@click.option(
    "--database-url",
    default=None,
    help="sqlite:///PATH (default: in the data dir) or postgresql+psycopg://...",
)
@click.option("--log-level", default=None, type=click.Choice(["debug", "info", "warning", "error"]))
@click.option(
    "--log-format",
    default=None,
    type=click.Choice(["text", "json"]),
    help="Log lines as text (default) or one JSON object each (or FLEETRUN_LOG_FORMAT).",
)
@click.option(
    "--metrics-token-file",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="A token that may read /metrics, read from this file (or FLEETRUN_METRICS_TOKEN).",
)
@click.option(
    "--metrics-allow-cidr",
    "metrics_allow_cidrs",
    multiple=True,
    metavar="CIDR",
    help="Let this network read /metrics without a token (repeatable).",
)
@click.option(
    "--tls-cert",
    type=click.Path(path_type=Path),
    default=None,
    help="Serve HTTPS with this certificate (PEM, chain allowed).",
)
@click.option(
    "--tls-key",
    type=click.Path(path_type=Path),
    default=None,
    help="The certificate's private key (PEM).",
)
@click.option(
    "--tls-self-signed",
    is_flag=True,
    default=None,
    help="Make a private CA and a certificate in the data dir; print its fingerprint.",
)
@click.option(
    "--tls-san",
    default=None,
    metavar="NAMES",
    help="Extra names or addresses for the self-signed certificate, comma-separated.",
)
@click.option(
    "--insecure-http",
    is_flag=True,
    default=None,
    help="Allow plain HTTP on a --host other than loopback (tokens cross the network in clear).",
)
@click.option(
    "--delivery-max-attempts",
    type=int,
    default=None,
    help="Attempts per event delivery before it is dead-lettered (default 8).",
)
@click.option("--smtp-host", default=None, help="SMTP server for email: targets.")
@click.option("--smtp-port", type=int, default=None, help="SMTP port (default 587).")
@click.option("--smtp-security", default=None, type=click.Choice(["starttls", "tls", "none"]))
@click.option("--smtp-user", default=None, help="SMTP user name.")
@click.option(
    "--smtp-password-file",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Read the SMTP password from this file (or set FLEETRUN_SMTP_PASSWORD).",
)
@click.option("--smtp-from", default=None, help="Sender address of e-mails.")
@click.option(
    "--smtp-ca-file",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    default=None,
    help="CA bundle that signed the SMTP server's certificate (default: the system's).",
)
@click.option("--nats-url", default=None, help="NATS server for nats: targets.")
@click.option("--redis-url", default=None, help="Redis server for redis: targets.")
@click.option(
    "--allow-destination-cidr",
    "allow_destination_cidrs",
    multiple=True,
    metavar="CIDR",
    help="Let output destinations and webhooks reach this internal network (repeatable).",
)
@click.option(
    "--retention-output",
    default=None,
    metavar="DURATION",
    help="Delete the output of invocations ended longer ago than this, e.g. 30d (default: keep).",
)
@click.option("--forward-syslog", default=None, metavar="URL", help="tcp:// or tls://HOST:PORT.")
@click.option(
    "--forward-syslog-ca-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="CA bundle that signed the syslog server's certificate (default: the system's).",
)
@click.option("--forward-otlp", default=None, metavar="URL", help="OTLP/HTTP logs endpoint.")
@click.option(
    "--output-store",
    default=None,
    metavar="s3://BUCKET/PREFIX",
    help="Keep full output in this bucket of the S3 store (FLEETRUN_S3_*), shared by "
    "replicas (default: the data directory).",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=None,
    help="Replicas of the server on this machine, one process each (PostgreSQL only; "
    "default 1). One per core.",
)
@click.pass_context
def server(
    ctx: click.Context,
    host: str | None,
    port: int | None,
    data_dir: Path | None,
    database_url: str | None,
    log_level: str | None,
    log_format: str | None,
    metrics_token_file: Path | None,
    metrics_allow_cidrs: tuple[str, ...],
    tls_cert: Path | None,
    tls_key: Path | None,
    tls_self_signed: bool | None,
    tls_san: str | None,
    insecure_http: bool | None,
    delivery_max_attempts: int | None,
    smtp_host: str | None,
    smtp_port: int | None,
    smtp_security: str | None,
    smtp_user: str | None,
    smtp_password_file: Path | None,
    smtp_from: str | None,
    smtp_ca_file: Path | None,
    nats_url: str | None,
    redis_url: str | None,
    allow_destination_cidrs: tuple[str, ...],
    retention_output: str | None,
    forward_syslog: str | None,
    forward_syslog_ca_file: Path | None,
    forward_otlp: str | None,
    output_store: str | None,
    workers: int | None,
) -> None:
    """Run the fleetrun server (API, agent gateway, dispatcher) in the foreground."""
    if ctx.invoked_subcommand is not None:
        return
    from fleetrun.server.db import sync_url
    from fleetrun.server.main import serve, tls_files
    from fleetrun.server.settings import Settings

    settings = Settings.load(
        {
            "host": host,
            "port": port,
            "data_dir": data_dir,
            "database_url": database_url,
            "log_level": log_level,
            "log_format": log_format,
            "metrics_token": _read_secret(metrics_token_file),
            "metrics_allow_cidrs": ",".join(metrics_allow_cidrs) or None,
            "tls_cert": tls_cert,
            "tls_key": tls_key,
            "tls_self_signed": tls_self_signed,
            "tls_san": tls_san,
            "insecure_http": insecure_http,
            "delivery_max_attempts": delivery_max_attempts,
            "smtp_host": smtp_host,
            "smtp_port": smtp_port,
            "smtp_security": smtp_security,
            "smtp_user": smtp_user,
            "smtp_password": _read_secret(smtp_password_file),
            "smtp_from": smtp_from,
            "smtp_ca_file": str(smtp_ca_file) if smtp_ca_file else None,
            "nats_url": nats_url,
            "redis_url": redis_url,
            "allow_destination_cidrs": ",".join(allow_destination_cidrs) or None,
            "retention_output_s": retention_output,
            "forward_syslog": forward_syslog,
            "forward_syslog_ca_file": str(forward_syslog_ca_file)
            if forward_syslog_ca_file
            else None,
            "forward_otlp": forward_otlp,
            "output_store": output_store,
            "workers": workers,
        }
    )
    sync_url(settings.effective_database_url)  # refuse a bad URL before starting
    if not settings.tls_self_signed:
        tls_files(settings)  # and TLS flags that do not fit together
    serve(settings)


@server.command("reset-admin-token")
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="The server's data directory (admin.token is written there).",
)
@click.option(
    "--database-url", default=None, help="The server's database (default: SQLite in the data dir)."
)
@json_option
@click.pass_context
def reset_admin_token(ctx: click.Context, data_dir: Path | None, database_url: str | None) -> None:
    """Make a new token for the built-in administrator `admin` and write it to
    DATA_DIR/admin.token (0600): the way back in when no administrator can sign in.
    Run it on the server's machine, as the server's user."""
    from fleetrun.server.admins import reset_admin_token as reset
    from fleetrun.server.db import sync_url
    from fleetrun.server.main import private_files, secure_data_dir
    from fleetrun.server.settings import Settings

    settings = Settings.load({"data_dir": data_dir, "database_url": database_url})
    sync_url(settings.effective_database_url)
    if settings.database_url is None and not settings.sqlite_path.exists():
        raise click.UsageError(
            f"No database in {settings.data_dir}: give the server's --data-dir (and "
            "--database-url if it uses PostgreSQL)."
        )
    private_files()
    secure_data_dir(settings)
    token = reset(settings)
    if options(ctx).json:
        render.emit_json(
            {"principal": "admin", "token": token, "file": str(settings.admin_token_path)}
        )
    else:
        render.out.print(token, markup=False, highlight=False)
        render.err.print(
            f"New token for admin written to {settings.admin_token_path} (0600); "
            "the old tokens still work unless revoked.",
            markup=False,
            highlight=False,
        )


@server.command(
    "install-service",
    context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False},
)
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path),
    default=Path("/var/lib/fleetrun"),
    show_default=True,
    help="The server's data directory (under /var/lib: the unit's StateDirectory).",
)
@click.option("--user", default="fleetrun", show_default=True, help="The user it runs as.")
@click.option(
    "--unit-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("/etc/systemd/system"),
    show_default=True,
)
@click.option(
    "--environment-file",
    type=click.Path(path_type=Path, dir_okay=False),
    default=Path("/etc/fleetrun/server.env"),
    show_default=True,
    help="FLEETRUN_* settings (and secrets) the unit reads, if the file exists.",
)
@click.option("--print", "--dry-run", "print_only", is_flag=True, help="Only print the unit.")
@click.argument("server_args", nargs=-1, type=click.UNPROCESSED)
@json_option
@click.pass_context
def install_service(
    ctx: click.Context,
    data_dir: Path,
    user: str,
    unit_dir: Path,
    environment_file: Path,
    print_only: bool,
    server_args: tuple[str, ...],
) -> None:
    """Write a hardened systemd unit that runs this server as a service.

    SERVER_ARGS after `--` are `fleetrun server` options for the unit's command line,
    e.g. `-- --host 0.0.0.0 --tls-self-signed`; other settings go in the environment file.
    """
    import pwd

    from fleetrun.server import service

    _check_server_args(list(server_args))
    try:
        text = service.unit(
            data_dir=data_dir,
            user=user,
            server_args=list(server_args),
            environment_file=environment_file,
        )
        path = None if print_only else service.install(text, unit_dir)
    except service.ServiceError as exc:
        raise click.ClickException(str(exc)) from None
    try:
        user_exists = bool(pwd.getpwnam(user))
    except KeyError:
        user_exists = False
    steps = [] if user_exists else [_useradd(user, data_dir)]
    steps.append(f"systemctl daemon-reload && systemctl enable --now {service.UNIT_NAME}")
    if options(ctx).json:
        render.emit_json(
            {
                "unit": str(path) if path else None,
                "text": text,
                "user": user,
                "user_exists": user_exists,
                "next": steps,
            }
        )
    elif path is None:
        render.out.print(text, end="", markup=False, highlight=False)
    else:
        lines = [f"Wrote {path}. Then:", *(f"  {step}" for step in steps)]
        render.out.print("\n".join(lines), markup=False, highlight=False)


def _check_server_args(args: list[str]) -> None:
    """The unit's `fleetrun server` options must parse, so that a typo fails now and
    not when systemd starts the service."""
    if "--data-dir" in args or any(a.startswith("--data-dir=") for a in args):
        raise click.UsageError("Give the data directory as install-service's own --data-dir.")
    try:
        parsed = server.make_context("fleetrun server", list(args), resilient_parsing=False)
    except click.ClickException as exc:
        raise click.UsageError(
            f"The server options after -- are not valid: {exc.format_message()}"
        ) from None
    extra = [*parsed.protected_args, *parsed.args]
    if extra:
        raise click.UsageError(
            f"The server options after -- are not valid: unexpected {' '.join(extra)!r}."
        )


def _useradd(user: str, data_dir: Path) -> str:
    return f"useradd --system --home-dir {data_dir} --shell /usr/sbin/nologin {user}"


def _read_secret(path: Path | None) -> str | None:
    if path is None:
        return None
    try:
        return path.read_text().strip()
    except OSError as exc:
        raise click.BadParameter(f"cannot read {path}: {exc.strerror}") from None


@click.command("login")
@click.option("--server", "server_url", required=True, help="Server URL, e.g. http://host:8470.")
@click.option("--token", required=True, help="Your API token.")
@click.option(
    "--ca-file",
    type=click.Path(dir_okay=False),
    default=None,
    help="Trust this CA (PEM) for an https server with a private CA.",
)
@profile_option
@json_option
@insecure_option
@click.pass_context
def login(ctx: click.Context, server_url: str, token: str, ca_file: str | None) -> None:
    """Check the server and token, then save them for later commands.

    They are saved as the default profile, or as the profile --profile names; the
    file's other profiles stay."""
    name = config.chosen_profile(options(ctx).profile)
    kept = config.read_file(profile=name, missing_ok=True)  # a new profile has none
    profile = config.resolve(
        server_url, token, ca_file, options(ctx).insecure, profile=name, saved=kept
    )
    # Proves both URL and token; a valid token that may not ask who it is still
    # authenticated (it got 403, not 401).
    verify = profile.ca_file or True
    with (
        Client(
            profile.server,
            profile.token,
            verify=verify,
            insecure=profile.insecure,
            http=options(ctx).http,
        ) as client,
        contextlib.suppress(AccessDeniedError),
    ):
        client.whoami()
    path = config.write_file(profile, name=name)
    shown_name = name or config.DEFAULT_PROFILE
    if options(ctx).json:
        render.emit_json({"server": profile.server, "config": str(path), "profile": shown_name})
    else:
        where = f" as profile {name}" if name else ""
        render.out.print(f"Logged in to {profile.server}; saved{where} to {path}.")


@click.command("logout")
@profile_option
@json_option
@click.pass_context
def logout(ctx: click.Context) -> None:
    """Forget the saved server and token (of the default profile, or of --profile)."""
    name = config.chosen_profile(options(ctx).profile)
    shown_name = name or config.DEFAULT_PROFILE
    path = config.config_path()
    removed = config.remove_profile(name, path)
    if options(ctx).json:
        render.emit_json({"profile": shown_name, "config": str(path), "removed": removed})
    elif removed:
        render.out.print(f"Logged out: profile {shown_name} removed from {path}.")
    else:
        render.err.print(f"Not logged in: {path} has no profile {shown_name}.", markup=False)
