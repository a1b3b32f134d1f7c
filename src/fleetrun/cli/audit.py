"""`fleetrun audit list|export|verify`."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click
from rich.text import Text

from fleetrun.cli import render
from fleetrun.cli.base import api_options, options, read_text
from fleetrun.cli.exits import Exit
from fleetrun.core import audit as chain
from fleetrun.core.durations import is_duration, parse_duration
from fleetrun.core.errors import ValidationError
from fleetrun.core.inputs import utc


def parse_since(text: str | None) -> datetime | None:
    """`1h` (that long ago) or an ISO 8601 time (UTC unless it says otherwise)."""
    if not text:
        return None
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        if not is_duration(text):
            raise ValidationError(
                f"--since {text!r} is neither a duration (e.g. 1h, 7d) nor a time "
                "(e.g. 2026-01-31T08:00:00Z)."
            ) from None
        return datetime.now(UTC) - timedelta(seconds=parse_duration(text, "--since"))
    return utc(at, "--since")


@click.group("audit")
@api_options
def audit() -> None:
    """The audit log: every API request and agent session, hash-chained."""


@audit.command("list")
@click.option("--since", default=None, help="A duration (1h, 7d) or a time (ISO 8601).")
@click.option("--principal", default=None, help="Only this principal's records.")
@click.option(
    "--action", "action_", default=None, help="Only this action, e.g. fleetrun:SendCommand."
)
@click.option("--limit", type=click.IntRange(1, 100000), default=100, show_default=True)
@api_options
@click.pass_context
def list_records(
    ctx: click.Context, since: str | None, principal: str | None, action_: str | None, limit: int
) -> None:
    """List audit records, newest first."""
    opts = options(ctx)
    found = opts.client().list_audit_records(
        since=parse_since(since), principal=principal, action=action_, limit=limit
    )
    if opts.json:
        return render.emit_json(found)
    render.table(
        ["SEQ", "TIME", "PRINCIPAL", "ACTION", "RESOURCE", "DECISION", "STATUS", "FROM"],
        (
            [
                r.seq,
                render.when(r.at),
                r.principal or "-",
                r.action or f"{r.method or ''} {r.path or ''}".strip() or "-",
                r.resource or "-",
                _decision(r.decision),
                r.status if r.status is not None else "-",
                r.source_ip or "-",
            ]
            for r in found
        ),
        empty="No audit records match.",
    )


def _decision(value: str | None) -> Text | str:
    """allow or deny, as the policy said it (green or red), not a command's status."""
    if not value:
        return "-"
    return Text(value, style="green" if value == "allow" else "red")


@audit.command("export")
@click.option("--since", default=None, help="A duration (1h, 7d) or a time (ISO 8601).")
@api_options
@click.pass_context
def export_records(ctx: click.Context, since: str | None) -> None:
    """Write every record, oldest first, as JSON lines (with the chain's hashes)."""
    for record in options(ctx).client().export_audit_records(since=parse_since(since)):
        sys.stdout.write(json.dumps(record, ensure_ascii=False) + "\n")
    sys.stdout.flush()


@audit.command("verify")
@click.option(
    "--file",
    "file_",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Check an export (JSON lines) instead of the server's log.",
)
@click.option(
    "--public-key",
    default=None,
    help="The server's audit key (base64, from `GET /v1/audit/key`) to check --file "
    "offline (default: fetched from the server).",
)
@api_options
@click.pass_context
def verify(ctx: click.Context, file_: Path | None, public_key: str | None) -> None:
    """Recompute the hash chain; name the first record missing or altered (exit 1).

    With --file, the export may be a window (`audit export --since 2h`); its last line,
    the head it was cut at, signed by the server, shows records cut off either end."""
    opts = options(ctx)
    if file_ is not None:
        lines = _lines(file_)
        verdict = chain.verify_export(lines, public_key or opts.client().get_audit_key())
        data = {
            "ok": verdict.ok,
            "records": verdict.records,
            "first_bad_seq": verdict.first_bad_seq,
            "problem": verdict.problem,
            "message": verdict.message,
        }
    else:
        data = opts.client().verify_audit_log().model_dump()
    if opts.json:
        render.emit_json(data)
    elif data["ok"]:
        render.out.print(data["message"], style="green", markup=False)
    else:
        render.err.print(data["message"], style="red", markup=False)
    ctx.exit(Exit.OK if data["ok"] else Exit.FAILED)


def _lines(path: Path) -> list[dict[str, object]]:
    """The JSON objects of an export, one a line, or one sentence naming the first line
    that is not one."""
    records = []
    for number, line in enumerate(read_text(path, "audit export").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValidationError(
                f"Line {number} of {path} is not JSON ({exc.msg}): give an export of "
                "`fleetrun audit export`."
            ) from None
        if not isinstance(value, dict):
            raise ValidationError(
                f"Line {number} of {path} is not an audit record (a JSON object): give an "
                "export of `fleetrun audit export`."
            )
        records.append(value)
    return records
