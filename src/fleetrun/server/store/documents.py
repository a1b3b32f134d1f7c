"""Documents: versions, the default version, and resolving NAME[:VERSION] for a command."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from fleetrun.core import documents as core
from fleetrun.core import signing, ssmnames
from fleetrun.core.errors import ConflictError, NotFoundError, ValidationError
from fleetrun.core.inputs import INT64_MAX, parse_int
from fleetrun.schemas import documents as schemas
from fleetrun.server.store.tables import Document, DocumentVersion, utcnow


@dataclass(frozen=True)
class Resolved:
    name: str
    version: str | None  # None for built-ins
    content: dict[str, Any]
    hash: str
    signatures: list[dict[str, str]] = field(default_factory=list)


def _check_name(name: str) -> None:
    if not core.NAME_RE.fullmatch(name):
        raise ValidationError(
            f"Document name {name!r} is not valid: use 3-128 letters, digits, _ - or ."
        )
    if name in core.BUILTIN_DOCUMENTS:
        raise ConflictError(f"{name} is a built-in document and cannot be changed.")
    builtin = ssmnames.fleetrun_document(name)
    if builtin != name:
        raise ConflictError(
            f"{name} is the SSM name of the built-in document {builtin}: a document of "
            "yours cannot have it, choose another name."
        )


def _format(text: str) -> str:
    return "JSON" if text.lstrip().startswith("{") else "YAML"


def create_document(
    session: Session, body: schemas.DocumentCreate, principal: str | None
) -> DocumentVersion:
    _check_name(body.name)
    content = core.validate(core.parse(body.content))
    if session.get(Document, body.name) is not None:
        raise ConflictError(
            f"Document {body.name} already exists: add a version with `fleetrun documents update`."
        )
    now = utcnow()
    session.add(
        Document(
            name=body.name, default_version=1, latest_version=1, created_at=now, updated_at=now
        )
    )
    session.flush()
    return _add_version(session, body.name, 1, content, _format(body.content), principal)


def update_document(
    session: Session, name: str, body: schemas.DocumentUpdate, principal: str | None
) -> DocumentVersion:
    _check_name(name)
    content = core.validate(core.parse(body.content))
    doc = _document(session, name, lock=True)
    latest = session.get(DocumentVersion, (name, doc.latest_version))
    digest = core.content_hash(content)
    if latest is not None and latest.hash == digest:
        raise ConflictError(
            f"The content is the same as version {doc.latest_version} of {name}; nothing was added."
        )
    doc.latest_version += 1
    doc.updated_at = utcnow()
    return _add_version(
        session, name, doc.latest_version, content, _format(body.content), principal
    )


def _add_version(
    session: Session,
    name: str,
    version: int,
    content: dict[str, Any],
    fmt: str,
    principal: str | None,
) -> DocumentVersion:
    row = DocumentVersion(
        name=name,
        version=version,
        content=content,
        format=fmt,
        hash=core.content_hash(content),
        description=content.get("description"),
        created_at=utcnow(),
        created_by=principal,
    )
    session.add(row)
    session.flush()
    return row


def _document(session: Session, name: str, *, lock: bool = False) -> Document:
    query = select(Document).where(Document.name == name)
    doc = session.execute(query.with_for_update() if lock else query).scalar_one_or_none()
    if doc is None:
        raise NotFoundError(f"No document {name!r} exists; see `fleetrun documents list`.")
    return doc


def _version_number(doc: Document, version: str | None) -> int:
    if version in (None, "", "$DEFAULT"):
        return doc.default_version
    if version == "$LATEST":
        return doc.latest_version
    try:
        number = parse_int(version, "Document version", 1, INT64_MAX)
    except ValidationError:
        raise ValidationError(
            f"Document version {version!r} is not valid: give a number, $LATEST or $DEFAULT."
        ) from None
    if number > doc.latest_version:
        raise NotFoundError(
            f"Document {doc.name} has no version {number}; its latest is {doc.latest_version}."
        )
    return number


def resolve(session: Session, name: str, version: str | None) -> Resolved:
    """The content a command runs: a built-in, or NAME at VERSION (default version)."""
    builtin = core.BUILTIN_DOCUMENTS.get(name)
    if builtin is not None:
        if version not in (None, "", "$DEFAULT", "$LATEST", "1"):
            raise NotFoundError(f"Built-in document {name} has only version 1.")
        return Resolved(name, None, builtin, core.content_hash(builtin))
    doc = _document(session, name)
    number = _version_number(doc, version)
    row = session.get(DocumentVersion, (name, number))
    if row is None:
        raise NotFoundError(f"Document {name} version {number} was deleted.")
    return Resolved(name, str(number), row.content, row.hash, list(row.signatures or []))


def read_document(session: Session, name: str, version: str | None) -> schemas.Document:
    builtin = core.BUILTIN_DOCUMENTS.get(name)
    if builtin is not None:
        resolve(session, name, version)
        return _schema(name, "1", "1", "1", True, "JSON", builtin, None, None)
    doc = _document(session, name)
    number = _version_number(doc, version)
    row = session.get(DocumentVersion, (name, number))
    if row is None:
        raise NotFoundError(f"Document {name} version {number} was deleted.")
    return _schema(
        name,
        str(number),
        str(doc.default_version),
        str(doc.latest_version),
        False,
        row.format,
        row.content,
        row,
        row.created_by,
    )


def _schema(
    name: str,
    version: str,
    default: str,
    latest: str,
    builtin: bool,
    fmt: str,
    content: dict[str, Any],
    row: DocumentVersion | None,
    created_by: str | None,
) -> schemas.Document:
    params = []
    for pname, spec in (content.get("parameters") or {}).items():
        allowed = spec.get("allowedValues")
        params.append(
            schemas.DocumentParameter(
                name=pname,
                type=spec.get("type", "String"),
                description=spec.get("description"),
                default=spec.get("default"),
                required="default" not in spec,
                allowed_values=[str(v) for v in allowed] if allowed else None,
            )
        )
    return schemas.Document(
        name=name,
        version=version,
        default_version=default,
        latest_version=latest,
        builtin=builtin,
        format=fmt,
        hash=core.content_hash(content),
        description=content.get("description"),
        parameters=params,
        steps=[s["name"] for s in content.get("mainSteps") or []],
        content=content,
        signatures=[
            schemas.SignatureInfo(publisher=s.get("publisher", ""), public_key=s["public_key"])
            for s in (row.signatures or [] if row else [])
        ],
        created_at=row.created_at if row else None,
        created_by=created_by,
    )


def read_documents(session: Session) -> list[schemas.DocumentSummary]:
    items = [
        schemas.DocumentSummary(
            name=name,
            description=content.get("description"),
            builtin=True,
            default_version="1",
            latest_version="1",
        )
        for name, content in core.BUILTIN_DOCUMENTS.items()
    ]
    docs = session.execute(select(Document).order_by(Document.name)).scalars().all()
    for doc in docs:
        default = session.get(DocumentVersion, (doc.name, doc.default_version))
        items.append(
            schemas.DocumentSummary(
                name=doc.name,
                description=default.description if default else None,
                default_version=str(doc.default_version),
                latest_version=str(doc.latest_version),
                created_at=doc.created_at,
                updated_at=doc.updated_at,
            )
        )
    return items


def set_default_version(session: Session, name: str, version: str) -> schemas.Document:
    _check_name(name)
    doc = _document(session, name, lock=True)
    if version in ("$DEFAULT", "$LATEST"):
        raise ValidationError("Set the default to a version number, e.g. 2.")
    number = _version_number(doc, version)
    if session.get(DocumentVersion, (name, number)) is None:
        raise NotFoundError(f"Document {name} version {number} was deleted.")
    doc.default_version = number
    doc.updated_at = utcnow()
    session.flush()
    return read_document(session, name, str(doc.default_version))


def add_signature(session: Session, name: str, body: schemas.DocumentSignature) -> schemas.Document:
    """Keep a publisher's signature of one version; it must verify against the content."""
    if name in core.BUILTIN_DOCUMENTS:
        raise ConflictError(
            f"{name} is a built-in document: built-ins are not signed; wrap the "
            "script in a document of your own and sign that."
        )
    doc = _document(session, name, lock=True)
    number = _version_number(doc, body.version)
    row = session.get(DocumentVersion, (name, number))
    if row is None:
        raise NotFoundError(f"Document {name} version {number} was deleted.")
    if not signing.valid(body.public_key, body.signature, row.content):
        raise ValidationError(
            f"The signature does not verify against {name} version {number} with that public "
            "key: sign the same version with the matching private key."
        )
    others = [s for s in row.signatures or [] if s.get("public_key") != body.public_key]
    entry = {
        "publisher": body.publisher,
        "public_key": body.public_key,
        "signature": body.signature,
    }
    row.signatures = [*others, entry]
    session.flush()
    return read_document(session, name, str(number))


