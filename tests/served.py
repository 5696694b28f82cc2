"""Validation against the OpenAPI document the server itself serves, and XML parse-back."""

from __future__ import annotations

import json
import re
from functools import cache
from typing import Any
from xml.etree import ElementTree

import jsonschema
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from tests.contract import formats, without_required


@cache
def served_document(served: bytes) -> dict[str, Any]:
    """The OpenAPI document a server answered at /openapi.json (``served``, its bytes)."""
    document: dict[str, Any] = json.loads(served)
    return document


@cache
def _registry(served: bytes, sparse: bool) -> Registry[Any]:
    document = served_document(served)
    if sparse:
        document = without_required(document)
    resource = Resource.from_contents(document, default_specification=DRAFT202012)
    registry: Registry[Any] = Registry().with_resource("urn:served", resource)
    return registry


def _operation_pointer(document: dict[str, Any], path: str, status: int) -> str | None:
    """The JSON pointer of the response schema for ``path`` and ``status``, if documented."""
    clean = "/" + "/".join(part for part in path.split("/") if part)
    for template, item in document["paths"].items():
        pattern = "^" + re.sub(r"\\\{[^/]+\\\}", "[^/]+", re.escape(template)) + "$"
        if not re.match(pattern, clean):
            continue
        responses = item["get"]["responses"]
        answer = responses.get(str(status))
        if answer is None:
            raise AssertionError(f"{path}: status {status} is not documented")
        if "$ref" in answer:
            name = answer["$ref"].rsplit("/", 1)[1]
            return f"#/components/responses/{name}/content/application~1json/schema"
        escaped = template.replace("~", "~0").replace("/", "~1")
        return f"#/paths/{escaped}/get/responses/{status}/content/application~1json/schema"
    return None


def validate_served(served: bytes, path: str, status: int, body: Any, *, sparse: bool) -> None:
    """Validate ``body`` against the schema for that path and status of ``served``, the
    bytes of the server's /openapi.json."""
    document = served_document(served)
    pointer = _operation_pointer(document, path, status)
    if pointer is None:
        assert status >= 400, f"{path} answered {status} but is not in /openapi.json"
        pointer = "#/components/schemas/Error"
    validator = jsonschema.Draft202012Validator(
        {"$ref": f"urn:served{pointer}"},
        registry=_registry(served, sparse),
        format_checker=formats,
    )
    validator.validate(body)


def parse_xml(content: bytes) -> Any:
    """XML in Django REST framework's shape back to plain values (all text)."""
    assert content.startswith(b'<?xml version="1.0" encoding="utf-8"?>\n<root>'), content[:80]
    root = ElementTree.fromstring(content)
    assert root.tag == "root"
    return _element(root)


def _element(element: ElementTree.Element) -> Any:
    children = list(element)
    if not children:
        return element.text or ""
    if all(child.tag == "list-item" for child in children):
        return [_element(child) for child in children]
    return {child.tag: _element(child) for child in children}


def as_xml_values(data: Any, links: tuple[str, str] = ("", "")) -> Any:
    """What ``data`` reads as once written as XML and parsed back.

    ``links`` replaces a query fragment in strings: a page link of the JSON twin says
    ``format=json`` where the XML said ``format=xml``.
    """
    if isinstance(data, dict):
        return {k: as_xml_values(v, links) for k, v in data.items()} if data else ""
    if isinstance(data, list):
        return [as_xml_values(v, links) for v in data] if data else ""
    if data is None:
        return ""
    if data is True:
        return "True"
    if data is False:
        return "False"
    if isinstance(data, str):
        readable = "".join(c if xml_char(c) else "\ufffd" for c in data)
        return readable.replace(*links) if links[0] else readable
    return str(data)


def xml_char(character: str) -> bool:
    """Whether XML 1.0 can carry ``character`` (its ``Char`` production); the server
    writes any other as U+FFFD."""
    code = ord(character)
    return (
        code in (0x9, 0xA, 0xD)
        or 0x20 <= code <= 0xD7FF
        or 0xE000 <= code <= 0xFFFD
        or 0x10000 <= code <= 0x10FFFF
    )
