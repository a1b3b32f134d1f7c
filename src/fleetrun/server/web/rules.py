"""Console pages for rules and channels: a rule's pattern (edited and tried on a sample
event with the API's own matcher), its targets and deliveries, enable, disable, redrive
its dead letters; a channel and its deliveries. Each handler declares the API route's
`authorize(...)`, with the same resource, and calls the API route's function."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from starlette.responses import RedirectResponse

from fleetrun.core import access
from fleetrun.core.errors import ValidationError
from fleetrun.core.patterns import compile_pattern
from fleetrun.schemas import events as schemas
from fleetrun.server.api import rules as api
from fleetrun.server.api.deps import authorize
from fleetrun.server.authz import Caller
from fleetrun.server.web.pages import guard
from fleetrun.server.web.render import field, form, may, page, refusal

router = APIRouter(prefix="/ui", include_in_schema=False, dependencies=[Depends(guard)])
SAMPLE = {
    "version": "0",
    "id": "00000000-0000-0000-0000-000000000000",
    "detail-type": "Command Status-change Notification",
    "source": "fleetrun",
    "time": "2026-01-31T12:00:00Z",
    "resources": [],
    "detail": {"status": "Failed", "document-name": "RunShellScript"},
}


@router.get("/rules")
async def rules_page(
    request: Request, caller: Annotated[Caller, Depends(authorize("ListRules"))]
) -> Response:
    rules = (await api.list_rules(request, caller)).items
    channels = None
    if may(caller, "ListChannels"):
        channels = (await api.list_channels(request, caller)).items
    return page(request, "rules.html", caller, {"rules": rules, "channels": channels})


@router.get("/rules/{name}")
async def rule_page(
    request: Request,
    name: str,
    caller: Annotated[Caller, Depends(authorize("GetRule", api.RULE))],
) -> Response:
    rule = await api.get_rule(request, name, caller)
    resource = access.frn("rule", name)
    deliveries = None
    if caller.allows("ListRuleDeliveries", resource):
        deliveries = (await api.list_deliveries(request, name, caller, state=None, limit=50)).items
    context = {
        "rule": rule,
        "pattern": json.dumps(rule.pattern, indent=2),
        "sample": json.dumps(SAMPLE, indent=2),
        "deliveries": deliveries,
        "dead": sum(1 for d in deliveries or [] if d.state == "dead"),
        **{
            f"may_{verb}": caller.allows(action, resource)
            for verb, action in (
                ("update", "UpdateRule"),
                ("enable", "EnableRule"),
                ("disable", "DisableRule"),
                ("redrive", "RedriveRule"),
                ("delete", "DeleteRule"),
            )
        },
    }
    return page(request, "rule.html", caller, context)


@router.post("/rules/{name}/test")
async def test_pattern(
    request: Request,
    name: str,
    caller: Annotated[Caller, Depends(authorize("GetRule", api.RULE))],
) -> Response:
    """Try the pattern in the editor on the sample event (the API's matcher, offline:
    nothing is saved or sent)."""
    fields = await form(request)
    match = None
    with refusal() as refused:
        pattern = compile_pattern(field(fields, "pattern"))
        match = pattern.matches(_json(field(fields, "event"), "The sample event"))
    return page(request, "rule_test.html", caller, {"match": match, "message": refused.message})


@router.post("/rules/{name}/pattern")
async def save_pattern(
    request: Request,
    name: str,
    caller: Annotated[Caller, Depends(authorize("UpdateRule", api.RULE))],
) -> Response:
    fields = await form(request)
    text = field(fields, "pattern")
    compile_pattern(text)  # the sentence for a pattern that is not valid
    body = schemas.RuleUpdate(pattern=_json(text, "The pattern"))
    await api.update_rule(request, name, body, caller)
    return RedirectResponse(f"/ui/rules/{name}", status_code=303)


@router.post("/rules/{name}/{verb}")
async def rule_action(
    request: Request,
    name: str,
    verb: str,
    caller: Annotated[Caller, Depends(authorize("GetRule", api.RULE))],
) -> Response:
    """Enable, disable, redrive or delete: each decided as the API decides it (the
    action's own gate on the rule, then the route)."""
    actions = {
        "enable": ("EnableRule", api.enable_rule),
        "disable": ("DisableRule", api.disable_rule),
        "redrive": ("RedriveRule", api.redrive_rule),
        "delete": ("DeleteRule", api.delete_rule),
    }
    if verb not in actions:
        raise ValidationError(
            f"A rule can be enabled, disabled, redriven or deleted, not {verb!r}."
        )
    action, route = actions[verb]
    caller.require(action, access.frn("rule", name))  # the API decides it at its gate
    await route(request, name, caller)
    return RedirectResponse("/ui/rules" if verb == "delete" else f"/ui/rules/{name}", 303)


@router.get("/channels/{name}")
async def channel_page(
    request: Request,
    name: str,
    caller: Annotated[Caller, Depends(authorize("GetChannel", api.CHANNEL))],
) -> Response:
    channel = await api.get_channel(request, name, caller)
    deliveries = None
    if caller.allows("ListChannelDeliveries", access.frn("channel", name)):
        deliveries = (await api.list_channel_deliveries(request, name, caller, limit=50)).items
    return page(request, "channel.html", caller, {"channel": channel, "deliveries": deliveries})


def _json(text: str, what: str) -> Any:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise ValidationError(f"{what} is not JSON ({exc}): write one JSON object.") from None
    if not isinstance(value, dict):
        raise ValidationError(f"{what} must be one JSON object.")
    return value
