"""SSM's document operations over fleetrun's documents: CreateDocument, UpdateDocument,
DeleteDocument, GetDocument, DescribeDocument, ListDocuments, ListDocumentVersions and
UpdateDocumentDefaultVersion.

Content is an SSM schemaVersion 2.2 command document in JSON or YAML, translated to and
from fleetrun's content by `fleetrun.core.ssmdocs` (the `aws:` plugin names); the
built-ins are `AWS-<name>` (`AWS-RunShellScript`: `fleetrun.core.ssmnames`). Each
operation is the native route's store call, decided on the document as the native route
decides (`fleetrun:CreateDocument`, `GetDocument`, ... on frn:fleetrun:document/NAME).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from fleetrun.core import access, ssm, ssmdocs, ssmnames
from fleetrun.core import documents as core
from fleetrun.core.errors import ConflictError, NotFoundError, ValidationError
from fleetrun.schemas import documents as schemas
from fleetrun.server.db import Tx
from fleetrun.server.ssm import filters
from fleetrun.server.ssm.base import (
    Call,
    Operation,
    SsmError,
    boolean,
    max_results,
    string,
    structures,
    validation,
)
from fleetrun.server.ssm.tagging import read_tags, tag_list
from fleetrun.server.store import documents as store
from fleetrun.server.store.tables import Document, DocumentVersion

NAME_RE = re.compile(r"^[a-zA-Z0-9_\-.]{3,128}$")
VERSION_NAME_RE = re.compile(r"^[a-zA-Z0-9_\-.]{1,128}$")
VERSION_RE = re.compile(r"^(\$LATEST|\$DEFAULT|[1-9][0-9]*)$")
RESERVED_PREFIXES = ("aws", "amazon", "amzn")
UNSUPPORTED = ("Requires", "Attachments")


# -- request members ------------------------------------------------------------------


def _name(body: Mapping[str, Any], *, arn: bool = False) -> str:
    """The document a request names (an ARN where SSM takes one), in fleetrun's name."""
    name = string(body, "Name", required=True) or ""
    if arn and name.startswith("arn:") and "document/" in name:
        name = name.split("document/", 1)[1]
    if not NAME_RE.fullmatch(name):
        raise validation(
            f"Document name {name!r} is not valid: use 3-128 letters, digits, _ - or ."
        )
    return ssmnames.fleetrun_document(name)


def _version(body: Mapping[str, Any], member: str = "DocumentVersion") -> str | None:
    version = string(body, member)
    if version is not None and not VERSION_RE.fullmatch(version):
        raise SsmError(
            "InvalidDocumentVersion",
            f"{member} {version!r} is not valid: give a number, $LATEST or $DEFAULT.",
        )
    return version


def _version_name(body: Mapping[str, Any]) -> str | None:
    value = string(body, "VersionName")
    if value is not None and not VERSION_NAME_RE.fullmatch(value):
        raise validation(f"VersionName {value!r} is not valid: use 1-128 letters, digits, _ - or .")
    return value


def _format(body: Mapping[str, Any], default: str = "JSON") -> str:
    fmt = string(body, "DocumentFormat") or default
    if fmt not in ssmdocs.FORMATS:
        raise validation(
            f"DocumentFormat {fmt!r} is not served: fleetrun's command documents are JSON or YAML."
        )
    return fmt


def _refuse_unsupported(body: Mapping[str, Any]) -> None:
    for member in UNSUPPORTED:
        if body.get(member):
            raise validation(
                f"{member} is not supported: fleetrun documents carry no attachments or "
                "dependencies; send the document without it (docs/ssm-compat.md)."
            )
    kind = string(body, "DocumentType") or "Command"
    if kind != "Command":
        raise validation(
            f"DocumentType {kind!r} is not served: fleetrun runs Command documents only."
        )


