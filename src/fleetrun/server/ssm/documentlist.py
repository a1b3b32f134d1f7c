"""ListDocuments over fleetrun's documents (the built-ins as SSM names them, then the
others), in SSM's DocumentIdentifier shape, by name, each decided as the native
listing decides (`fleetrun:ListDocuments` on the document).

    Filters            {Key, Values}: Owner (Self, Private: yours; Amazon, Public: the
                       built-ins; ThirdParty: none), Name (a prefix), PlatformTypes,
                       DocumentType (Command), TargetType, tag:KEY
    DocumentFilterList {key, value}: Name, Owner, PlatformTypes, DocumentType
    MaxResults         1-50 (default 50); NextToken carries the last name listed
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy.orm import Session

from fleetrun.core import access, ssm, ssmdocs, ssmnames
from fleetrun.server.ssm import filters
from fleetrun.server.ssm.base import (
    Call,
    Operation,
    SsmError,
    max_results,
    string,
    structures,
    validation,
)
from fleetrun.server.ssm.documents import Found, read_version
from fleetrun.server.ssm.tagging import tag_list
from fleetrun.server.store import documents as store

KEYS = ("Owner", "Name", "PlatformTypes", "DocumentType", "TargetType")
LEGACY_KEYS = ("Name", "Owner", "PlatformTypes", "DocumentType")
OWNERS = {"Self": False, "Private": False, "Amazon": True, "Public": True, "ThirdParty": None}


def read_filters(body: Mapping[str, Any]) -> dict[str, list[str]]:
    """Each key's values (ORed); the keys ANDed."""
    legacy = structures(body, "DocumentFilterList", max_items=len(LEGACY_KEYS) * 10)
    given = structures(body, "Filters", max_items=6)
    wanted: dict[str, list[str]] = {}
    for item in legacy:
        key = string(item, "key", required=True) or ""
        _known(key, LEGACY_KEYS, tags=False)
        wanted.setdefault(key, []).append(string(item, "value", required=True, min_length=1) or "")
    for item in given:
        key = string(item, "Key", required=True, min_length=1, max_length=128) or ""
        _known(key, KEYS, tags=True)
        values = item.get("Values") or []
        if not isinstance(values, list) or not all(isinstance(v, str) and v for v in values):
            raise validation(f"Filter {key} takes a list of values, none of them empty.")
        wanted.setdefault(key, []).extend(values)
    wrong = [o for o in wanted.get("Owner", []) if o not in OWNERS]
    if wrong:
        raise validation(
            f"Owner {wrong[0]!r} is not valid: use Self, Private, Amazon, Public or ThirdParty."
        )
    return wanted


def _known(key: str, keys: tuple[str, ...], *, tags: bool) -> None:
    if key in keys or (tags and key.startswith("tag:") and len(key) > 4):
        return
    raise SsmError(
        "InvalidFilterKey",
        f"Filter key {key!r} is not valid: use {', '.join(keys)}"
        + (" or tag:KEY." if tags else "."),
    )


def _matches(found: Found, wanted: dict[str, list[str]]) -> bool:
    doc = found.doc
    for key, values in wanted.items():
        if not values:
            continue
        if key == "Owner" and doc.builtin not in {OWNERS[v] for v in values}:
            return False
        if key == "Name" and not ssmnames.document_name(doc.name).startswith(tuple(values)):
            return False
        if key == "PlatformTypes" and not set(values) & set(ssmdocs.platform_types(doc.content)):
            return False
        if key == "DocumentType" and "Command" not in values:
            return False
        if key == "TargetType":  # fleetrun documents run on any node: they name no type
            return False
        if key.startswith("tag:") and found.tags.get(key[4:]) not in values:
            return False
    return True


def identifier(found: Found) -> dict[str, Any]:
    """SSM's DocumentIdentifier (of the default version)."""
    doc = found.doc
    item: dict[str, Any] = {
        "Name": ssmnames.document_name(doc.name),
        "Owner": "Amazon" if doc.builtin else (doc.created_by or "Self"),
        "PlatformTypes": ssmdocs.platform_types(doc.content),
        "DocumentVersion": doc.version,
        "DocumentType": "Command",
        "SchemaVersion": str(doc.content.get("schemaVersion") or ssmdocs.SCHEMA_VERSION),
        "DocumentFormat": doc.format,
        "Tags": tag_list(found.tags),
    }
    created = ssm.epoch(found.created_at or doc.created_at)
    if created is not None:
        item["CreatedDate"] = created
    if found.version_name:
        item["VersionName"] = found.version_name
    return item


async def list_documents(call: Call) -> dict[str, Any]:
    body, caller = call.body, call.caller
    wanted = read_filters(body)
    limit = max_results(body, default=50)
    after = filters.cursor(body, call.operation)

    def read(session: Session) -> tuple[list[Found], str | None]:
        names = sorted(
            (ssmnames.document_name(d.name), d.name) for d in store.read_documents(session)
        )
        page: list[Found] = []
        for shown, name in names:
            if after is not None and shown <= after:
                continue
            if not caller.allows("ListDocuments", access.frn("document", name)):
                continue
            found = read_version(session, name, None, None)
            if not _matches(found, wanted):
                continue
            if len(page) == limit:
                return page, ssmnames.document_name(page[-1].doc.name)
            page.append(found)
        return page, None

    rows, next_cursor = await call.state.db.read(read)
    return filters.page(
        "DocumentIdentifiers", [identifier(r) for r in rows], call.operation, next_cursor
    )


OPERATIONS: dict[str, Operation] = {
    "ListDocuments": Operation("ListDocuments", list_documents),
}
