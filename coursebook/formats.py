"""Output formats: JSON and the XML of Django REST framework, and content negotiation.

``?format=json|xml`` decides; without it the ``Accept`` header does (SEMANTICS.md
section 7). The XML writer produces exactly what DRF's ``XMLRenderer`` writes:
``<root>``, one element per key, ``<list-item>`` for list elements, empty elements
for null and empty lists, ``True``/``False`` for booleans.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from coursebook.errors import ApiError, invalid


@dataclass(frozen=True, slots=True)
class Format:
    """An output format: its name, Content-Type and encoder."""

    name: str
    content_type: bytes
    encode: Callable[[Any], bytes]


def encode_json(data: Any) -> bytes:
    return orjson.dumps(data)


# XML 1.0 cannot carry most control characters; they become U+FFFD.
_INVALID_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
_NEEDS_WORK = re.compile("[&<>\r\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
# A raw carriage return would parse back as a line feed (XML normalizes line ends):
# written as a character reference, the XML reads back equal to its JSON twin.
_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", "\r": "&#13;"})


def _text(text: str) -> str:
    if _NEEDS_WORK.search(text) is None:
        return text
    return _INVALID_XML.sub("\ufffd", text).translate(_ESCAPES)


class _Tags(dict[str, tuple[str, str]]):
    """Opening and closing tags by key, made once per key name."""

    def __missing__(self, key: str) -> tuple[str, str]:
        tags = self[key] = (f"<{key}>", f"</{key}>")
        return tags


_TAGS = _Tags()


def _write(parts: list[str], data: Any, shared: dict[int, Any]) -> None:
    """Append the XML of ``data`` to ``parts``.

    Rendering shares an object that appears several times in a response (a list
    page's venues); ``shared`` remembers where each dict's XML was written, and the
    second time copies it instead of writing it again.
    """
    append = parts.append
    if isinstance(data, dict):
        seen = shared.get(id(data))
        if seen is not None:
            if isinstance(seen, tuple):  # the second time: join the first copy once
                seen = shared[id(data)] = "".join(parts[seen[0] : seen[1]])
            append(seen)
            return
        start = len(parts)
        for key, value in data.items():
            opening, closing = _TAGS[key]
            kind = type(value)
            if kind is str:
                append(opening)
                append(_text(value))
                append(closing)
            elif value is None:
                append(opening)
                append(closing)
            elif kind is int or kind is float:
                append(opening)
                append(str(value))
                append(closing)
            elif kind is bool:
                append(opening)
                append("True" if value else "False")
                append(closing)
            else:
                append(opening)
                _write(parts, value, shared)
                append(closing)
        shared[id(data)] = (start, len(parts))
    elif isinstance(data, list | tuple):
        for item in data:
            append("<list-item>")
            _write(parts, item, shared)
            append("</list-item>")
    elif data is True:
        append("True")
    elif data is False:
        append("False")
    elif isinstance(data, str):
        append(_text(data))
    elif data is not None:
        append(_text(str(data)))


def encode_xml(data: Any) -> bytes:
    """``data`` as DRF's XMLRenderer writes it."""
    parts = ['<?xml version="1.0" encoding="utf-8"?>\n<root>']
    # Every dict stays referenced by ``data`` while writing, so ids are not reused.
    _write(parts, data, {})
    parts.append("</root>")
    return "".join(parts).encode("utf-8")


JSON = Format("json", b"application/json", encode_json)
XML = Format("xml", b"application/xml; charset=utf-8", encode_xml)
FORMATS = {JSON.name: JSON, XML.name: XML}

#: Media ranges of an ``Accept`` header that each format satisfies. As in Django REST
#: framework, only the two media types offered match (``text/xml`` asks for another).
_ACCEPTED_BY = {
    JSON: ("application/json", "application/*", "*/*"),
    XML: ("application/xml", "application/*", "*/*"),
}


def _media_ranges(accept: str) -> list[tuple[str, float, int]]:
    """(media range, quality, specificity) for each entry of an ``Accept`` header."""
    ranges = []
    for entry in accept.split(","):
        media, *params = (part.strip() for part in entry.split(";"))
        if not media:
            continue
        quality = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = min(max(float(value), 0.0), 1.0)
                except ValueError:
                    quality = 0.0
        media = media.lower()
        specificity = 0 if media == "*/*" else 1 if media.endswith("/*") else 2
        ranges.append((media, quality, specificity))
    return ranges


def _quality(fmt: Format, ranges: list[tuple[str, float, int]]) -> float:
    """The quality the most specific matching media range gives ``fmt``."""
    matching = [(spec, q) for media, q, spec in ranges if media in _ACCEPTED_BY[fmt]]
    return max(matching)[1] if matching else 0.0


def negotiate(format_param: str | None, accept: str | None) -> Format:
    """The output format of a request; 400 for an unknown ``format``, 406 when none fits."""
    if format_param is not None:
        fmt = FORMATS.get(format_param)
        if fmt is None:
            raise invalid("format", f"'{format_param}' is not a valid format. Valid: json, xml.")
        return fmt
    if not accept or not accept.strip():
        return JSON
    ranges = _media_ranges(accept)
    best = max((JSON, XML), key=lambda fmt: _quality(fmt, ranges))
    if _quality(best, ranges) <= 0.0:
        raise ApiError(
            406,
            "not_acceptable",
            "Could not satisfy the request Accept header. Available: application/json, "
            "application/xml.",
        )
    return best