def _content(body: Mapping[str, Any], fmt: str) -> dict[str, Any]:
    text = string(body, "Content", required=True, min_length=1) or ""
    if len(text.encode()) > core.MAX_DOCUMENT_BYTES:
        raise SsmError(
            "MaxDocumentSizeExceeded",
            f"The document is larger than {core.MAX_DOCUMENT_BYTES // 1024} KB, the size "
            "limit of a document.",
        )
    try:
        return ssmdocs.to_fleetrun(ssmdocs.parse(text, fmt))
    except ssmdocs.SchemaVersionError as exc:
        raise SsmError("InvalidDocumentSchemaVersion", exc.message) from exc
    except ValidationError as exc:
        raise SsmError("InvalidDocumentContent", exc.message) from exc


def _tags(body: Mapping[str, Any]) -> dict[str, str]:
    return read_tags(structures(body, "Tags", max_items=1000))


def _frn(name: str) -> str:
    return access.frn("document", name)


@contextmanager
def _worded(
    missing: str = "InvalidDocument", conflict: str = "DocumentAlreadyExists"
) -> Iterator[None]:
    """The store's errors in SSM's codes."""
    try:
        yield
    except NotFoundError as exc:
        raise SsmError(missing, exc.message) from exc
    except ConflictError as exc:
        raise SsmError(conflict, exc.message) from exc
    except ValidationError as exc:
        raise SsmError("InvalidDocumentVersion", exc.message) from exc


# -- reading ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Found:
    doc: schemas.Document
    version_name: str | None
    tags: dict[str, str]
    created_at: Any


def read_version(
    session: Session, name: str, version: str | None, version_name: str | None
) -> Found:
    """A document at a version (by number, $LATEST/$DEFAULT, or VersionName)."""
    with _worded():
        store.resolve(session, name, None)  # InvalidDocument when it does not exist
    with _worded("InvalidDocumentVersion"):
        if version_name is not None:
            named = store.version_named(session, name, version_name)
            if (
                version not in (None, named)
                and store.read_document(session, name, version).version != named
            ):
                raise NotFoundError(f"Version {version} of {name} is not named {version_name!r}.")
            version = named
        doc = store.read_document(session, name, version)
    if doc.builtin:
        return Found(doc, None, {}, None)
    row = session.get(DocumentVersion, (name, int(doc.version)))
    whole = session.get(Document, name)
    return Found(
        doc,
        row.version_name if row else None,
        store.read_document_tags(session, name),
        whole.created_at if whole else doc.created_at,
    )


def description(found: Found) -> dict[str, Any]:
    """SSM's DocumentDescription."""
    doc = found.doc
    described: dict[str, Any] = {
        "Sha1": "",
        "Hash": doc.hash,
        "HashType": "Sha256",
        "Name": ssmnames.document_name(doc.name),
        "Owner": "Amazon" if doc.builtin else (doc.created_by or "Self"),
        "CreatedDate": ssm.epoch(found.created_at or doc.created_at),
        "Status": "Active",
        "DocumentVersion": doc.version,
        "Description": doc.description or "",
        "Parameters": ssmdocs.parameters(doc.content),
        "PlatformTypes": ssmdocs.platform_types(doc.content),
        "DocumentType": "Command",
        "SchemaVersion": str(doc.content.get("schemaVersion") or ssmdocs.SCHEMA_VERSION),
        "LatestVersion": doc.latest_version,
        "DefaultVersion": doc.default_version,
        "DocumentFormat": doc.format,
        "Tags": tag_list(found.tags),
    }
    if found.version_name:
        described["VersionName"] = found.version_name
    if described["CreatedDate"] is None:
        del described["CreatedDate"]
    return described


# -- operations -------------------------------------------------------------------------


