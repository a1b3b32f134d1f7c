"""Signed documents: a node that requires them runs only what a trusted publisher
signed, as it was signed, even if the server is not trustworthy."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

DOC = """
description: Say hello
parameters: {who: {type: String, default: world}}
mainSteps:
  - {name: hello, action: runShellScript, inputs: {runCommand: 'echo "hello $who"'}}
"""


def cli(fleet, *args):
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "fleetrun",
            *args,
            "--server",
            fleet.server.url,
            "--token",
            fleet.server.token,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )


def agent_cli(agent, *args):
    return subprocess.run(
        [sys.executable, "-m", "fleetrun.agent", *args, "--state-dir", str(agent.state_dir)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def _run(fleet, agent, **kwargs):
    command = fleet.client.send_command(node_ids=[agent.node_id], **kwargs)
    fleet.client.wait(command.id, timeout_s=60)
    return fleet.client.get_invocation(command.id, agent.node_id)


@pytest.fixture
def strict(fleet, tmp_path):
    """A node that requires documents signed by the `ops` publisher."""
    agent = fleet.add_agent()
    made = subprocess.run(
        [
            sys.executable,
            "-m",
            "fleetrun",
            "keys",
            "create",
            "ops",
            "--dir",
            str(tmp_path),
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert made.returncode == 0, made.stderr
    public = json.loads(made.stdout)["public_key"]
    assert (tmp_path / "ops.key").stat().st_mode & 0o777 == 0o600
    assert agent_cli(agent, "config", "set", "security.trusted_publishers", public).returncode == 0
    assert (
        agent_cli(agent, "config", "set", "security.require_signed_documents", "true").returncode
        == 0
    )
    doc = tmp_path / "hello.yaml"
    doc.write_text(DOC)
    assert cli(fleet, "documents", "create", "hello", "--file", str(doc)).returncode == 0
    return fleet, agent, tmp_path / "ops.key"


def test_only_signed_documents_run(strict):
    fleet, agent, key = strict
    unsigned = _run(fleet, agent, document="hello")
    assert unsigned.status_detail == "BlockedByLocalPolicy" and "is not signed" in unsigned.message
    signed = cli(fleet, "documents", "sign", "hello", "--key", str(key))
    assert signed.returncode == 0, signed.stderr
    assert fleet.client.get_document("hello").signatures[0].publisher == "ops"
    ran = _run(fleet, agent, document="hello", parameters={"who": "signed world"})
    assert (ran.status, ran.stdout) == ("Success", "hello signed world\n")
    inline = _run(fleet, agent, script="echo inline")
    assert (
        inline.status_detail == "BlockedByLocalPolicy"
        and "inline scripts are refused" in inline.message
    )


def test_a_new_unsigned_version_and_a_foreign_signature_are_refused(strict, tmp_path):
    fleet, agent, key = strict
    assert cli(fleet, "documents", "sign", "hello", "--key", str(key)).returncode == 0
    v2 = tmp_path / "v2.yaml"
    v2.write_text(DOC.replace("hello $who", "changed $who"))
    assert cli(fleet, "documents", "update", "hello", "--file", str(v2)).returncode == 0
    assert "is not signed" in _run(fleet, agent, document="hello", document_version="2").message
    subprocess.run(
        [sys.executable, "-m", "fleetrun", "keys", "create", "mallory", "--dir", str(tmp_path)],
        capture_output=True,
        timeout=60,
        check=True,
    )
    assert (
        cli(
            fleet, "documents", "sign", "hello:2", "--key", str(tmp_path / "mallory.key")
        ).returncode
        == 0
    )
    foreign = _run(fleet, agent, document="hello", document_version="2")
    assert "no signature" in foreign.message and foreign.stdout == ""


def test_content_changed_after_signing_is_refused_even_if_the_server_lies(strict):
    """A compromised server edits the signed content in its own database."""
    fleet, agent, key = strict
    assert cli(fleet, "documents", "sign", "hello", "--key", str(key)).returncode == 0
    _tamper(fleet, "hello", "echo pwned")
    tampered = _run(fleet, agent, document="hello")
    assert (
        tampered.status_detail == "BlockedByLocalPolicy"
        and "changed after signing" in tampered.message
    )
    assert tampered.stdout == ""


def _tamper(fleet, name, script):
    """Replace the first step's script in the stored content, signatures left as they are."""

    def changed(text):
        content = json.loads(text)
        content["mainSteps"][0]["inputs"]["runCommand"] = script
        return json.dumps(content)

    if fleet.server.db.kind == "sqlite":
        import sqlite3

        with sqlite3.connect(fleet.server.data_dir / "fleetrun.db") as conn:
            [(text,)] = conn.execute(
                "SELECT content FROM document_versions WHERE name = ?", (name,)
            ).fetchall()
            conn.execute(
                "UPDATE document_versions SET content = ? WHERE name = ?", (changed(text), name)
            )
    else:
        import psycopg

        with psycopg.connect(
            fleet.server.db.url.replace("postgresql+psycopg://", "postgresql://")
        ) as conn:
            [(text,)] = conn.execute(
                "SELECT content::text FROM document_versions WHERE name = %s", (name,)
            ).fetchall()
            conn.execute(
                "UPDATE document_versions SET content = %s::json WHERE name = %s",
                (changed(text), name),
            )
    assert fleet.client.get_document(name).content["mainSteps"][0]["inputs"]["runCommand"] == script
