"""coursebook.formats on its own: content negotiation and DRF's XML shape, no server."""

from __future__ import annotations

from datetime import date
from typing import Any
from xml.etree import ElementTree

import orjson
import pytest

from coursebook.errors import ApiError
from coursebook.formats import JSON, XML, Format, encode_json, encode_xml, negotiate

PROLOG = b'<?xml version="1.0" encoding="utf-8"?>\n'


def xml_body(data: Any) -> str:
    """``encode_xml(data)`` without its prolog and ``<root>``, as text."""
    encoded = encode_xml(data)
    assert encoded.startswith(PROLOG + b"<root>") and encoded.endswith(b"</root>")
    return encoded[len(PROLOG) + len(b"<root>") : -len(b"</root>")].decode("utf-8")


# -- negotiate --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "accept", "expected"),
    [
        ("json", None, JSON),
        ("xml", None, XML),
        ("json", "application/xml", JSON),
        ("xml", "application/json", XML),
        ("xml", "text/html", XML),
        ("json", "application/json;q=0", JSON),
    ],
)
def test_the_format_parameter_decides_whatever_the_accept(
    fmt: str, accept: str | None, expected: Format
) -> None:
    assert negotiate(fmt, accept) is expected


@pytest.mark.parametrize("value", ["yaml", "", "JSON", "xml ", "json,xml"])
def test_an_unknown_format_is_a_400_naming_the_valid_ones(value: str) -> None:
    with pytest.raises(ApiError) as raised:
        negotiate(value, "application/json")
    error = raised.value
    assert (error.status, error.code) == (400, "parameter_invalid")
    assert error.field_errors == {"format": [f"'{value}' is not a valid format. Valid: json, xml."]}


@pytest.mark.parametrize("accept", [None, "", "   "])
def test_no_accept_is_json(accept: str | None) -> None:
    assert negotiate(None, accept) is JSON


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        ("application/json", JSON),
        ("application/xml", XML),
        ("APPLICATION/XML", XML),
        ("*/*", JSON),
        ("application/*", JSON),
        ("text/html, */*;q=0.1", JSON),
        ("application/xml;q=0.5, application/json", JSON),
        ("application/json;q=0.1, application/xml", XML),
        ("application/json ; q=0.4 , application/xml ; q=0.6", XML),
        ("application/xml;q=0.5, application/json;q=0.5", JSON),
        # The most specific range that matches gives a format its quality.
        ("application/json;q=0, */*", XML),
        ("application/xml;q=0, */*", JSON),
        ("application/json;q=0.2, application/*;q=0.9, application/xml;q=0.5", XML),
        # Qualities outside 0..1 are clamped; one that is not a number is 0.
        ("application/json;q=7, application/xml;q=0.9", JSON),
        ("application/xml;q=abc, application/json;q=0.1", JSON),
        (",, application/xml", XML),
    ],
)
def test_accept_chooses_by_quality(accept: str, expected: Format) -> None:
    assert negotiate(None, accept) is expected


@pytest.mark.parametrize(
    "accept",
    [
        "text/html",
        # Only the two media types offered match, as in Django REST framework.
        "text/xml",
        "text/*",
        "image/png, text/plain",
        "application/xml;q=0",
        "application/json;q=0, application/xml;q=0",
        "*/*;q=0",
        "application/xml;q=-1",
        "application/json;q=x",
    ],
)
def test_an_accept_that_allows_neither_is_406(accept: str) -> None:
    with pytest.raises(ApiError) as raised:
        negotiate(None, accept)
    error = raised.value
    assert (error.status, error.code) == (406, "not_acceptable")
    assert error.message is not None
    assert "application/json" in error.message and "application/xml" in error.message


def test_formats_name_their_content_types() -> None:
    assert (JSON.name, JSON.content_type) == ("json", b"application/json")
    assert (XML.name, XML.content_type) == ("xml", b"application/xml; charset=utf-8")
    assert JSON.encode is encode_json and XML.encode is encode_xml
    data = {"id": 1, "name": "é", "none": None, "list": [True, 1.5]}
    assert orjson.loads(encode_json(data)) == data


# -- the XML encoder ----------------------------------------------------------------------


def test_a_document_is_a_prolog_and_one_root() -> None:
    assert encode_xml({}) == PROLOG + b"<root></root>"
    assert encode_xml({"status": "ok"}) == PROLOG + b"<root><status>ok</status></root>"


def test_keys_become_elements_in_their_order() -> None:
    assert xml_body({"b": 1, "a": {"d": "x", "c": "y"}}) == "<b>1</b><a><d>x</d><c>y</c></a>"


