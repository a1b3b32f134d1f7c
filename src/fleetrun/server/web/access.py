"""Console pages for access control: principals (their attachments, tokens, a token made
and shown once, revoke), policies (their documents) and the policy simulator. As
elsewhere, each handler declares the API route's `authorize(...)` with the same
resource and calls the API route's function."""

from __future__ import annotations

import json
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from starlette.responses import RedirectResponse

from fleetrun.core import access as frn
from fleetrun.core.errors import ValidationError
from fleetrun.schemas import access as schemas
from fleetrun.server.api import policies as policies_api
from fleetrun.server.api import principals as principals_api
from fleetrun.server.api import tokens as tokens_api
from fleetrun.server.api.deps import authorize
from fleetrun.server.authz import Caller
from fleetrun.server.web.pages import guard
from fleetrun.server.web.render import field, form, may, page, refusal

router = APIRouter(prefix="/ui", include_in_schema=False, dependencies=[Depends(guard)])
PRINCIPAL = principals_api.PRINCIPAL


@router.get("/access")
async def access_page(
    request: Request, caller: Annotated[Caller, Depends(authorize("ListPrincipals"))]
) -> Response:
    principals = (await principals_api.list_principals(request, caller)).items
    policies = None
    if may(caller, "ListPolicies"):
        policies = (await policies_api.list_policies(request, caller)).items
    return page(request, "access.html", caller, {"principals": principals, "policies": policies})


async def _principal_page(
    request: Request, name: str, caller: Caller, made: schemas.TokenCreated | None = None
) -> Response:
    principal = await principals_api.get_principal(request, name, caller)
    resource = frn.frn("principal", name)
    tokens = None
    if caller.allows("ListTokens", resource):
        tokens = (await tokens_api.list_tokens(request, caller, principal=name)).items
    context = {
        "principal": principal,
        "tokens": tokens,
        "made": made,
        "may_create_token": caller.allows("CreateToken", resource),
        "may_revoke": caller.allows("RevokeToken", resource),
        "may_simulate": caller.allows("SimulatePrincipalPolicy", resource),
    }
    return page(request, "principal.html", caller, context)


@router.get("/access/principals/{name}")
async def principal_page(
    request: Request,
    name: str,
    caller: Annotated[Caller, Depends(authorize("GetPrincipal", PRINCIPAL))],
) -> Response:
    return await _principal_page(request, name, caller)


@router.post("/access/principals/{name}/tokens")
async def create_token(
    request: Request,
    name: str,
    caller: Annotated[Caller, Depends(authorize("CreateToken"))],
) -> Response:
    """Make a token and show it on this answer only (it is stored as a hash; the page
    is not cached)."""
    fields = await form(request)
    expires = field(fields, "expires_in_h")
    try:
        expires_in_s = float(expires) * 3600 if expires else None
    except ValueError:
        raise ValidationError(f"The expiry must be a number of hours, not {expires!r}.") from None
    body = schemas.TokenCreate(
        principal=name, description=field(fields, "description") or None, expires_in_s=expires_in_s
    )
    made = await tokens_api.create_token(request, body, caller)
    return await _principal_page(request, name, caller, made)


@router.post("/access/tokens/{token_id}/revoke")
async def revoke_token(
    request: Request,
    token_id: str,
    caller: Annotated[Caller, Depends(authorize("RevokeToken"))],
) -> Response:
    revoked = await tokens_api.revoke_token(request, token_id, caller)
    return RedirectResponse(f"/ui/access/principals/{revoked.principal}", status_code=303)


@router.post("/access/principals/{name}/simulate")
async def simulate(
    request: Request,
    name: str,
    caller: Annotated[Caller, Depends(authorize("SimulatePrincipalPolicy", PRINCIPAL))],
) -> Response:
    """The API's simulator: would this principal be allowed ACTION on RESOURCE?"""
    fields = await form(request)
    result = None
    with refusal() as refused:
        body = schemas.SimulateRequest(
            action=field(fields, "action"), resource=field(fields, "resource") or "*"
        )
        result = await principals_api.simulate(request, name, body, caller)
    context = {"result": result, "message": refused.message}
    return page(request, "simulate.html", caller, context)


@router.get("/access/policies/{name}")
async def policy_page(
    request: Request,
    name: str,
    caller: Annotated[Caller, Depends(authorize("GetPolicy", policies_api.POLICY))],
) -> Response:
    policy = await policies_api.get_policy(request, name, caller)
    document = json.dumps(policy.document, indent=2)
    return page(request, "policy.html", caller, {"policy": policy, "document": document})
