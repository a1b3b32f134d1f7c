"""`fleetrun events tail` outlives a server restart: it says the server went away,
reconnects by itself and resumes after the last event it printed, so that it misses
none and repeats none; every line carries the sequence number --after takes; and the
server stopping under an open tail logs no traceback."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading

from fleetrun.core.errors import AccessDeniedError
from fleetrun.sdk import Client
from tests.harness import wait_for

DENIED = "API Call Denied"


class Tail:
    """`fleetrun events tail --json` as a process, its lines read as they come."""

    def __init__(self, server, tmp_path, *args: str) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("FLEETRUN_")}
        env.update(FLEETRUN_SERVER=server.url, FLEETRUN_TOKEN=server.token)
        env["FLEETRUN_CONFIG"] = str(tmp_path / "none.toml")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "fleetrun", "events", "tail", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.lines: list[str] = []
        self.errors: list[str] = []
        self.readers = [
            threading.Thread(target=self._read, args=(stream, into), daemon=True)
            for stream, into in ((self.proc.stdout, self.lines), (self.proc.stderr, self.errors))
        ]
        for reader in self.readers:
            reader.start()

    @staticmethod
    def _read(stream, into: list[str]) -> None:
        for line in stream:
            into.append(line)

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
        for reader in self.readers:
            reader.join(10)  # to the end of what it wrote, then its pipes are closed
        self.proc.stdout.close()
        self.proc.stderr.close()


def _noise(server, tmp_path) -> None:
    """Make one event: an API call denied to a principal that may do nothing."""
    token = (tmp_path / "noise.token").read_text()
    with Client(server.url, token) as noise, contextlib.suppress(AccessDeniedError):
        noise.list_nodes()


def _denied_after(client, seq: int) -> list[int]:
    return sorted(e.seq for e in client.list_events(detail_type=DENIED, limit=1000) if e.seq > seq)


def test_events_tail_reconnects_after_a_server_restart_and_misses_and_repeats_nothing(
    fleet, tmp_path
):
    server, client = fleet.server, fleet.client
    client.create_principal("noise")
    (tmp_path / "noise.token").write_text(client.create_token("noise").token)
    _noise(server, tmp_path)
    start = client.list_events(limit=1)[0].seq
    tail = Tail(server, tmp_path, "--json", "--after", str(start))
    try:
        wait_for(
            lambda: _noise(server, tmp_path) or tail.lines,
            interval_s=0.3,
            what="a first line from events tail",
        )
        server.restart()  # SIGTERM with the tail attached, then the same data again
        # it says so as soon as the server takes it back, before any new event
        wait_for(lambda: "Reconnected." in "".join(tail.errors), what="Reconnected.")
        printed_before = len(tail.lines)
        wait_for(
            lambda: _noise(server, tmp_path) or len(tail.lines) > printed_before,
            timeout_s=60,
            interval_s=0.3,
            what="a line from events tail after the restart",
        )
        with server.client() as client:
            expected = _denied_after(client, start)
        wait_for(lambda: len(tail.lines) >= len(expected), what="every event printed")
    finally:
        tail.close()
    events = [json.loads(line) for line in tail.lines]
    seqs = [e["seq"] for e in events if e["detail-type"] == DENIED]
    assert seqs == expected  # in order, none missed across the restart, none twice
    errors = "".join(tail.errors)
    assert "Reconnecting, to resume after #" in errors and "Reconnected." in errors
    assert "Traceback" not in errors
    assert "Traceback" not in server.log_path.read_text(errors="replace")


def test_each_line_of_events_tail_starts_with_its_sequence_number_which_after_takes(
    fleet, tmp_path
):
    server, client = fleet.server, fleet.client
    client.create_principal("noise")
    (tmp_path / "noise.token").write_text(client.create_token("noise").token)
    for _ in range(3):
        _noise(server, tmp_path)
    first, second, third = _denied_after(client, 0)[:3]
    tail = Tail(server, tmp_path, "--after", str(first))
    try:
        wait_for(lambda: len(tail.lines) >= 2, what="two lines from events tail")
    finally:
        tail.close()
    assert tail.lines[0].startswith(f"#{second}  ") and DENIED in tail.lines[0]
    assert tail.lines[1].startswith(f"#{third}  ")


def test_events_tail_prints_each_event_in_the_output_format_asked_with_the_query_applied(
    fleet, tmp_path
):
    """-o yaml: a YAML document an event; -o text --query: the selected fields, a line an
    event, as soon as each comes (a process: the point is that a pipe gets each at once)."""
    import yaml

    server, client = fleet.server, fleet.client
    client.create_principal("noise")
    (tmp_path / "noise.token").write_text(client.create_token("noise").token)
    for _ in range(2):
        _noise(server, tmp_path)
    first, second = _denied_after(client, 0)[:2]
    as_yaml = Tail(server, tmp_path, "-o", "yaml", "--after", str(first - 1))
    as_text = Tail(
        server, tmp_path, "-o", "text", "--query", '[seq, "detail-type"]', "--after", str(first - 1)
    )
    try:
        wait_for(lambda: "".join(as_yaml.lines).count("---") >= 2, what="two YAML documents")
        wait_for(lambda: len(as_text.lines) >= 2, what="two text lines")
    finally:
        as_yaml.close()
        as_text.close()
    documents = [d for d in yaml.safe_load_all("".join(as_yaml.lines)) if d]
    assert [d["seq"] for d in documents[:2]] == [first, second]
    assert documents[0]["detail-type"] == DENIED
    assert as_text.lines[:2] == [f"{first}\t{DENIED}\n", f"{second}\t{DENIED}\n"]
