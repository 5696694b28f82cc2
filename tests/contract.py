"""Validation of responses against the contract kept in docs/contract/."""

from __future__ import annotations

import re
from datetime import date, datetime, time
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import yaml
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

CONTRACT = Path(__file__).parent.parent / "docs" / "contract" / "course_session.openapi.yaml"
#: RFC 3339 in whole seconds; the offset ``Z`` or ``±HH:MM``, never ``±00:00`` (written ``Z``).
DATETIME = re.compile(
    r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(Z|[+-](?!00:00)([01]\d|2[0-3]):[0-5]\d)$"
)

formats = jsonschema.FormatChecker(formats=())


def _is_datetime(value: object) -> bool:
    """Written as SEMANTICS.md section 7 says (``DATETIME``), and a real date and time."""
    return not isinstance(value, str) or (
        bool(DATETIME.match(value)) and datetime.fromisoformat(value) is not None
    )


def _is_date(value: object) -> bool:
    return not isinstance(value, str) or bool(date.fromisoformat(value)) and len(value) == 10


def _is_time(value: object) -> bool:
    return not isinstance(value, str) or (len(value) == 8 and time.fromisoformat(value) is not None)


def _is_uri(value: object) -> bool:
    if not isinstance(value, str):
        return True
    parts = urlsplit(value)
    return bool(parts.scheme and parts.netloc)


# Registered by call rather than as decorators: jsonschema ships no types, and a decorator
# typed Any would make each checker untyped.
formats.checks("date-time", raises=ValueError)(_is_datetime)
formats.checks("date", raises=ValueError)(_is_date)
formats.checks("time", raises=ValueError)(_is_time)
formats.checks("uri")(_is_uri)


@cache
def contract() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(CONTRACT.read_text())
    return document


def without_required(node: Any) -> Any:
    """The schema without ``required`` lists: what a ``fields`` selection answers."""
    if isinstance(node, dict):
        return {key: without_required(value) for key, value in node.items() if key != "required"}
    if isinstance(node, list):
        return [without_required(item) for item in node]
    return node


def _tighten(node: Any) -> Any:
    """Forbid unknown properties in every object schema."""
    if isinstance(node, dict):
        out = {key: _tighten(value) for key, value in node.items()}
        if "properties" in out and out.get("type") == "object":
            out.setdefault("additionalProperties", False)
        return out
    if isinstance(node, list):
        return [_tighten(item) for item in node]
    return node


@cache
def validator(schema_name: str, sparse: bool) -> jsonschema.Draft202012Validator:
    """A validator for ``#/components/schemas/<schema_name>`` of the contract."""
    document = _tighten(contract())
    if sparse:
        document = without_required(document)
    resource = Resource.from_contents(document, default_specification=DRAFT202012)
    registry: Registry[Any] = Registry().with_resource("urn:contract", resource)
    schema = {"$ref": f"urn:contract#/components/schemas/{schema_name}"}
    return jsonschema.Draft202012Validator(schema, registry=registry, format_checker=formats)


def validate(schema_name: str, body: Any, *, sparse: bool = False) -> None:
    """Raise ``jsonschema.ValidationError`` when ``body`` breaks the contract."""
    validator(schema_name, sparse).validate(body)
