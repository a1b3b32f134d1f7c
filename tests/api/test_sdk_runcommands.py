"""Run-command definitions are typed: the keywords of `RunCommandDefinition` or a
`RunCommandPut`, checked before anything is sent, for a node and for a group, from
either client (a definition checked by the server is refused with its sentence)."""

from __future__ import annotations

import pytest

from fleetrun.core.errors import ValidationError
from fleetrun.schemas.runcommands import RunCommandParameter, RunCommandPut, RunCommandSource
from fleetrun.sdk import AsyncClient
from tests.inprocess import BASE_URL


def test_keywords_and_a_model_define_the_same_run_command(app):
    [node] = app.enrol(1)
    by_keywords = app.client.put_run_command(
        node.node_id,
        "ntp",
        script="timedatectl set-ntp true",
        parameters={"ZONE": "UTC"},
        arguments=["-v"],
        timeout_s=120,
        run_as_user="ops",
    )
    model = RunCommandPut(
        source=RunCommandSource(script="timedatectl set-ntp true"),
        parameters=[
            RunCommandParameter(name="ZONE", value="UTC"),
            RunCommandParameter(name="", value="-v"),
        ],
        timeoutInSeconds=120,
        runAsUser="ops",
    )
    again = app.client.put_run_command(node.node_id, "ntp", model)
    assert again.generation == by_keywords.generation  # identical: nothing new to run
    assert [(p.name, p.value) for p in again.parameters] == [("ZONE", "UTC"), ("", "-v")]
    assert (again.timeoutInSeconds, again.runAsUser) == (120, "ops")


def test_a_definition_given_both_ways_or_with_two_sources_is_refused_in_one_sentence(app):
    [node] = app.enrol(1)
    body = RunCommandPut(source=RunCommandSource(script="true"))
    with pytest.raises(ValidationError, match="not both"):
        app.client.put_run_command(node.node_id, "x", body, script="true")
    with pytest.raises(ValidationError, match=r"(?i)script"):
        app.client.put_run_command(node.node_id, "x", script="true", document="RunShellScript")
    assert app.client.list_run_commands(node.node_id) == []


async def test_the_group_variant_takes_a_model_from_the_async_client(app):
    app.enrol(2, tags={"role": "web"})
    app.client.create_group("web", tags={"role": "web"})
    body = RunCommandPut(
        source=RunCommandSource(documentName="RunShellScript"),
        parameters=[RunCommandParameter(name="commands", value="true")],
    )
    async with app.async_http() as http, AsyncClient(BASE_URL, app.token, http=http) as client:
        grc = await client.put_group_run_command(
            "web", "noop", body.model_copy(update={"timeoutInSeconds": 60})
        )
    assert grc.summary.total == 2 and grc.timeoutInSeconds == 60
    assert grc.source.documentName == "RunShellScript"
