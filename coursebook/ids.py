"""Ids as the API reads them: one converter for path ids and id filters.

In the spirit of starlette's ``IntegerConvertor``: ``regex`` says what a route's
path segment may match, ``convert`` turns the text into the value or raises
``ValueError``. An id is ASCII digits naming 1 to ``MAX_ID`` (a 64-bit primary key).
"""

from __future__ import annotations

from coursebook.models import MAX_ID

#: The longest decimal an integer header may have (a signed 64-bit value).
MAX_DIGITS = 19


class IdConvertor:
    """A positive 64-bit id written in ASCII digits."""

    #: What a path segment must look like to reach the route at all; anything else
    #: there is a 404 from ``convert`` (after the method is checked), as for an
    #: id that names nothing.
    regex = "[^/]+"
    schema = {"type": "integer", "minimum": 1, "maximum": MAX_ID}

    def convert(self, value: str) -> int:
        """The id ``value`` names; ``ValueError`` when it is not one."""
        if not value.isascii() or not value.isdigit() or len(value) > MAX_DIGITS:
            raise ValueError(f"'{value}' is not an id")
        number = int(value)
        if not 0 < number <= MAX_ID:
            raise ValueError(f"'{value}' is out of range")
        return number

    def to_string(self, value: int) -> str:
        return str(value)


ID = IdConvertor()


def parse_integer(value: str) -> int:
    """A signed integer of at most ``MAX_DIGITS`` digits (a header's); ``ValueError`` else."""
    text = value.strip()
    digits = text.removeprefix("-")
    if not text.isascii() or not digits.isdigit() or len(digits) > MAX_DIGITS:
        raise ValueError(f"'{value}' is not an integer")
    return int(text)
