"""Secret parameters, end to end: sealed on the operator's machine to each node's key,
held by the server only as ciphertext and only while needed, opened on the node, and
masked in the output. A secret's bytes are found nowhere else."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx

SECRET = "tr0ub4dor&3-horse-battery"
ARG_SECRET = "second secret value 9f3e"


def _database_text(fleet) -> bytes:
    """Everything the database holds, as bytes."""
    db = fleet.server.db
    if db.kind == "sqlite":
        data = b""
        for suffix in ("", "-wal", "-shm"):
            path = Path(str(fleet.server.data_dir / "fleetrun.db") + suffix)
            if path.exists():
                data += path.read_bytes()
        return data
    import psycopg

    url = db.url.replace("postgresql+psycopg://", "postgresql://")
    chunks = []
    with psycopg.connect(url) as conn:
        tables = [
            r[0]
            for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        ]
        for table in tables:
            for row in conn.execute(f'SELECT * FROM "{table}"'):
                chunks.append(repr(row).encode())
    return b"\n".join(chunks)


def _files_under(root: Path) -> bytes:
    data = b""
    for path in root.rglob("*"):
        if path.is_file():
            data += path.read_bytes()
    return data


def test_a_secret_is_sealed_used_masked_and_found_nowhere(fleet):
    agent = fleet.add_agent()
    client = fleet.client
    # The script prints the secret (masked), and a hash that proves it arrived intact.
    script = (
        'echo "env=$db_password"; echo "err=$db_password" >&2; echo "arg=$1"; '
        'printf "%s" "$db_password" | sha256sum | cut -c1-16'
    )
    command = client.send_command(
        script=script,
        node_ids=[agent.node_id],
        secret_parameters={"db_password": SECRET},
        secret_arguments=[ARG_SECRET],
    )
    assert client.wait(command.id, timeout_s=60).status == "Success"
    inv = client.get_invocation(command.id, agent.node_id)
    import hashlib

    digest = hashlib.sha256(SECRET.encode()).hexdigest()[:16]
    assert inv.stdout == f"env=***\narg=***\n{digest}\n"
    assert inv.stderr == "err=***\n"

    responses = [
        httpx.get(
            f"{fleet.server.url}{path}", headers={"authorization": f"Bearer {fleet.server.token}"}
        ).content
        for path in (
            f"/v1/commands/{command.id}",
            "/v1/commands",
            f"/v1/commands/{command.id}/invocations?details=true",
            f"/v1/commands/{command.id}/invocations/{agent.node_id}",
            f"/v1/commands/{command.id}/invocations/{agent.node_id}/output",
            f"/v1/commands/{command.id}/invocations/{agent.node_id}/output?stream=stderr",
            "/v1/invocations?details=true",
        )
    ]
    shown = subprocess.run(
        [
            sys.executable,
            "-m",
            "fleetrun",
            "invocations",
            "show",
            command.id,
            agent.node_id,
            "--full",
            "--json",
            "--server",
            fleet.server.url,
            "--token",
            fleet.server.token,
        ],
        capture_output=True,
        timeout=60,
    ).stdout
    fleet.server.stop()  # flush everything the server holds to disk
    agent.stop()
    places = {
        "database": _database_text(fleet),
        "server data dir": _files_under(fleet.server.data_dir),
        "server log": fleet.server.log_path.read_bytes(),
        "agent log": agent.log_path.read_bytes(),
        "agent state dir": _files_under(agent.state_dir),
        "API responses": b"".join(responses),
        "CLI output": shown,
    }
    for secret in (SECRET, ARG_SECRET):
        for where, data in places.items():
            assert secret.encode() not in data, f"the secret was found in the {where}"
    assert b"***" in places["API responses"]


def test_sealed_values_are_dropped_when_the_invocation_ends(fleet):
    agent = fleet.add_agent()
    client = fleet.client
    command = client.send_command(
        script="sleep 2", node_ids=[agent.node_id], secret_parameters={"token": SECRET}
    )
    fleet.client.wait(command.id, timeout_s=60)
    fleet.server.stop()
    assert b"fs1." not in _database_text(fleet)


def test_a_secret_sealed_for_another_node_cannot_be_opened(shared_fleet):
    client = shared_fleet.client
    one, two = shared_fleet.agents[0].node_id, shared_fleet.agents[1].node_id
    from fleetrun.core.targets import Target

    for_two = client.seal_for([Target(key="NodeIds", values=[two])], {"x": SECRET}, [])[two]
    response = httpx.post(
        f"{shared_fleet.server.url}/v1/commands",
        headers={"authorization": f"Bearer {shared_fleet.server.token}"},
        json={
            "parameters": {"commands": ["echo $x"]},
            "targets": [{"key": "NodeIds", "values": [one]}],
            "secret_parameters": {one: for_two.model_dump()},
        },
    )
    assert response.status_code == 201
    command_id = response.json()["id"]
    assert client.wait(command_id, timeout_s=60).status == "Failed"
    inv = client.get_invocation(command_id, one)
    assert "could not be opened" in inv.message and inv.stdout == ""


def test_the_cli_takes_secret_params(shared_fleet):
    env = {
        **os.environ,
        "FLEETRUN_SERVER": shared_fleet.server.url,
        "FLEETRUN_TOKEN": shared_fleet.server.token,
    }
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "fleetrun",
            "send",
            "--node",
            shared_fleet.agents[0].node_id,
            "--script",
            'echo "pw=$pw"',
            "--secret-param",
            f"pw={SECRET}",
            "--wait",
            "--json",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["invocations"][0]["stdout"] == "pw=***\n"
    assert SECRET not in done.stdout
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "fleetrun",
            "send",
            "--all",
            "--script",
            "true",
            "--secret-param",
            SECRET,
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert (
        bad.returncode == 2
        and "secret parameter is malformed" in bad.stderr
        and SECRET not in bad.stderr
    )
