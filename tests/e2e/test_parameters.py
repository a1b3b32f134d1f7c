"""Parameter values reach scripts byte-exact, as environment variables and argv."""

from __future__ import annotations

import json

TRICKY = [
    "plain",
    "with spaces  and\ttabs",
    "quotes ' and \" both",
    "dollar $HOME ${PATH} $(id) `id`",
    "new\nlines\n",
    "non-ASCII: déjà vu, Ωmega, 日本語, emoji 🚀",
    "semicolon; rm -rf / && echo pwned | cat",
    "",
]

PRINT = (
    "python3 -c 'import json,os,sys; "
    'print(json.dumps({"env": os.environ.get("value"), "args": sys.argv[1:]}))\' "$@"'
)


def test_named_parameters_and_arguments_arrive_byte_exact(shared_fleet):
    client = shared_fleet.client
    client.create_document(
        "echo-params",
        f"""
parameters:
  value: {{type: String}}
mainSteps:
  - name: show
    action: runShellScript
    inputs: {{runCommand: {json.dumps(PRINT)}}}
""",
    )
    node = shared_fleet.agents[0].node_id
    for value in TRICKY:
        command = client.send_command(
            document="echo-params", parameters={"value": value}, arguments=TRICKY, node_ids=[node]
        )
        assert client.wait(command.id, timeout_s=60).status == "Success"
        seen = json.loads(client.get_invocation(command.id, node).stdout)
        assert seen == {"env": value, "args": TRICKY}


def test_embedded_placeholders_are_quoted_not_run(shared_fleet, tmp_path):
    client = shared_fleet.client
    marker = tmp_path / "pwned"
    client.create_document(
        "embed-param",
        """
parameters: {name: {type: String}}
mainSteps:
  - {name: greet, action: runShellScript, inputs: {runCommand: 'echo hello {{ name }}'}}
""",
    )
    node = shared_fleet.agents[0].node_id
    attack = f"x; touch {marker} `touch {marker}` $(touch {marker})"
    command = client.send_command(
        document="embed-param", parameters={"name": attack}, node_ids=[node]
    )
    assert client.wait(command.id, timeout_s=60).status == "Success"
    assert client.get_invocation(command.id, node).stdout == f"hello {attack}\n"
    assert not marker.exists()
