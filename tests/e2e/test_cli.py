"""The `fleetrun` command line where the process boundary is the point: a real agent
running the script a document makes from the parameters and arguments given on the
command line, and the CLI process taking its local time zone from its environment.
(What the CLI prints and how it exits for the results the server holds is in
tests/api/test_cli_results.py; argument handling, rendering and errors in
tests/api/test_cli.py.)"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from tests.harness import Fleet


@pytest.fixture(scope="module")
def cli_fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    """One server with one agent (env=test): all these tests need."""
    f = Fleet(tmp_path_factory.mktemp("cli")).start()
    try:
        f.add_agents(1, tags={"env": "test"}, prefix="web")
        yield f
    finally:
        f.close()


def cli(fleet, *args, env=None, token=True):
    base = {k: v for k, v in os.environ.items() if not k.startswith("FLEETRUN_")}
    base["FLEETRUN_CONFIG"] = os.path.join(str(fleet.root), "nowhere.toml")
    if fleet is not None:
        base["FLEETRUN_SERVER"] = fleet.server.url
        if token:
            base["FLEETRUN_TOKEN"] = fleet.server.token
    base.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "fleetrun", *args],
        capture_output=True,
        text=True,
        env=base,
        timeout=120,
    )


def test_a_document_sent_from_the_command_line_gets_its_parameters_and_arguments(
    cli_fleet, tmp_path
):
    doc = tmp_path / "doc.yaml"
    doc.write_text(
        "description: Say something\n"
        "parameters: {words: {type: StringList}}\n"
        'mainSteps: [{name: say, action: runShellScript, inputs: {runCommand: \'echo "$words" "$@"\'}}]\n'
    )
    made = cli(cli_fleet, "documents", "create", "cli-doc", "--file", str(doc), "--json")
    assert made.returncode == 0, made.stderr
    sent = cli(
        cli_fleet,
        "send",
        "--node",
        cli_fleet.agents[0].node_id,
        "--document",
        "cli-doc:1",
        "--param",
        "words=a b",
        "--param",
        "words=c",
        "--arg",
        "x y",
        "--wait",
    )
    assert sent.returncode == 0, sent.stderr
    assert "a b\nc x y" in sent.stdout


def test_times_carry_their_zone_local_by_default_or_utc(cli_fleet):
    node = cli_fleet.agents[0].node_id
    local = cli(cli_fleet, "nodes", "show", node, env={"TZ": "Asia/Tokyo"})
    registered = next(x for x in local.stdout.splitlines() if x.startswith("Registered"))
    assert registered.endswith(" JST"), registered
    utc = cli(cli_fleet, "nodes", "show", node, "--utc", env={"TZ": "Asia/Tokyo"})
    registered = next(x for x in utc.stdout.splitlines() if x.startswith("Registered"))
    assert registered.endswith(" UTC"), registered
