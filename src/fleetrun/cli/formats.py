"""The output formats of `--output` (json, yaml, text) and `--query`, over the JSON data
of a command's result: the same data in every format, shaped as aws-cli shapes it.

`text` is aws-cli's text format: tab-separated values, a line per record, the scalar
values of an object in the order of their keys (sorted), its nested objects and lists
on lines of their own that start with their key in capitals; a list of scalars is one
value a line. Values are never coloured, and tabs and line breaks in them are written
as escapes (`\\t`, `\\n`), so that a record stays on its line for `cut` and `awk`."""

from __future__ import annotations

import json
from typing import Any

from fleetrun.core.errors import ValidationError
from fleetrun.core.inputs import escape_unprintable


def query(data: Any, expression: str) -> Any:
    """What the JMESPath `expression` selects from `data` (checked when it was given)."""
    import jmespath
    from jmespath.exceptions import JMESPathError

    try:
        return jmespath.search(expression, data)
    except JMESPathError as exc:  # a type error met in this data (e.g. a number sorted as text)
        reason = " ".join(str(exc).split())
        raise ValidationError(
            f"The --query {expression!r} cannot be applied to this data ({reason}): fix it."
        ) from None


def to_json(data: Any) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def to_yaml(data: Any) -> str:
    """The same data as JSON, as YAML: keys in the order the JSON has them."""
    import yaml

    return str(yaml.safe_dump(data, sort_keys=False, allow_unicode=True, default_flow_style=False))


def to_text(data: Any, *, record: bool = False) -> str:
    """`data` as text lines. A list of scalars is a value a line (`[].name` for `while
    read`), unless it is one `record` of a stream: then it is that record's one line."""
    lines: list[str] = []
    if not record and isinstance(data, list) and not any(isinstance(v, dict | list) for v in data):
        lines.extend(_scalar(v) for v in data)
    else:
        _text(data, None, None, lines)
    return "".join(line + "\n" for line in lines)


def _scalar(value: Any) -> str:
    return escape_unprintable(str(value))  # None, True as aws-cli writes them


def _text(item: Any, identifier: str | None, keys: list[str] | None, lines: list[str]) -> None:
    if isinstance(item, dict):
        _text_dict(item, identifier, keys, lines)
    elif isinstance(item, list):
        _text_list(item, identifier, lines)
    else:
        lines.append(_scalar(item))


def _text_list(items: list[Any], identifier: str | None, lines: list[str]) -> None:
    if any(isinstance(v, dict) for v in items):
        # every record of the list has the same columns: the scalar keys of all of them
        keys = sorted(
            {k for v in items if isinstance(v, dict) for k, x in v.items() if _is_scalar(x)}
        )
        for value in items:
            _text(value, identifier, keys, lines)
        return
    scalars = [v for v in items if _is_scalar(v)]
    if scalars:
        if identifier is None:
            lines.append("\t".join(_scalar(v) for v in scalars))
        else:
            lines.extend(f"{identifier.upper()}\t{_scalar(v)}" for v in scalars)
    for value in items:
        if not _is_scalar(value):
            _text(value, identifier, None, lines)


def _text_dict(
    item: dict[str, Any], identifier: str | None, keys: list[str] | None, lines: list[str]
) -> None:
    if keys is None:
        keys = sorted(k for k, v in item.items() if _is_scalar(v))
    values = [_scalar(item.get(k, "")) for k in keys]
    if values:
        lines.append("\t".join([identifier.upper(), *values] if identifier else values))
    for key in sorted(set(item) - set(keys)):
        _text(item[key], key, None, lines)


def _is_scalar(value: Any) -> bool:
    return not isinstance(value, dict | list)


def to_rows(data: Any) -> tuple[list[str], list[list[Any]]]:
    """A --query's result as a table: a list of objects has a column per key (in the
    order first seen), a list of scalars one column, a scalar is its value alone."""
    if isinstance(data, list) and data and all(isinstance(v, dict) for v in data):
        columns: list[str] = []
        for row in data:
            columns += [k for k in row if k not in columns]
        return columns, [[_cell(row.get(k)) for k in columns] for row in data]
    if isinstance(data, list):
        return ["VALUE"], [[_cell(v)] for v in data]
    if isinstance(data, dict):
        return ["KEY", "VALUE"], [[k, _cell(v)] for k, v in data.items()]
    return [], [[_cell(data)]]


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return str(value)