def test_list_items_are_list_item_elements() -> None:
    assert (
        xml_body({"ids": [1, 2]}) == "<ids><list-item>1</list-item><list-item>2</list-item></ids>"
    )
    assert xml_body([{"a": 1}, {"a": 2}]) == (
        "<list-item><a>1</a></list-item><list-item><a>2</a></list-item>"
    )
    assert xml_body({"t": (1,)}) == "<t><list-item>1</list-item></t>"
    assert xml_body({"nested": [[1], []]}) == (
        "<nested><list-item><list-item>1</list-item></list-item><list-item></list-item></nested>"
    )


def test_null_and_empty_collections_are_empty_elements() -> None:
    assert xml_body({"a": None, "b": [], "c": {}, "d": ""}) == "<a></a><b></b><c></c><d></d>"
    assert xml_body({"l": [None]}) == "<l><list-item></list-item></l>"


def test_booleans_are_true_and_false() -> None:
    assert xml_body({"yes": True, "no": False}) == "<yes>True</yes><no>False</no>"
    assert xml_body({"l": [True, False]}) == (
        "<l><list-item>True</list-item><list-item>False</list-item></l>"
    )


def test_numbers_and_other_values_are_their_str() -> None:
    assert xml_body({"i": 0, "f": 1.5, "big": 2**70, "day": date(2025, 1, 2)}) == (
        f"<i>0</i><f>1.5</f><big>{2**70}</big><day>2025-01-02</day>"
    )


def test_markup_characters_are_escaped() -> None:
    name = '<b>&"Fun"\'</b>'
    assert xml_body({"name": name}) == '<name>&lt;b&gt;&amp;"Fun"\'&lt;/b&gt;</name>'
    assert xml_body({"l": ["a&b"]}) == "<l><list-item>a&amp;b</list-item></l>"
    assert ElementTree.fromstring(encode_xml({"name": name})).findtext("name") == name


def test_characters_xml_cannot_carry_become_the_replacement_character() -> None:
    text = "a\x00b\x08c\x0b\x0c\x1fd\ufffe\uffff"
    assert xml_body({"t": text}) == "<t>a\ufffdb\ufffdc\ufffd\ufffd\ufffdd\ufffd\ufffd</t>"
    assert xml_body({"t": "<\x01>"}) == "<t>&lt;\ufffd&gt;</t>"
    assert xml_body(["\x02"]) == "<list-item>\ufffd</list-item>"
    # Tab and line feed are kept; a carriage return is a character reference, so that
    # a parser (which turns a raw one into a line feed) reads it back as it was.
    assert xml_body({"t": "a\tb\nc\rd"}) == "<t>a\tb\nc&#13;d</t>"
    assert ElementTree.fromstring(encode_xml({"t": "c\r\nd"})).findtext("t") == "c\r\nd"
    parsed = ElementTree.fromstring(encode_xml({"t": text}))
    assert parsed.findtext("t") == "a\ufffdb\ufffdc\ufffd\ufffd\ufffdd\ufffd\ufffd"


def test_text_is_utf_8() -> None:
    assert encode_xml({"name": "Café ☕"}).endswith("<name>Café ☕</name></root>".encode())


class CountedDict(dict[str, Any]):
    """A dict that counts how often its items are read."""

    reads = 0

    def items(self) -> Any:
        self.reads += 1
        return super().items()


def test_an_object_shared_in_the_tree_is_written_once_and_copied() -> None:
    venue = CountedDict(id=7, name="Hall & Co", rooms=[{"id": 1}, {"id": 2}], none=None)
    session = {"venue": venue, "other": {"venue": venue}}
    shared = {"results": [{"id": n, "venue": venue, "session": session} for n in range(4)]}
    unshared = orjson.loads(orjson.dumps(shared))
    assert unshared["results"][0]["venue"] is not unshared["results"][1]["venue"]
    assert encode_xml(shared) == encode_xml(unshared)
    assert venue.reads == 1
    one_venue = (
        "<id>7</id><name>Hall &amp; Co</name>"
        "<rooms><list-item><id>1</id></list-item><list-item><id>2</id></list-item></rooms>"
        "<none></none>"
    )
    assert xml_body(shared).count(f"<venue>{one_venue}</venue>") == 4 * 3


def test_equal_but_distinct_objects_are_each_written() -> None:
    first, second = {"a": 1}, {"a": 2}
    assert xml_body([first, second, first]) == (
        "<list-item><a>1</a></list-item><list-item><a>2</a></list-item>"
        "<list-item><a>1</a></list-item>"
    )
