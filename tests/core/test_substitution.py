"""A placeholder inside a script line becomes a reference to an environment variable
written for its position, or the document is refused: every context of every language
against payloads that would run code if they were pasted as text."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from fleetrun.core import documents as d
from fleetrun.core.errors import ValidationError


def payloads(marker: Path) -> list[str]:
    return [
        "plain",
        "with spaces  and\ttabs  *",
        "quotes ' and \" both",
        f"$(touch {marker})",
        f"`touch {marker}`",
        f"'; touch {marker}; '",
        f'"; touch {marker}; "',
        f"\nEOF\ntouch {marker}\nEOF\n",
        f"}}; touch {marker}; ${{x",
        f"\\$(touch {marker})\\",
        f'""" + __import__("os").system("touch {marker}") + """',
        f"' + __import__('os').system('touch {marker}') + '",
        "non-ASCII: déjà vu, Ωmega, 日本語, 🚀",
        "new\nlines\n",
    ]


# (context, script line(s) with the placeholder, what the script prints around the value)
SHELL = [
    ("double quotes", 'printf "%s" "DQ[{{ p }}]"', ("DQ[", "]")),
    ("single quotes", "printf '%s' 'SQ[{{ p }}]'", ("SQ[", "]")),
    ("bare word", "printf '%s|' BARE {{ p }} END", ("BARE|", "|END|")),
    ("unquoted heredoc", "cat <<EOF\nHD[{{ p }}]\nEOF", ("HD[", "]\n")),
    ("unquoted heredoc, tabs", "cat <<-EOF\n\tHD[{{ p }}]\n\tEOF", ("HD[", "]\n")),
    ("default, bare", "printf '%s' ${UNSET_X:-{{ p }}}", ("", "")),
    ("default, quoted", 'printf "%s" "${UNSET_X:-{{ p }}}"', ("", "")),
    ("command substitution", 'printf "%s" "$(printf "%s." {{ p }})"', ("", ".")),
    ("quoted in substitution", "printf '%s' \"$(printf '%s' 'S{{ p }}')\"", ("S", "")),
    ("assignment", 'X={{ p }}; printf "%s" "$X"', ("", "")),
    ("comment before", "# don't {{ p }}\nprintf '%s' \"{{ p }}\"", ("", "")),
    ("case word", "case {{ p }} in *) printf '%s' \"{{ p }}\";; esac", ("", "")),
]

PYTHON = [
    ("double-quoted literal", 'print("DQ[{{ p }}]", end="")', ("DQ[", "]")),
    ("single-quoted literal", "print('SQ[{{ p }}]', end='')", ("SQ[", "]")),
    ("triple-quoted literal", 'print("""T[\n{{ p }}]""", end="")', ("T[\n", "]")),
    ("raw literal", 'print(r"R[{{ p }}]", end="")', ("R[", "]")),
    ("code", 'print("C[" + {{ p }} + "]", end="")', ("C[", "]")),
    ("comment", "# {{ p }}\nprint('x', end='')", None),
    ("percent after", 'print("%s[{{ p }}]" % "P", end="")', ("P[", "]")),
]


def _run(argv: list[str], script: str, env: dict[str, str], cwd: Path) -> str:
    done = subprocess.run(
        [*argv, script],
        capture_output=True,
        check=True,
        env={**os.environ, **env},
        cwd=cwd,
    )
    return done.stdout.decode()


def _step(action: str, line: str, value: str) -> tuple[str, dict[str, str]]:
    content = {
        "parameters": {"p": {"type": "String"}},
        "mainSteps": [{"name": "s", "action": action, "inputs": {"runCommand": line.split("\n")}}],
    }
    d.validate(content)
    [step] = d.resolve_steps(content, {"p": value})
    return step.script, step.env


SEPARATOR = {"runShellScript": "printf '%s' '<SEP>'", "runPythonScript": "print('<SEP>', end='')"}


def _all_payloads(action: str, line: str, values: list[str]) -> tuple[str, dict[str, str]]:
    """One script that prints the line once per value, each from its own parameter."""
    lines: list[str] = []
    for index in range(len(values)):
        lines += line.replace("{{ p }}", f"{{{{ p{index} }}}}").split("\n")
        lines.append(SEPARATOR[action])
    content = {
        "parameters": {f"p{i}": {"type": "String"} for i in range(len(values))},
        "mainSteps": [{"name": "s", "action": action, "inputs": {"runCommand": lines}}],
    }
    d.validate(content)
    [step] = d.resolve_steps(content, {f"p{i}": v for i, v in enumerate(values)})
    return step.script, step.env


SHELLS = [s for s in ("/bin/sh", "/bin/bash") if shutil.which(s)]


@pytest.mark.parametrize("shell", SHELLS)
@pytest.mark.parametrize(("context", "line", "around"), SHELL, ids=[c[0] for c in SHELL])
def test_shell_contexts_pass_every_payload_as_data(shell, context, line, around, tmp_path):
    marker = tmp_path / "pwned"
    values = payloads(marker)
    if "substitution" in context:  # $(...) drops trailing newlines, whatever they are
        values = [v.rstrip("\n") for v in values]
    script, env = _all_payloads("runShellScript", line, values)
    assert str(marker) not in script  # no value is in the script's text
    out = _run([shell, "-c"], script, env, tmp_path).split("<SEP>")[:-1]
    assert out == [around[0] + v + around[1] for v in values], script
    assert not marker.exists(), script


@pytest.mark.parametrize(("context", "line", "around"), PYTHON, ids=[c[0] for c in PYTHON])
def test_python_contexts_pass_every_payload_as_data(context, line, around, tmp_path):
    marker = tmp_path / "pwned"
    values = payloads(marker)
    script, env = _all_payloads("runPythonScript", line, values)
    assert str(marker) not in script
    env = {**env, "PYTHONIOENCODING": "utf-8"}
    out = _run(["python3", "-c"], script, env, tmp_path).split("<SEP>")[:-1]
    expected = ["x" if around is None else around[0] + v + around[1] for v in values]
    assert out == expected, script
    assert not marker.exists(), script


@pytest.mark.parametrize(
    ("line", "written"),
    [
        ('echo "a{{ p }}b"', 'echo "a${FLEETRUN_P_p}b"'),
        ("echo 'a{{ p }}b'", "echo 'a'\"${FLEETRUN_P_p}\"'b'"),
        ("echo a{{ p }}b", 'echo a"${FLEETRUN_P_p}"b'),
        ('echo "${X:-{{ p }}}"', 'echo "${X:-${FLEETRUN_P_p}}"'),
        ("echo ${X:-{{ p }}}", 'echo ${X:-"${FLEETRUN_P_p}"}'),
    ],
)
def test_shell_references_are_written_for_their_position(line, written):
    assert _step("runShellScript", line, "v")[0] == written + "\n"


@pytest.mark.parametrize(
    ("line", "written"),
    [
        ('Write-Output "a{{ p }}b"', 'Write-Output "a${env:FLEETRUN_P_p}b"'),
        ("Write-Output a{{ p }}b", "Write-Output a${env:FLEETRUN_P_p}b"),
        ("$x = {{ p }}", "$x = ${env:FLEETRUN_P_p}"),
        ('"$(Get-Date) {{ p }}"', '"$(Get-Date) ${env:FLEETRUN_P_p}"'),
        ("# it's {{ p }}", "# it's ${env:FLEETRUN_P_p}"),
        ('@"\nH {{ p }}\n"@', '@"\nH ${env:FLEETRUN_P_p}\n"@'),
    ],
)
def test_powershell_references_are_written_for_their_position(line, written):
    assert _step("runPowerShellScript", line, "v")[0] == written + "\n"


@pytest.mark.skipif(shutil.which("pwsh") is None, reason="PowerShell is not installed")
@pytest.mark.parametrize(
    ("line", "around"),
    [
        ('[Console]::Out.Write("DQ[{{ p }}]")', ("DQ[", "]")),
        ("[Console]::Out.Write({{ p }})", ("", "")),
        ('[Console]::Out.Write(@"\nH[{{ p }}]\n"@)', ("H[", "]")),
    ],
)
def test_powershell_contexts_pass_every_payload_as_data(line, around, tmp_path):
    marker = tmp_path / "pwned"
    for value in payloads(marker):
        script, env = _step("runPowerShellScript", line, value)
        out = _run(["pwsh", "-NoProfile", "-Command"], script, env, tmp_path)
        assert out == around[0] + value + around[1]
        assert not marker.exists()


@pytest.mark.parametrize(
    ("action", "lines", "says"),
    [
        (
            "runShellScript",
            "cat <<'EOF'\nH {{ p }}\nEOF",
            "line 2: {{ p }} is inside a quoted here-document",
        ),
        ("runShellScript", 'cat <<"EOF"\nH {{ p }}\nEOF', "quoted here-document"),
        ("runShellScript", "cat <<\\EOF\nH {{ p }}\nEOF", "quoted here-document"),
        (
            "runShellScript",
            "echo `echo {{ p }}`",
            "inside backticks, so fleetrun cannot pass its value there as data; use $(...)",
        ),
        ("runShellScript", "echo $(( {{ p }} + 1 ))", "is in arithmetic"),
        ("runShellScript", "(( x = {{ p }} ))", "is in arithmetic"),
        ("runShellScript", "[[ {{ p }} -eq 1 ]] && echo y", "is in arithmetic"),
        ("runShellScript", "let x={{ p }}", "is in arithmetic"),
        ("runShellScript", "echo ${X:{{ p }}}", "is in arithmetic"),
        ("runShellScript", "echo ${a[{{ p }}]}", "is in arithmetic"),
        ("runShellScript", "echo $'{{ p }}'", "inside $'...'"),
        ("runShellScript", "echo \\{{ p }}", "right after a backslash"),
        ("runShellScript", 'echo "\\{{ p }}"', "right after a backslash"),
        ("runShellScript", "echo ${{ p }}", "right after a $"),
        ("runShellScript", "echo ${{{ p }}}", "variable name"),
        ("runShellScript", "#!/usr/bin/env python3\nprint({{ p }})", "gives to python3"),
        ("runShellScript", "cat <<{{ p }}\nx\n", "delimiter"),
        ("runPythonScript", 'print(f"{{ p }}")', "inside an f-string"),
        ("runPythonScript", 'print(b"{{ p }}")', "inside a bytes literal"),
        ("runPythonScript", 'print("\\{{ p }}")', "right after a backslash"),
        ("runPythonScript", "x{{ p }} = 1", "joined to other letters"),
        ("runPythonScript", 'print("unterminated {{ p }}', "cannot be read"),
        ("runPowerShellScript", "Write-Output '{{ p }}'", "single-quoted (verbatim) string"),
        ("runPowerShellScript", "Write-Output \u2018{{ p }}\u2019", "verbatim"),
        ("runPowerShellScript", "@'\nH {{ p }}\n'@", "verbatim here-string"),
        ("runPowerShellScript", 'Write-Output "`{{ p }}"', "right after a backtick"),
    ],
)
def test_positions_that_cannot_be_data_refuse_the_document(action, lines, says):
    content = {
        "parameters": {"p": {"type": "String"}},
        "mainSteps": [
            {"name": "show", "action": action, "inputs": {"runCommand": lines.split("\n")}}
        ],
    }
    with pytest.raises(ValidationError) as caught:
        d.validate(content)
    message = caught.value.message
    assert says in message
    assert message.startswith("The document is not valid: Step 'show', line ")
    assert message.endswith(".") and "\n" not in message


def test_a_whole_placeholder_line_stays_code_and_does_not_shift_positions():
    content = {
        "parameters": {"commands": {"type": "StringList"}, "p": {"type": "String"}},
        "mainSteps": [
            {
                "name": "s",
                "action": "runShellScript",
                "inputs": {"runCommand": ["{{ commands }}", "printf '%s' '{{ p }}'"]},
            }
        ],
    }
    d.validate(content)
    # the script opens a quote: the next line is still read from the template alone
    [step] = d.resolve_steps(content, {"commands": ["echo 'one", "two'"], "p": "$(id)"})
    assert step.script == "echo 'one\ntwo'\nprintf '%s' ''\"${FLEETRUN_P_p}\"''\n"


def test_a_list_is_one_word_per_item_in_shell_and_lines_elsewhere(tmp_path):
    content = {
        "parameters": {"names": {"type": "StringList"}},
        "mainSteps": [
            {
                "name": "a",
                "action": "runShellScript",
                "inputs": {"runCommand": "printf '[%s]' {{ names }}"},
            },
            {
                "name": "b",
                "action": "runShellScript",
                "inputs": {"runCommand": "printf '%s' \"{{ names }}\""},
            },
            {
                "name": "c",
                "action": "runPythonScript",
                "inputs": {"runCommand": "print({{ names }}, end='')"},
            },
        ],
    }
    steps = d.resolve_steps(content, {"names": ["a b", "$(id)", ""]})
    outs = [
        _run(
            ["/bin/sh" if s.action == "runShellScript" else "python3", "-c"],
            s.script,
            s.env,
            tmp_path,
        )
        for s in steps
    ]
    assert outs == ["[a b][$(id)][]", "a b\n$(id)\n", "a b\n$(id)\n"]


def test_env_var_interpolation_puts_the_value_in_ssm_name():
    content = {
        "parameters": {"Message": {"type": "String", "interpolationType": "ENV_VAR"}},
        "mainSteps": [
            {
                "name": "s",
                "action": "runShellScript",
                "inputs": {
                    "runCommand": [
                        'if [ -z "${SSM_Message+x}" ]; then export SSM_Message="{{ Message }}"; fi',
                        'printf "%s" "$SSM_Message"',
                    ]
                },
            }
        ],
    }
    d.validate(content)
    [step] = d.resolve_steps(content, {"Message": "a $(id) `id` 'q'"})
    assert step.env["SSM_Message"] == "a $(id) `id` 'q'"
    done = subprocess.run(
        ["/bin/sh", "-c", step.script], capture_output=True, text=True, env=step.env
    )
    assert done.stdout == "a $(id) `id` 'q'"


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ({"type": "StringList", "interpolationType": "ENV_VAR"}, "on a String parameter"),
        ({"type": "String", "interpolationType": "TEXT"}, "must be ENV_VAR"),
    ],
)
def test_env_var_interpolation_is_only_for_strings(spec, says):
    content = {
        "parameters": {"m": spec},
        "mainSteps": [{"name": "s", "action": "runShellScript", "inputs": {"runCommand": "true"}}],
    }
    with pytest.raises(ValidationError, match=says):
        d.validate(content)


def test_event_fields_in_a_rules_script_become_variables_not_text(tmp_path):
    from fleetrun.core import delivery

    name = f"web1; touch {tmp_path / 'pwned'}; echo $(id) '"
    event = {"detail": {"node-name": name, "node-id": "n-1"}}
    template = {
        "targets": [{"key": "NodeIds", "values": ["$.detail.node-id"]}],
        "parameters": {
            "commands": ["echo hi <$.detail.node-name>", "echo '<$.detail.node-name>'"],
            "workingDirectory": "/tmp/<$.detail.node-id>",
        },
    }
    scripts = d.script_parameters(d.BUILTIN_DOCUMENTS["RunShellScript"])
    assert scripts == {"commands": {"runShellScript"}}
    body, env = delivery.render_command_input(template, event, scripts)
    assert body["parameters"]["commands"] == [
        'echo hi "${FLEETRUN_EVENT_1}"',
        "echo ''\"${FLEETRUN_EVENT_1}\"''",
    ]
    assert body["parameters"]["workingDirectory"] == "/tmp/n-1"  # data, as before
    assert body["targets"][0]["values"] == ["n-1"]
    assert env == {"FLEETRUN_EVENT_1": name}
    out = _run(["/bin/sh", "-c"], "\n".join(body["parameters"]["commands"]), env, tmp_path)
    assert out == f"hi {name}\n{name}\n"
    assert not (tmp_path / "pwned").exists()
