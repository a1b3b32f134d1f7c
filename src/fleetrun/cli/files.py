"""Files the CLI reads for its commands (patterns, rule inputs, policies), with one
sentence for whatever is wrong with them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from fleetrun.core.errors import ValidationError


def read_json_file(path: Path, what: str) -> Any:
    """The JSON (or, for .yaml/.yml files, YAML) value a file holds, or one sentence why not."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValidationError(
            f"Cannot read the {what} file {path}: {(exc.strerror or str(exc)).lower()}."
        ) from None
    except UnicodeDecodeError:
        raise ValidationError(f"The {what} file {path} is not UTF-8 text.") from None
    if path.suffix.lower() in (".yaml", ".yml"):
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}" if mark is not None else ""
            raise ValidationError(f"The {what} file {path} is not valid YAML{where}.") from None
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError):
            raise ValidationError(
                f"The {what} file {path} holds a value JSON cannot carry (a date or a time?): "
                "quote it."
            ) from None
        return value
    try:
        return json.loads(text)
    except RecursionError:
        raise ValidationError(f"The {what} file {path} nests too deeply to read.") from None
    except json.JSONDecodeError as exc:
        raise ValidationError(
            f"The {what} file {path} is not valid JSON at line {exc.lineno}, column {exc.colno} "
            f"({exc.msg})."
        ) from None
