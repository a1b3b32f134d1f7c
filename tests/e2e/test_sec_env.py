"""No caller sets an environment variable that changes how programs load or run: the
server refuses such names for secret, document and run-command parameters before
anything is stored, and the node refuses them again, so that an older or a
compromised server cannot get past it. On a node that runs only signed documents, only
the variables the signed document declares reach its script."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fleetrun.core import signing
from fleetrun.core.errors import NotFoundError, ValidationError
from tests.harness import wait_for

# A signed Python document, harmless as written. With PYTHONWARNINGS naming a module to
# import and BROWSER naming a command, Python would import `antigravity`, which opens
# the "browser": a command of the caller's choosing.
PY_DOC = json.dumps(
    {
        "parameters": {"who": {"type": "String", "default": "world"}},
        "mainSteps": [
            {"name": "hello", "action": "runPythonScript", "inputs": {"runCommand": "print('hi')"}}
        ],
    }
)


def agent_cli(agent, *args):
    done = subprocess.run(
        [sys.executable, "-m", "fleetrun.agent", *args, "--state-dir", str(agent.state_dir)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr


@pytest.fixture(scope="module")
def signed(shared_fleet):
    """The Python document signed by a key, and a node that trusts only that key."""
    client = shared_fleet.client
    key = Ed25519PrivateKey.generate()
    doc = client.create_document("py-hello", PY_DOC)
    client.sign_document(
        "py-hello",
        doc.version,
        publisher="ops",
        public_key=signing.public_key_b64(key),
        signature=signing.sign(key, doc.content),
    )
    strict = shared_fleet.add_agent(prefix="strict")
    agent_cli(strict, "config", "set", "security.trusted_publishers", signing.public_key_b64(key))
    agent_cli(strict, "config", "set", "security.require_signed_documents", "true")
    return strict


def _attack(marker):
    return {"PYTHONWARNINGS": "ignore::antigravity.x", "BROWSER": f"touch {marker} #%s"}


@pytest.mark.parametrize("name", ["LD_PRELOAD", "BASH_ENV", "PYTHONWARNINGS", "BROWSER", "PATH"])
def test_secret_parameters_that_change_how_programs_run_are_refused(
    shared_fleet, signed, name, tmp_path
):
    client = shared_fleet.client
    before = len(client.list_commands())
    with pytest.raises(ValidationError) as caught:
        client.send_command(
            document="py-hello",
            node_ids=[signed.node_id, shared_fleet.agents[0].node_id],
            secret_parameters={name: "x", **_attack(tmp_path / "pwned")},
        )
    assert "changes how programs load or run on the node; choose another name" in (
        caught.value.message
    )
    assert len(client.list_commands()) == before  # nothing stored, nothing sent


def test_run_command_parameters_that_change_how_programs_run_are_refused(shared_fleet):
    client = shared_fleet.client
    node = shared_fleet.agents[0].node_id
    for kwargs in (
        {"parameters": {"PATH": "/tmp/evil"}},
        {"protected_parameters": {"LD_PRELOAD": "/tmp/evil.so"}},
        {"parameters": {"FLEETRUN_NODE_ID": "n-0"}},
    ):
        with pytest.raises(ValidationError, match=r"cannot be set: .*; choose another name"):
            client.put_run_command(node, "env-attack", script="echo hi", **kwargs)
        with pytest.raises(NotFoundError):
            client.get_run_command(node, "env-attack")


def test_a_document_parameter_named_like_a_loader_variable_is_refused(shared_fleet):
    content = json.dumps(
        {
            "parameters": {"PYTHONWARNINGS": {"type": "String"}},
            "mainSteps": [
                {"name": "s", "action": "runShellScript", "inputs": {"runCommand": "true"}}
            ],
        }
    )
    with pytest.raises(ValidationError, match=r"parameters\.PYTHONWARNINGS cannot be a parameter"):
        shared_fleet.client.create_document("env-doc", content)


def test_a_signed_only_node_passes_only_variables_the_signed_document_declares(
    shared_fleet, signed
):
    client = shared_fleet.client
    command = client.send_command(
        document="py-hello", node_ids=[signed.node_id], secret_parameters={"TOKEN": "s3cret"}
    )
    client.wait(command.id, timeout_s=60)
    invocation = client.get_invocation(command.id, signed.node_id)
    assert invocation.status_detail == "BlockedByLocalPolicy"
    assert "TOKEN is not a parameter of the signed document" in invocation.message
    assert invocation.stdout == ""


def test_the_node_refuses_what_an_older_server_would_send(shared_fleet, signed, tmp_path):
    """The server's checks are bypassed by editing what it stored (as an older or a
    compromised server would send it): the node still refuses, and nothing runs."""
    client = shared_fleet.client
    marker = tmp_path / "pwned"
    startup = tmp_path / "startup.sh"
    startup.write_text(f"touch {marker}\n")
    plain = shared_fleet.add_agent(prefix="victim")
    for agent in (plain, signed):
        agent.stop()
        wait_for(lambda a=agent: shared_fleet.ping_status(a) != "Online", what="agent offline")
    sent = [
        client.send_command(script="#!/bin/bash\necho hi", node_ids=[plain.node_id]),
        client.send_command(
            document="py-hello", node_ids=[signed.node_id], secret_parameters={"TOKEN": "x"}
        ),
    ]
    for command, agent in zip(sent, (plain, signed), strict=True):
        wait_for(
            lambda c=command, a=agent: client.get_invocation(c.id, a.node_id).status == "Delayed",
            what="the invocation waiting for its node",
        )
    _edit_steps(shared_fleet, sent[0].id, {"BASH_ENV": str(startup)})
    _rename_secret(shared_fleet, sent[1].id, "TOKEN", "PYTHONWARNINGS")
    plain.start()
    signed.start()
    for command, agent, name in zip(
        sent, (plain, signed), ("BASH_ENV", "PYTHONWARNINGS"), strict=True
    ):
        client.wait(command.id, timeout_s=60)
        invocation = client.get_invocation(command.id, agent.node_id)
        assert invocation.status_detail == "BlockedByLocalPolicy", invocation.message
        assert "does not set the" in invocation.message and name in invocation.message
        assert invocation.stdout == ""
    assert not marker.exists()


def _sql(fleet, query, params=()):
    if fleet.server.db.kind == "sqlite":
        import sqlite3

        with sqlite3.connect(fleet.server.data_dir / "fleetrun.db") as conn:
            return conn.execute(
                query.replace("%s::json", "?").replace("%s", "?"), params
            ).fetchall()
    import psycopg

    url = fleet.server.db.url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(url) as conn:
        cursor = conn.execute(query, params)
        return cursor.fetchall() if cursor.description else []


def _edit_steps(fleet, command_id, env):
    [(text,)] = _sql(fleet, "SELECT CAST(steps AS TEXT) FROM commands WHERE id = %s", (command_id,))
    steps = json.loads(text)
    for step in steps:
        step["env"] = {**step.get("env", {}), **env}
    _sql(
        fleet, "UPDATE commands SET steps = %s::json WHERE id = %s", (json.dumps(steps), command_id)
    )


def _rename_secret(fleet, command_id, old, new):
    rows = _sql(
        fleet,
        "SELECT id, CAST(secrets AS TEXT) FROM invocations WHERE command_id = %s",
        (command_id,),
    )
    for invocation_id, text in rows:
        secrets = json.loads(text)
        secrets["env"][new] = secrets["env"].pop(old)
        _sql(
            fleet,
            "UPDATE invocations SET secrets = %s::json WHERE id = %s",
            (json.dumps(secrets), invocation_id),
        )