def delete_document(session: Session, name: str) -> None:
    _check_name(name)
    doc = _document(session, name, lock=True)
    session.delete(doc)


# -- what SSM clients also keep: version names, tags, single versions ---------------


def read_versions(
    session: Session, name: str, *, after: int = 0, limit: int | None = None
) -> tuple[Document, list[DocumentVersion]]:
    """A document and its versions numbered above `after`, oldest first, at most `limit`
    of them (NotFoundError if there is no such document)."""
    doc = _document(session, name)
    query = (
        select(DocumentVersion)
        .where(DocumentVersion.name == name, DocumentVersion.version > after)
        .order_by(DocumentVersion.version)
    )
    if limit is not None:
        query = query.limit(limit)
    return doc, list(session.execute(query).scalars())


def version_named(session: Session, name: str, version_name: str) -> str:
    """The number of the version called `version_name`, or NotFoundError."""
    _document(session, name)
    number = session.execute(
        select(DocumentVersion.version).where(
            DocumentVersion.name == name, DocumentVersion.version_name == version_name
        )
    ).scalar_one_or_none()
    if number is None:
        raise NotFoundError(f"Document {name} has no version named {version_name!r}.")
    return str(number)


def name_version(session: Session, row: DocumentVersion, version_name: str | None) -> None:
    """Call a new version `version_name`: unique among the document's versions."""
    if version_name is None:
        return
    taken = session.execute(
        select(DocumentVersion.version).where(
            DocumentVersion.name == row.name,
            DocumentVersion.version_name == version_name,
            DocumentVersion.version != row.version,
        )
    ).first()
    if taken is not None:
        raise ConflictError(
            f"Version {taken[0]} of {row.name} is already named {version_name!r}: "
            "give this version another name."
        )
    row.version_name = version_name
    session.flush()


def delete_version(session: Session, name: str, version: str) -> None:
    """Delete one version; the default and the latest stay (commands resolve them)."""
    _check_name(name)
    doc = _document(session, name, lock=True)
    number = _version_number(doc, version)
    if number in (doc.default_version, doc.latest_version):
        which = "default" if number == doc.default_version else "latest"
        raise ConflictError(
            f"Version {number} is the {which} version of {name} and cannot be deleted alone: "
            "set another default first, or delete the whole document."
        )
    row = session.get(DocumentVersion, (name, number))
    if row is None:
        raise NotFoundError(f"Document {name} version {number} was deleted.")
    session.delete(row)
    session.flush()


def read_document_tags(session: Session, name: str) -> dict[str, str]:
    if name in core.BUILTIN_DOCUMENTS:
        return {}
    return {str(k): str(v) for k, v in (_document(session, name).tags or {}).items()}


def write_document_tags(session: Session, name: str, tags: dict[str, str]) -> None:
    """Replace a document's tags (built-ins carry none)."""
    _check_name(name)
    doc = _document(session, name, lock=True)
    doc.tags = dict(tags)
    session.flush()