async def create_document(call: Call) -> dict[str, Any]:
    body, caller = call.body, call.caller
    name = string(body, "Name", required=True) or ""
    if not NAME_RE.fullmatch(name):
        raise validation(
            f"Document name {name!r} is not valid: use 3-128 letters, digits, _ - or ."
        )
    if name.lower().startswith(RESERVED_PREFIXES):
        raise validation(
            f"Document name {name!r} is not valid: names starting with aws, amazon or amzn "
            "are reserved for the built-in documents."
        )
    _refuse_unsupported(body)
    fmt = _format(body)
    content = _content(body, fmt)
    version_name = _version_name(body)
    tags = _tags(body)
    caller.require("CreateDocument", _frn(name))

    def create(tx: Tx) -> Found:
        with _worded():
            row = store.create_document(
                tx.session,
                schemas.DocumentCreate(name=name, content=_text(content)),
                caller.principal,
            )
        row.format = fmt
        store.name_version(tx.session, row, version_name)
        if tags:
            store.write_document_tags(tx.session, name, tags)
        return read_version(tx.session, name, "1", None)

    return {"DocumentDescription": description(await call.state.db.write(create))}


def _text(content: dict[str, Any]) -> str:
    """fleetrun's content as the text its store reads (JSON)."""
    return json.dumps(content)


async def update_document(call: Call) -> dict[str, Any]:
    body, caller = call.body, call.caller
    name = _name(body)
    _refuse_unsupported(body)
    fmt = _format(body)
    content = _content(body, fmt)
    version = _version(body)
    version_name = _version_name(body)
    caller.require("UpdateDocument", _frn(name))

    def update(tx: Tx) -> Found:
        if name in core.BUILTIN_DOCUMENTS:
            raise SsmError(
                "InvalidDocumentOperation",
                f"{ssmnames.document_name(name)} is a built-in document and cannot be changed: "
                "create a document of your own.",
            )
        with _worded():
            latest = store.read_document(tx.session, name, "$LATEST").version
        if version not in (None, "$LATEST", latest):
            raise SsmError(
                "InvalidDocumentVersion",
                f"Only the latest version of {name} ({latest}) can be updated: give "
                "DocumentVersion $LATEST or leave it out.",
            )
        with _worded(conflict="DuplicateDocumentContent"):
            row = store.update_document(
                tx.session, name, schemas.DocumentUpdate(content=_text(content)), caller.principal
            )
        row.format = fmt
        with _worded(conflict="DuplicateDocumentVersionName"):
            store.name_version(tx.session, row, version_name)
        return read_version(tx.session, name, str(row.version), None)

    return {"DocumentDescription": description(await call.state.db.write(update))}


async def delete_document(call: Call) -> dict[str, Any]:
    body, caller = call.body, call.caller
    name = _name(body)
    version = _version(body)
    version_name = _version_name(body)
    boolean(body, "Force")  # no associations in fleetrun: nothing to force past
    caller.require("DeleteDocument", _frn(name))

    def delete(tx: Tx) -> None:
        if name in core.BUILTIN_DOCUMENTS:
            raise SsmError(
                "InvalidDocumentOperation",
                f"{ssmnames.document_name(name)} is a built-in document and cannot be deleted.",
            )
        if version is None and version_name is None:
            with _worded():
                store.delete_document(tx.session, name)
            return
        number = read_version(tx.session, name, version, version_name).doc.version
        with _worded(conflict="InvalidDocumentOperation"):
            store.delete_version(tx.session, name, number)

    await call.state.db.write(delete)
    return {}


async def get_document(call: Call) -> dict[str, Any]:
    body, caller = call.body, call.caller
    name = _name(body, arn=True)
    version, version_name = _version(body), _version_name(body)
    caller.require("GetDocument", _frn(name))
    found = await call.state.db.read(lambda s: read_version(s, name, version, version_name))
    fmt = _format(body, default=found.doc.format)
    doc = found.doc
    answer: dict[str, Any] = {
        "Name": ssmnames.document_name(doc.name),
        "DocumentVersion": doc.version,
        "Status": "Active",
        "Content": ssmdocs.render(doc.content, fmt),
        "DocumentType": "Command",
        "DocumentFormat": fmt,
    }
    created = ssm.epoch(doc.created_at)
    if created is not None:
        answer["CreatedDate"] = created
    if found.version_name:
        answer["VersionName"] = found.version_name
    return answer


