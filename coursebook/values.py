"""Values as the API writes and reads them: date-times, amounts, id lists, choices."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import NamedTuple
from zoneinfo import ZoneInfo

from coursebook.errors import invalid
from coursebook.ids import ID

logger = logging.getLogger("coursebook")

#: The most ids one id filter may name.
MAX_IDS = 500


class _Zones(dict[str, tzinfo]):
    """IANA zone names to their ``ZoneInfo``, each looked up once: ``ZONES[name]``.

    A name the zone database does not know is UTC (and a warning, once): a venue's
    misspelt zone must not make its sessions unreadable.
    """

    #: Names come from the database, not from requests; this only bounds a pathological
    #: table's worth of distinct names.
    limit = 4096

    def __missing__(self, name: str) -> tzinfo:
        if len(self) >= self.limit:
            self.clear()
        try:
            found: tzinfo = ZoneInfo(name)
        except (KeyError, ValueError, OSError):  # not found, not a zone key, not a zone file
            logger.warning("Unknown time zone %r: its date-times are written in UTC", name)
            found = UTC
        self[name] = found
        return found


ZONES = _Zones()


#: Date-times as written, by value and zone (``local_datetime``): the same session's
#: are written on every read of it and of whatever expands it. Only instants are keys
#: (naive UTC, or aware in UTC): aware values of one zone compare by wall time, and
#: two instants an hour apart in the autumn would be one key. Emptied when full.
_WRITTEN: dict[tuple[datetime, str], str] = {}
WRITTEN_KEPT = 16384


def local_datetime(value: datetime, zone: str) -> str:
    """``value`` as TeamUp writes date-times (``write_datetime``), remembered."""
    if value.tzinfo is not None and value.tzinfo is not UTC:
        return write_datetime(value, zone)
    key = (value, zone)
    text = _WRITTEN.get(key)
    if text is None:
        text = write_datetime(value, zone)
        if len(_WRITTEN) >= WRITTEN_KEPT:
            _WRITTEN.clear()
        _WRITTEN[key] = text
    return text


def write_datetime(value: datetime, zone: str) -> str:
    """``value`` as TeamUp writes date-times: RFC 3339 in whole seconds, at the offset the
    IANA zone ``zone`` has at that instant, ``Z`` when the offset is zero
    (``2026-03-30T06:30:00+01:00``, ``2026-01-29T06:30:00Z``).

    A naive ``value`` (SQLite stores no offset) is UTC. Fractions of a second are
    dropped, not rounded, so a date-time never moves into the next second (or minute, or
    day). Where the local time cannot be written, the date-time is written in UTC: an
    offset with seconds (local mean time, before a zone adopted standard time) is not
    RFC 3339, and near year 1 or 9999 the local time may not exist.

    The local time is written without its zone and the offset appended from
    ``_OFFSETS``: ``isoformat`` of an aware date-time asks the zone for the offset
    again and formats it, twice the time of the rest (a full expansion writes dozens).
    """
    tz = ZONES[zone]
    try:
        if value.tzinfo is None:
            # ``combine`` attaches the zone much faster than ``replace(tzinfo=...)``.
            aware = tz.fromutc(datetime.combine(value, value.time(), tz))
        else:
            aware = value.astimezone(tz)
        offset = aware.utcoffset() or ZERO  # a zone always has one
        local = value + offset if value.tzinfo is None else aware.replace(tzinfo=None)
    except OverflowError:  # within hours of year 1 or 9999, the local time does not exist
        return write_datetime(value, "UTC")
    suffix = _OFFSETS.get(offset)
    if suffix is None:
        suffix = _OFFSETS[offset] = _offset_text(offset)
    if suffix:
        return local.isoformat("T", "seconds") + suffix
    return write_datetime(value, "UTC")


ZERO = timedelta(0)
#: UTC offsets as RFC 3339 writes them (``+01:00``, ``Z``), "" for one it cannot (an
#: offset with seconds): a zone database has a few hundred distinct offsets in all.
_OFFSETS: dict[timedelta, str] = {}


def _offset_text(offset: timedelta) -> str:
    """``offset`` as the end of an RFC 3339 date-time; "" when it is not whole minutes."""
    seconds = offset.days * 86400 + offset.seconds
    if offset.microseconds or seconds % 60:
        return ""
    if seconds == 0:
        return "Z"
    sign = "-" if seconds < 0 else "+"
    hours, minutes = divmod(abs(seconds) // 60, 60)
    return f"{sign}{hours:02d}:{minutes:02d}"


def iso_date(value: date | None) -> str | None:
    return None if value is None else value.isoformat()


def minor_to_amount(minor: int) -> str:
    """``4500`` -> ``"45.00"``."""
    sign = "-" if minor < 0 else ""
    whole, cents = divmod(abs(minor), 100)
    return f"{sign}{whole}.{cents:02d}"


def split_items(raw: str) -> list[str]:
    """The non-empty items of a comma-separated value, stripped (``"1,,2 "`` -> 1 and 2)."""
    return [item for item in (part.strip() for part in raw.split(",")) if item]


def parse_ids(name: str, items: list[str]) -> list[int]:
    """``["1", "2"]`` -> ``[1, 2]``; 400 naming ``name`` for an item that is no id."""
    if len(items) > MAX_IDS:
        raise invalid(name, f"At most {MAX_IDS} ids.")
    ids = []
    for item in items:
        try:
            ids.append(ID.convert(item))
        except ValueError:
            raise invalid(
                name, f"'{item}' is not a valid id: give comma-separated integers."
            ) from None
    return ids


def choices(*values: str) -> Callable[[str, str], tuple[str, ...] | None]:
    """A parser of comma-separated items among ``values`` (sorted, once each); None when
    the text names none."""

    def parse(name: str, raw: str) -> tuple[str, ...] | None:
        items = split_items(raw)
        for item in items:
            if item not in values:
                raise invalid(name, f"'{item}' is not valid. Valid: {', '.join(values)}.")
        return tuple(sorted(set(items))) or None

    return parse


#: An RFC 3339 date or date-time, upper-cased; seconds and the offset may be left out.
_DATE_TIME = re.compile(
    r"(?P<date>\d{4}-\d{2}-\d{2})"
    r"(?:[T ](?P<time>\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?)(?P<offset>Z|[+-]\d{2}(?::?\d{2})?)?)?",
    re.ASCII,
)
#: A date-time whose offset's ``+`` became a space when the query string was decoded.
_PLUS_AS_SPACE = re.compile(
    r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)? \d{2}(?::?\d{2})?", re.ASCII
)
_FRACTION = re.compile(r"(\.\d{6})\d+", re.ASCII)


class Bound(NamedTuple):
    """A date-time filter's value: rows compare with ``at``, and may equal it when
    ``inclusive``.

    ``at`` is an instant (aware, UTC) or, for a filter on local times, a wall-clock time
    (naive). An upper bound written as a plain date is the next midnight, exclusive, so
    that the whole day is in.
    """

    at: datetime
    inclusive: bool = True


def parse_bound(name: str, raw: str, *, upper: bool, local: bool = False) -> Bound:
    """A date-time filter's value, from RFC 3339 text.

    Seconds may be left out (``2026-01-02T00:00+00:00``, as TeamUp's clients write).
    An instant without an offset is UTC. A ``local`` time is its wall-clock part: an
    offset is allowed and disregarded, so that a date-time TeamUp wrote in a venue's
    offset can be sent back as it is. A plain date is its midnight, and as an ``upper``
    bound the whole day. An offset whose ``+`` arrived as a space (it was not
    percent-encoded) is named as such: nothing else would tell the client.
    """
    text = raw.strip().upper()
    found = _DATE_TIME.fullmatch(text)
    if found is None:
        if _PLUS_AS_SPACE.fullmatch(text):
            raise invalid(
                name,
                f"'{raw}' has a space where its offset's '+' belongs: in a query string "
                "'+' means a space, so percent-encode it as %2B (2026-01-02T00:00%2B00:00).",
            )
        example = "2026-04-30T06:30:00" if local else "2026-01-05T09:00:00Z"
        raise invalid(name, f"'{raw}' is not a date-time. Use RFC 3339, e.g. {example}.")
    time = _FRACTION.sub(r"\1", found["time"] or "00:00")
    try:
        value = datetime.fromisoformat(f"{found['date']}T{time}{found['offset'] or ''}")
    except ValueError:
        raise invalid(name, f"'{raw}' is not a valid date-time.") from None
    value = value.replace(tzinfo=None) if local else _in_utc(value)
    if upper and found["time"] is None:
        try:
            return Bound(value + timedelta(days=1), inclusive=False)
        except OverflowError:  # the last day there is: all of it is before its end
            return Bound(value.replace(hour=23, minute=59, second=59, microsecond=999999))
    return Bound(value)


def _in_utc(value: datetime) -> datetime:
    """``value`` in UTC (UTC already when naive); past year 1 or 9999, the edge of time."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:
        edge = datetime.max if value.year > 1 else datetime.min
        return edge.replace(tzinfo=UTC)
