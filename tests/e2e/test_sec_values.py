"""A parameter value reaches a script as data in every position a document can put it,
on a real agent: every payload arrives byte-exact, nothing in it runs (no marker file
appears), on a node that takes the server's steps and on one that makes them itself
from a signed document. Positions where a value cannot be data refuse the document."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fleetrun.core import signing
from fleetrun.core.errors import NotFoundError, ValidationError

# (step name, action, runCommand lines, what the step prints around the value)
CONTEXTS = [
    ("shell-dq", "runShellScript", ['printf "%s" "DQ[{{ p }}]"'], ("DQ[", "]")),
    ("shell-sq", "runShellScript", ["printf '%s' 'SQ[{{ p }}]'"], ("SQ[", "]")),
    ("shell-bare", "runShellScript", ["printf '%s|' BARE {{ p }} END"], ("BARE|", "|END|")),
    ("shell-heredoc", "runShellScript", ["cat <<EOF", "HD[{{ p }}]", "EOF"], ("HD[", "]\n")),
    ("shell-default", "runShellScript", ["printf '%s' ${UNSET_X:-{{ p }}}"], ("", "")),
    ("shell-default-dq", "runShellScript", ['printf "%s" "${UNSET_X:-{{ p }}}"'], ("", "")),
    ("shell-bash-dq", "runShellScript", ["#!/bin/bash", 'printf "%s" "B[{{ p }}]"'], ("B[", "]")),
    ("python-dq", "runPythonScript", ['print("DQ[{{ p }}]", end="")'], ("DQ[", "]")),
    ("python-sq", "runPythonScript", ["print('SQ[{{ p }}]', end='')"], ("SQ[", "]")),
    ("python-triple", "runPythonScript", ['print("""T[{{ p }}]""", end="")'], ("T[", "]")),
    ("python-code", "runPythonScript", ["print({{ p }}, end='')"], ("", "")),
    ("ssm-env-var", "runShellScript", ['printf "%s" "$SSM_p"'], ("", "")),
]


def payloads(marker: Path) -> list[str]:
    return [
        "with spaces  and\ttabs *",
        "quotes ' and \" both",
        f"$(touch {marker}) `touch {marker}` ${{HOME}}",
        f"'; touch {marker}; echo '",
        f'"; touch {marker}; echo "',
        f"\nEOF\ntouch {marker}\nEOF\n",
        f'""" + __import__("os").system("touch {marker}") + """',
        f"' + __import__('os').system('touch {marker}') + '",
        "non-ASCII: déjà vu, Ωmega, 日本語, 🚀",
        "new\nlines\n",
    ]


def _document() -> str:
    steps = [
        {"name": name, "action": action, "inputs": {"runCommand": lines}}
        for name, action, lines, _ in CONTEXTS
    ]
    return json.dumps(
        {
            "parameters": {"p": {"type": "String", "interpolationType": "ENV_VAR"}},
            "mainSteps": steps,
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
def nodes(shared_fleet):
    """The matrix document, signed; a plain node, and one that runs only signed documents."""
    client = shared_fleet.client
    key = Ed25519PrivateKey.generate()
    doc = client.create_document("value-matrix", _document())
    client.sign_document(
        "value-matrix",
        doc.version,
        publisher="ops",
        public_key=signing.public_key_b64(key),
        signature=signing.sign(key, doc.content),
    )
    strict = shared_fleet.add_agent(prefix="strict")
    agent_cli(strict, "config", "set", "security.trusted_publishers", signing.public_key_b64(key))
    agent_cli(strict, "config", "set", "security.require_signed_documents", "true")
    return {"plain": shared_fleet.agents[0], "signed-only": strict}


@pytest.mark.parametrize("kind", ["plain", "signed-only"])
def test_every_payload_arrives_byte_exact_and_nothing_runs(shared_fleet, nodes, kind, tmp_path):
    client = shared_fleet.client
    node = nodes[kind].node_id
    marker = tmp_path / "pwned"
    for value in payloads(marker):
        command = client.send_command(
            document="value-matrix", parameters={"p": value}, node_ids=[node]
        )
        done = client.wait(command.id, timeout_s=60)
        invocation = client.get_invocation(command.id, node)
        assert done.status == "Success", (value, invocation.message, invocation.stderr)
        for index, (name, _, _, around) in enumerate(CONTEXTS):
            out = client.get_output(command.id, node, step=index).decode()
            assert out == around[0] + value + around[1], (name, value)
        assert not marker.exists(), value


@pytest.mark.parametrize(
    ("lines", "says"),
    [
        (["cat <<'EOF'", "x {{ p }}", "EOF"], "line 2: {{ p }} is inside a quoted here-document"),
        (["echo `echo {{ p }}`"], "line 1: {{ p }} is inside backticks"),
        (["echo $(( {{ p }} + 1 ))"], "line 1: {{ p }} is in arithmetic"),
    ],
)
def test_a_position_that_cannot_be_data_refuses_the_document(shared_fleet, lines, says):
    client = shared_fleet.client
    content = {
        "parameters": {"p": {"type": "String"}},
        "mainSteps": [
            {"name": "show", "action": "runShellScript", "inputs": {"runCommand": lines}}
        ],
    }
    with pytest.raises(ValidationError) as caught:
        client.create_document("refused-position", json.dumps(content))
    assert f"Step 'show', {says}" in caught.value.message
    with pytest.raises(NotFoundError):
        client.get_document("refused-position")


def test_the_cli_says_why_a_document_is_refused_in_one_sentence(shared_fleet, tmp_path):
    path = tmp_path / "doc.yaml"
    path.write_text(
        "parameters: {p: {type: String}}\n"
        "mainSteps:\n"
        "  - name: show\n"
        "    action: runPythonScript\n"
        "    inputs: {runCommand: 'print(f\"{{ p }}\")'}\n"
    )
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "fleetrun",
            "documents",
            "create",
            "refused-cli",
            "--file",
            str(path),
            "--server",
            shared_fleet.server.url,
            "--token",
            shared_fleet.server.token,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "Step 'show', line 1: {{ p }} is inside an f-string" in done.stderr
    assert "Traceback" not in done.stderr
