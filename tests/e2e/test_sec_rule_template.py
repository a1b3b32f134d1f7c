"""Event fields in a rule's input template reach the command as data: the documented
bootstrap rule, fired by a node whose name is a shell attack, prints the name and runs
none of it; a template that would make an event field the script is refused."""

from __future__ import annotations

import pytest

from fleetrun.core.errors import ValidationError
from tests.harness import AgentProcess, wait_for

REGISTERED = {"source": ["fleetrun"], "detail-type": ["Node Registration"]}


def _bootstrap(commands, workdir=None):
    parameters = {"commands": commands}
    if workdir is not None:
        parameters["workingDirectory"] = [str(workdir)]
    return {
        "targets": [{"key": "NodeIds", "values": ["$.detail.node-id"]}],
        "parameters": parameters,
        "comment": "bootstrap",
    }


def test_the_bootstrap_rule_prints_a_hostile_node_name_and_runs_none_of_it(fleet, tmp_path):
    client = fleet.client
    # The command runs in this directory; node names may not contain '/', so the hostile
    # name touches a file relative to it.
    workdir = tmp_path / "work"
    workdir.mkdir()
    marker = workdir / "pwned"
    client.create_principal("bootstrapper", kind="service")
    client.attach("bootstrapper", role="Operator")
    client.create_rule(
        "bootstrap",
        pattern=REGISTERED,
        targets=[
            {
                "target": "command:RunShellScript",
                "input": _bootstrap(
                    [
                        "echo bootstrapping <$.detail.node-name>",
                        "printf '%s\\n' 'again <$.detail.node-name>' \"id <$.detail.node-id>\"",
                    ],
                    workdir,
                ),
            }
        ],
        principal="bootstrapper",
    )
    name = "web1; touch pwned; echo $(touch pwned) `touch pwned` ' \""
    activation = client.create_activation(registration_limit=1)
    agent = AgentProcess(fleet.server, tmp_path / "hostile", name)
    fleet.agents.append(agent)
    agent.register(activation.id, activation.code)
    agent.start()
    (sent,) = wait_for(
        lambda: [d for d in client.list_rule_deliveries("bootstrap") if d.state == "delivered"],
        what="the rule to send its command",
    )
    command_id = sent.history[-1].detail.removeprefix("command ")
    assert client.wait(command_id, timeout_s=60).status == "Success"
    invocation = client.get_invocation(command_id, agent.node_id)
    assert invocation.stdout == (f"bootstrapping {name}\nagain {name}\nid {agent.node_id}\n")
    assert not marker.exists() and list(workdir.iterdir()) == []


@pytest.mark.parametrize(
    ("commands", "says"),
    [
        (["$.detail.node-name"], "makes the event field $.detail.node-name the script"),
        (["echo hi", "$.detail.node-name"], "makes the event field $.detail.node-name the script"),
        (
            ["echo `echo <$.detail.node-name>`"],
            "The input template's commands, line 1: <$.detail.node-name> is inside backticks",
        ),
        (
            ["cat <<'EOF'", "<$.detail.node-name> here", "EOF"],
            "line 2: <$.detail.node-name> is inside a quoted here-document",
        ),
    ],
)
def test_a_template_that_would_make_an_event_field_code_is_refused(shared_fleet, commands, says):
    client = shared_fleet.client
    if "bootstrapper" not in {p.name for p in client.list_principals()}:
        client.create_principal("bootstrapper", kind="service")
    with pytest.raises(ValidationError) as caught:
        client.create_rule(
            "refused-template",
            pattern=REGISTERED,
            targets=[{"target": "command:RunShellScript", "input": _bootstrap(commands)}],
            principal="bootstrapper",
        )
    assert says in caught.value.message
    assert "refused-template" not in {r.name for r in client.list_rules()}
