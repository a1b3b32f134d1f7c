"""What every CLI command shares: --server, --token, --profile, the output options
(--output/-o, --json, --query), and the SDK client."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import click

from fleetrun.core.errors import ValidationError

if TYPE_CHECKING:
    from pathlib import Path

    import httpx

    from fleetrun.sdk import Client

F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class Options:
    server: str | None = None
    token: str | None = None
    ca_file: str | None = None
    insecure: bool = False
    profile: str | None = None  # a login file profile (--profile, FLEETRUN_PROFILE)
    output: str | None = None  # json, yaml, table or text; None: the environment's or table
    query: str | None = None  # a JMESPath expression over the JSON data (--query)
    utc: bool = False  # show times in UTC, not the local zone
    # the SDK's transport seam (`main(argv, http=...)`): every request goes through it
    http: httpx.Client | None = field(default=None, repr=False)
    _client: Client | None = field(default=None, repr=False)

    def client(self) -> Client:
        if self._client is None:
            # imported when a command needs them: --help and --version stay fast
            from fleetrun.sdk import Client, config

            profile = config.resolve(
                self.server, self.token, self.ca_file, self.insecure, profile=self.profile
            )
            verify: str | bool = profile.ca_file or True
            self._client = Client(
                profile.server,
                profile.token,
                verify=verify,
                insecure=profile.insecure,
                http=self.http,
            )
        return self._client

    @property
    def output_format(self) -> str:
        """--output (or --json), else FLEETRUN_OUTPUT, else the profile's, else table."""
        if self.output is None:
            import os

            chosen = os.environ.get("FLEETRUN_OUTPUT")
            if not chosen:
                from fleetrun.sdk import config

                chosen = config.saved_output(self.profile)
            chosen = (chosen or "table").lower()
            if chosen not in OUTPUTS:
                raise ValidationError(
                    f"The output format {chosen!r} (from FLEETRUN_OUTPUT or the login "
                    f"file) is not one of {', '.join(OUTPUTS)}: set one of those."
                )
            self.output = chosen
        return self.output

    @property
    def json(self) -> bool:
        """Whether the command prints its data (json, yaml, text, or a --query's
        result) rather than its own human view: `render.emit_json` then formats it."""
        return self.query is not None or self.output_format != "table"


OUTPUTS = ("json", "yaml", "table", "text")


def options(ctx: click.Context) -> Options:
    return ctx.ensure_object(Options)


def _store(name: str) -> Callable[[click.Context, click.Parameter, Any], Any]:
    def callback(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        if value not in (None, False):
            setattr(options(ctx), name, value)
        return value

    return callback


def _json(ctx: click.Context, param: click.Parameter, value: bool) -> bool:
    if value:
        options(ctx).output = "json"
    return value


def _query(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """A JMESPath expression, checked now: a typo fails before anything is asked."""
    if value is not None:
        import jmespath
        from jmespath.exceptions import JMESPathError

        try:
            jmespath.compile(value)
        except JMESPathError as exc:
            reason = " ".join(str(exc).split())
            raise ValidationError(
                f"The --query {value!r} is not a JMESPath expression ({reason}): "
                "see https://jmespath.org for the syntax."
            ) from None
        options(ctx).query = value
    return value


def json_option(f: F) -> F:
    """--json, --output/-o and --query: how a command prints its result."""
    f = click.option(
        "--query",
        metavar="JMESPATH",
        expose_value=False,
        callback=_query,
        help="Print only what this JMESPath expression selects from the JSON data.",
    )(f)
    f = click.option(
        "--output",
        "-o",
        type=click.Choice(OUTPUTS, case_sensitive=False),
        expose_value=False,
        callback=_store("output"),
        help="json, yaml, table (the default) or text (tab-separated); default: "
        "FLEETRUN_OUTPUT, then the profile's.",
    )(f)
    return click.option(
        "--json",
        "json_",
        is_flag=True,
        expose_value=False,
        callback=_json,
        help="Print machine-readable JSON (--output json).",
    )(f)


def _profiles(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
    """The login file's profiles, for shell completion (nothing when it cannot be read)."""
    from fleetrun.sdk import config

    try:
        return [name for name in config.profile_names() if name.startswith(incomplete)]
    except ValidationError:
        return []


def profile_option(f: F) -> F:
    return click.option(
        "--profile",
        metavar="NAME",
        expose_value=False,
        callback=_store("profile"),
        shell_complete=_profiles,
        help="Use this profile of the login file (default: FLEETRUN_PROFILE, then the "
        "default profile).",
    )(f)


def insecure_option(f: F) -> F:
    return click.option(
        "--insecure",
        is_flag=True,
        expose_value=False,
        callback=_store("insecure"),
        help="Allow plain http:// to a server that is not this machine (or set "
        "FLEETRUN_INSECURE=1); the token crosses the network in clear.",
    )(f)


def utc_option(f: F) -> F:
    return click.option(
        "--utc",
        is_flag=True,
        expose_value=False,
        callback=_store("utc"),
        help="Show times in UTC (default: the local time zone, named).",
    )(f)


def api_options(f: F) -> F:
    """--server, --token, --ca-file, --insecure, --profile, --json, --output, --query and
    --utc, accepted on the group and on every command."""
    f = utc_option(insecure_option(json_option(profile_option(f))))
    for name, help_text in (
        ("--token", "API token (default: FLEETRUN_TOKEN, then the login file)."),
        (
            "--ca-file",
            "Trust this CA (PEM) for the server's certificate (default: FLEETRUN_CA_FILE).",
        ),
        ("--server", "Server URL (default: FLEETRUN_SERVER, then the login file)."),
    ):
        attribute = name[2:].replace("-", "_")
        f = click.option(name, expose_value=False, callback=_store(attribute), help=help_text)(f)
    return f


# -- files the operator names ------------------------------------------------------------


def read_text(path: Path, what: str = "file") -> str:
    """The UTF-8 text of a file the operator named, or one sentence why not."""
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValidationError(describe_os_error(exc, f"the {what} {path}")) from None
    except UnicodeDecodeError as exc:
        raise ValidationError(describe_decode_error(exc, f"The {what} {path}")) from None


def describe_os_error(exc: OSError, subject: str | None = None) -> str:
    """One sentence for a file or directory that could not be read or written."""
    subject = subject or (f"{exc.filename}" if exc.filename else "a file")
    reason = (exc.strerror or str(exc) or type(exc).__name__).rstrip(".")
    reason = reason[:1].lower() + reason[1:]
    return f"Cannot use {subject}: {reason}; check the path and its permissions."


def describe_decode_error(exc: UnicodeDecodeError, subject: str = "A file given") -> str:
    """One sentence for bytes that are not UTF-8 text."""
    byte = exc.object[exc.start] if exc.start < len(exc.object) else 0
    return (
        f"{subject} is not UTF-8 text (byte 0x{byte:02x} at position {exc.start}): "
        "give a text file."
    )


def yes_option(f: F) -> F:
    return click.option(
        "--yes", "-y", is_flag=True, help="Do not ask for confirmation on a terminal."
    )(f)


def confirm(ctx: click.Context, question: str, *, yes: bool) -> None:
    """Ask on a terminal before something that cannot be undone; a script (stdin not a
    terminal) or --yes is not asked. A no ends the command with exit 1, nothing done."""
    import sys

    if yes or not sys.stdin.isatty():
        return
    if not click.confirm(question, default=False, err=True):
        click.echo("Nothing was deleted.", err=True)
        ctx.exit(1)
