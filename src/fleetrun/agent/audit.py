"""The agent's local audit log: one JSON line per execution, kept on the node.

    {"time": ..., "invocation_id": ..., "command_id": ..., "principal": ...,
     "document": ..., "document_version": ..., "content_hash": ..., "run_as": ...,
     "outcome": "Success", "exit_code": 0, "refused_by": null}

`content_hash` is the SHA-256 of what ran: the steps' scripts, in order (and, for a
script downloaded from a scriptUri, its address and the digest it had to match).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

from fleetrun.core import protocol


def content_hash(invoke: protocol.Invoke) -> str:
    digest = hashlib.sha256()
    for step in invoke.steps:
        digest.update(step.action.encode() + b"\0" + step.script.encode() + b"\0")
        if step.script_uri:  # the script comes from there: say which, and what it must be
            digest.update(step.script_uri.encode() + b"\0" + (step.script_sha256 or "").encode())
    return digest.hexdigest()


class AuditLog:
    def __init__(self, path: Path) -> None:
        self.path = path

    def record(
        self,
        invoke: protocol.Invoke,
        *,
        outcome: str,
        exit_code: int | None = None,
        refused_by: str | None = None,
    ) -> None:
        run_as = sorted({s.run_as or invoke.run_as or "" for s in invoke.steps} - {""})
        line = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "invocation_id": invoke.invocation_id,
            "command_id": invoke.command_id,
            "principal": invoke.principal,
            "document": invoke.document_name,
            "document_version": invoke.document_version,
            "content_hash": content_hash(invoke),
            "run_as": ",".join(run_as) or None,
            "outcome": outcome,
            "exit_code": exit_code,
            "refused_by": refused_by,
        }
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(fd, (json.dumps(line) + "\n").encode())
        finally:
            os.close(fd)

    def entries(self, limit: int | None = None) -> list[dict[str, Any]]:
        try:
            lines = self.path.read_text().splitlines()
        except FileNotFoundError:
            return []
        rows = [json.loads(line) for line in lines if line.strip()]
        return rows[-limit:] if limit else rows
