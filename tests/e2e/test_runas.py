"""Run-as: privileges dropped in the child, a clean environment that keeps parameters."""

from __future__ import annotations

import grp
import json
import os
import pwd
import shutil
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="run-as needs an agent running as root")

SHOW = (
    "python3 -c 'import json,os; "
    'print(json.dumps({"uid": os.getuid(), "gid": os.getgid(), "groups": sorted(os.getgroups()), '
    '"env": dict(os.environ), "cwd": os.getcwd()}))\''
)


@pytest.fixture(scope="module")
def extra_user():
    """A user with a supplementary group, made for these tests (and removed after)."""
    if not shutil.which("useradd"):
        pytest.skip("useradd is not available here")
    group, user = "fleetrun-tg", "fleetrun-tu"
    made = []
    try:
        grp.getgrnam(group)
    except KeyError:
        subprocess.run(["groupadd", group], check=True)
        made.append(("groupdel", group))
    try:
        pwd.getpwnam(user)
    except KeyError:
        subprocess.run(
            [
                "useradd",
                "--no-create-home",
                "--home-dir",
                "/nonexistent",
                "--shell",
                "/bin/sh",
                "--groups",
                group,
                user,
            ],
            check=True,
        )
        made.insert(0, ("userdel", user))
    yield user, grp.getgrnam(group).gr_gid
    for tool, name in made:
        subprocess.run([tool, name], check=False)


def _run(fleet, agent, **kwargs):
    command = fleet.client.send_command(node_ids=[agent.node_id], **kwargs)
    fleet.client.wait(command.id, timeout_s=60)
    return fleet.client.get_invocation(command.id, agent.node_id)


@pytest.fixture(scope="module")
def marked(tmp_path_factory):
    """An agent whose own environment carries a marker that must not leak to other users."""
    from tests.harness import Fleet

    f = Fleet(tmp_path_factory.mktemp("runas")).start()
    try:
        [agent] = f.add_agents(1, start=False)
        # The node decides who scripts may run as (by default only the agent's own user).
        allowed = "nobody,fleetrun-tu,no-such-user-x"
        subprocess.run(
            [
                sys.executable,
                "-m",
                "fleetrun.agent",
                "config",
                "set",
                "runcommand.allowed_users",
                allowed,
                "--state-dir",
                str(agent.state_dir),
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        agent.env["AGENT_ONLY_MARKER"] = "agent-secret"
        agent.start()
        f.wait_online([agent])
        yield f, agent
    finally:
        f.close()


def test_run_as_drops_to_the_user_with_a_clean_environment(marked):
    fleet, agent = marked
    inv = _run(fleet, agent, script=SHOW, run_as="nobody")
    assert inv.status == "Success", inv
    seen = json.loads(inv.stdout)
    nobody = pwd.getpwnam("nobody")
    assert (seen["uid"], seen["gid"]) == (nobody.pw_uid, nobody.pw_gid)
    assert seen["groups"] == sorted(os.getgrouplist("nobody", nobody.pw_gid))
    env = seen["env"]
    assert (env["HOME"], env["USER"], env["LOGNAME"], env["SHELL"]) == (
        nobody.pw_dir,
        "nobody",
        "nobody",
        nobody.pw_shell,
    )
    assert "AGENT_ONLY_MARKER" not in env
    assert env["FLEETRUN_NODE_ID"] == agent.node_id
    assert os.stat(seen["cwd"]).st_uid == nobody.pw_uid if os.path.exists(seen["cwd"]) else True


def test_without_run_as_it_runs_as_the_agent(marked):
    fleet, agent = marked
    seen = json.loads(_run(fleet, agent, script=SHOW).stdout)
    assert seen["uid"] == os.geteuid()
    assert seen["env"]["AGENT_ONLY_MARKER"] == "agent-secret"


def test_parameters_still_reach_a_run_as_user(marked):
    fleet, agent = marked
    fleet.client.create_document(
        "runas-doc",
        """
parameters: {greeting: {type: String}}
mainSteps:
  - {name: as-nobody, action: runShellScript, runAs: nobody, inputs: {runCommand: 'echo "$greeting from $(id -un)"'}}
  - {name: as-agent, action: runShellScript, inputs: {runCommand: 'echo "$greeting from $(id -un)"'}}
""",
    )
    inv = _run(fleet, agent, document="runas-doc", parameters={"greeting": "hi there"})
    assert inv.steps[0].stdout == "hi there from nobody\n"
    assert inv.steps[1].stdout == f"hi there from {pwd.getpwuid(os.geteuid()).pw_name}\n"


def test_supplementary_groups_are_set(marked, extra_user):
    fleet, agent = marked
    user, gid = extra_user
    seen = json.loads(_run(fleet, agent, script=SHOW, run_as=user).stdout)
    assert gid in seen["groups"]
    assert seen["uid"] == pwd.getpwnam(user).pw_uid


def test_an_unknown_user_fails_that_invocation_naming_the_user(marked):
    fleet, agent = marked
    inv = _run(fleet, agent, script="echo never", run_as="no-such-user-x")
    assert (inv.status, inv.stdout) == ("Failed", "")
    assert "'no-such-user-x' does not exist" in inv.steps[0].message