async def describe_document(call: Call) -> dict[str, Any]:
    body, caller = call.body, call.caller
    name = _name(body, arn=True)
    version, version_name = _version(body), _version_name(body)
    caller.require("GetDocument", _frn(name))
    found = await call.state.db.read(lambda s: read_version(s, name, version, version_name))
    return {"Document": description(found)}


async def list_document_versions(call: Call) -> dict[str, Any]:
    body, caller = call.body, call.caller
    name = _name(body, arn=True)
    limit = max_results(body, default=50)
    after = _after(filters.cursor(body, call.operation))
    caller.require("GetDocument", _frn(name))

    def read(session: Session) -> tuple[list[dict[str, Any]], str | None]:
        if name in core.BUILTIN_DOCUMENTS:
            doc = store.read_document(session, name, None)
            return [_version_info(name, "1", None, None, True, doc.format)], None
        with _worded():
            doc_row, rows = store.read_versions(session, name, after=after, limit=limit + 1)
        page = rows[:limit]
        items = [
            _version_info(
                name,
                str(r.version),
                r.version_name,
                r.created_at,
                r.version == doc_row.default_version,
                r.format,
            )
            for r in page
        ]
        return items, (str(page[-1].version) if len(rows) > limit else None)

    items, next_cursor = await call.state.db.read(read)
    return filters.page("DocumentVersions", items, call.operation, next_cursor)


def _after(cursor: str | None) -> int:
    """The version a page of versions starts after (a token's cursor is a number)."""
    if cursor is None:
        return 0
    if not cursor.isdigit():
        raise filters.invalid_token()
    return int(cursor)


def _version_info(
    name: str, version: str, version_name: str | None, created: Any, default: bool, fmt: str
) -> dict[str, Any]:
    info: dict[str, Any] = {
        "Name": ssmnames.document_name(name),
        "DocumentVersion": version,
        "IsDefaultVersion": default,
        "DocumentFormat": fmt,
        "Status": "Active",
    }
    if version_name:
        info["VersionName"] = version_name
    if created is not None:
        info["CreatedDate"] = ssm.epoch(created)
    return info


async def update_document_default_version(call: Call) -> dict[str, Any]:
    body, caller = call.body, call.caller
    name = _name(body)
    version = _version(body)
    if version is None:
        raise validation(
            "1 validation error detected: Value null at 'documentVersion' failed to satisfy "
            "constraint: Member must not be null"
        )
    caller.require("UpdateDocumentDefaultVersion", _frn(name))

    def update(tx: Tx) -> dict[str, Any]:
        if name in core.BUILTIN_DOCUMENTS:
            raise SsmError(
                "InvalidDocument",
                f"{ssmnames.document_name(name)} is a built-in document with one version.",
            )
        with _worded():
            store.resolve(tx.session, name, None)
        with _worded("InvalidDocumentVersion"):
            doc = store.set_default_version(tx.session, name, version)
        found = read_version(tx.session, name, doc.version, None)
        answer = {"Name": ssmnames.document_name(name), "DefaultVersion": doc.version}
        if found.version_name:
            answer["DefaultVersionName"] = found.version_name
        return answer

    return {"Description": await call.state.db.write(update)}


OPERATIONS: dict[str, Operation] = {
    "CreateDocument": Operation("CreateDocument", create_document),
    "UpdateDocument": Operation("UpdateDocument", update_document),
    "DeleteDocument": Operation("DeleteDocument", delete_document),
    "GetDocument": Operation("GetDocument", get_document),
    "DescribeDocument": Operation("GetDocument", describe_document),
    "ListDocumentVersions": Operation("GetDocument", list_document_versions),
    "UpdateDocumentDefaultVersion": Operation(
        "UpdateDocumentDefaultVersion", update_document_default_version
    ),
}
