"""Hostile input through the `fleetrun` command line, through its real entry point in
process against the real app: one sentence and a non-zero exit, never a traceback,
nothing written where it should not be, nothing printed raw. (The same refusal from
`python -m fleetrun` as a process is in tests/e2e/test_sec_cli_input.py.)"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy

from tests.inprocess import App, CliResult, run_cli


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    app = App(tmp_path_factory.mktemp("sec-cli")).start()
    try:
        yield app
    finally:
        app.close()


def cli(app: App | None, *args: str) -> CliResult:
    """`fleetrun ARGS` with no login file: against `app` with the administrator's
    token, or (None) with no server at all."""
    if app is None:
        return run_cli(*args)
    return app.cli(*args, env={"FLEETRUN_CONFIG": os.devnull})


def assert_sentence(done: CliResult, *words: str) -> str:
    """A refusal: non-zero exit, no traceback, one line on stderr naming `words`."""
    assert done.returncode != 0, done.stdout
    assert "Traceback" not in done.stderr, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


# -- 7: numbers and durations out of range --------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ("commands", "list", "--since", "99999999999d"),
        ("invocations", "list", "--since", "99999999999d"),
        ("audit", "list", "--since", "99999999999d"),
        ("events", "list", "--since", "99999999999d"),
        ("audit", "export", "--since", "99999999999d"),
    ],
)
def test_a_since_too_long_is_one_sentence(server: App, args: tuple[str, ...]) -> None:
    assert_sentence(cli(server, *args), "too long")


# -- 8: a name never climbs out of its path segment --------------------------------------


def test_documents_delete_of_a_climbing_name_leaves_the_group_alone(server: App) -> None:
    server.client.create_group("victim", tags={"env": "victim"})
    assert_sentence(cli(server, "documents", "delete", "../groups/victim"))
    assert server.client.get_group("victim").name == "victim"


# -- 16: ids become file names, names reach a terminal ----------------------------------


def _tamper(app: App, node_id: str, new_id: str, new_name: str) -> None:
    """What a compromised or buggy server could answer: a node id and name that no
    API accepts, written straight into its database (with the app stopped)."""
    app.stop()
    engine = sqlalchemy.create_engine(app.db.url)
    ids = {"new_id": new_id, "new_name": new_name, "node_id": node_id}
    try:
        with engine.begin() as db:
            if engine.dialect.name == "postgresql":
                # node_tags' foreign key would refuse the new id mid-way: the rows
                # are rewritten together, with the constraint triggers off
                db.execute(sqlalchemy.text("SET LOCAL session_replication_role = replica"))
            db.execute(
                sqlalchemy.text(
                    "UPDATE nodes SET id = :new_id, name = :new_name WHERE id = :node_id"
                ),
                ids,
            )
            db.execute(
                sqlalchemy.text("UPDATE node_tags SET node_id = :new_id WHERE node_id = :node_id"),
                ids,
            )
            db.execute(
                sqlalchemy.text(
                    "UPDATE invocations SET node_id = :new_id, node_name = :new_name "
                    "WHERE node_id = :node_id"
                ),
                ids,
            )
    finally:
        engine.dispose()
    app.start()


def test_a_hostile_node_id_or_name_from_the_server_is_neither_a_path_nor_printed_raw(
    app: App, tmp_path: Path
) -> None:
    [node] = app.enrol(1)
    command = app.client.send_command(script="true", node_ids=[node.node_id])
    _tamper(app, node.node_id, "../evil", "evil\x1b[2J\nn-fake  Online")

    out = tmp_path / "out"
    done = cli(app, "invocations", "download", command.id, "--dir", str(out))
    assert_sentence(done, "not a node id")
    assert not (tmp_path / "evil.stdout").exists()
    assert not list(out.glob("*")) if out.exists() else True

    # (`nodes list` cuts long names to fit 100 columns; --wide shows them whole)
    for args in (("nodes", "list", "--wide"), ("invocations", "list", "--command", command.id)):
        shown = cli(app, *args)
        assert shown.returncode == 0, shown.stderr
        assert "\x1b" not in shown.stdout and "evil\\x1b[2J\\nn-fake" in shown.stdout
    narrow = cli(app, "nodes", "list")
    assert "\x1b" not in narrow.stdout and "evil\\x1b[2J" in narrow.stdout


# -- 14: files the operator names: a sentence, never a traceback -------------------------

BINARY = bytes(range(256)) * 4


def test_audit_verify_of_a_binary_file_is_one_sentence(tmp_path: Path) -> None:
    path = tmp_path / "export.bin"
    path.write_bytes(BINARY)
    assert_sentence(cli(None, "audit", "verify", "--file", str(path)), "not UTF-8")


@pytest.mark.parametrize(
    "text", ['[{"seq": 1}]\n', '"a string"\n', "42\n", '{"no": "seq"}\n', '{"seq": "1"}\n']
)
def test_audit_verify_of_json_that_is_not_records_is_one_sentence(
    tmp_path: Path, text: str
) -> None:
    path = tmp_path / "export.jsonl"
    path.write_text(text)
    done = cli(None, "audit", "verify", "--file", str(path))
    assert done.returncode != 0
    assert "Traceback" not in done.stderr, done.stderr


def test_keys_create_in_a_directory_that_cannot_be_made_is_one_sentence(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert_sentence(cli(None, "keys", "create", "ops", "--dir", str(blocker / "sub")), "Cannot")


def test_download_into_a_directory_that_cannot_be_made_is_one_sentence(
    server: App, tmp_path: Path
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    command = "00000000-0000-4000-8000-000000000000"
    done = cli(server, "invocations", "download", command, "--dir", str(blocker / "sub"))
    assert_sentence(done, "Cannot")


def test_a_binary_script_file_is_one_sentence(server: App, tmp_path: Path) -> None:
    script = tmp_path / "script.bin"
    script.write_bytes(BINARY)
    done = cli(
        server,
        "run-command",
        "create",
        "x",
        "--node",
        "n-00000000000000000",
        "--script-file",
        str(script),
    )
    assert_sentence(done, "script file", "not UTF-8")


def test_a_ca_file_that_is_not_pem_is_one_sentence(server: App, tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_bytes(BINARY)
    assert_sentence(cli(server, "--ca-file", str(ca), "nodes", "list"), "CA file", "PEM")


# -- 12: audit exports verify as windows, and cut ends show ------------------------------


def _export(app: App, tmp_path: Path, *args: str) -> tuple[Path, list[str]]:
    done = cli(app, "audit", "export", *args)
    assert done.returncode == 0, done.stderr
    path = tmp_path / "export.jsonl"
    path.write_text(done.stdout)
    return path, done.stdout.splitlines(keepends=True)


def _verify(app: App | None, path: Path, *args: str) -> CliResult:
    return cli(app, "audit", "verify", "--file", str(path), "--json", *args)


def test_a_windowed_export_verifies_against_the_servers_key(server: App, tmp_path: Path) -> None:
    for _ in range(3):
        server.client.list_nodes()
    path, lines = _export(server, tmp_path, "--since", "2m")
    first = json.loads(lines[0])
    assert first["seq"] > 1 or first["prev_hash"] == "0" * 64
    done = _verify(server, path)
    assert done.returncode == 0, done.stdout + done.stderr
    verdict = json.loads(done.stdout)
    assert verdict["ok"] and verdict["records"] == len(lines) - 1


def test_a_window_that_does_not_start_at_record_1_is_intact(server: App, tmp_path: Path) -> None:
    """Made deterministic: the window starts at a time after the first records."""
    for _ in range(3):
        server.client.list_nodes()
    records = list(server.client.export_audit_records())
    since = records[2]["at"]
    path, lines = _export(server, tmp_path, "--since", since)
    assert json.loads(lines[0])["seq"] > 1
    done = _verify(server, path)
    assert done.returncode == 0 and json.loads(done.stdout)["ok"], done.stdout + done.stderr


def test_an_export_with_records_cut_off_its_end_is_not_intact(server: App, tmp_path: Path) -> None:
    for _ in range(3):
        server.client.list_nodes()
    path, lines = _export(server, tmp_path)
    key = server.client.get_audit_key()
    path.write_text("".join([*lines[:-3], lines[-1]]))  # the last two records gone
    done = _verify(None, path, "--public-key", key)  # offline: no server needed
    verdict = json.loads(done.stdout)
    assert done.returncode == 1 and verdict["problem"] == "missing", verdict
    path.write_text("".join(lines[:-3]))  # and the head with them
    done = _verify(None, path, "--public-key", key)
    assert done.returncode == 1 and json.loads(done.stdout)["problem"] == "truncated"


def test_an_empty_file_is_never_intact(server: App, tmp_path: Path) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_text("")
    done = _verify(server, path)
    assert done.returncode == 1 and json.loads(done.stdout)["problem"] == "empty"
