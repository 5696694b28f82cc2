"""Values as the API writes and reads them: date-times, amounts, id lists, choices."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from datetime import UTC, date, datetime, tzinfo
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


def local_datetime(value: datetime, zone: str) -> str:
    """``value`` as TeamUp writes date-times: RFC 3339 in whole seconds, at the offset the
    IANA zone ``zone`` has at that instant, ``Z`` when the offset is zero
    (``2026-03-30T06:30:00+01:00``, ``2026-01-29T06:30:00Z``).

    A naive ``value`` (SQLite stores no offset) is UTC. Fractions of a second are
    dropped, not rounded, so a date-time never moves into the next second (or minute, or
    day). Where the local time cannot be written, the date-time is written in UTC: an
    offset with seconds (local mean time, before a zone adopted standard time) is not
    RFC 3339, and near year 1 or 9999 the local time may not exist.
    """
    tz = ZONES[zone]
    try:
        if value.tzinfo is None:
            # ``combine`` attaches the zone much faster than ``replace(tzinfo=...)``.
            local = tz.fromutc(datetime.combine(value, value.time(), tz))
        else:
            local = value.astimezone(tz)
    except OverflowError:  # within hours of year 1 or 9999, the local time does not exist
        return local_datetime(value, "UTC")
    text = local.isoformat("T", "seconds")
    if text.endswith("+00:00"):
        return text[:19] + "Z"
    if len(text) == 25:
        return text
    return local_datetime(value, "UTC")


def iso_date(value: date | None) -> str | None:
    return None if value is None else value.isoformat()


def minor_to_amount(minor: int) -> str:
    """``4500`` -> ``"45.00"``."""
    sign = "-" if minor < 0 else ""
    whole, cents = divmod(abs(minor), 100)
    return f"{sign}{whole}.{cents:02d}"


def parse_ids(name: str, raw: str) -> list[int]:
    """``"1, 2,3"`` -> ``[1, 2, 3]``; 400 naming ``name`` for anything else."""
    items = [item.strip() for item in raw.split(",") if item.strip()]
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


_FRACTION = re.compile(r"(\.\d{6})\d+")


def parse_datetime(name: str, raw: str) -> datetime:
    """An ISO 8601 / RFC 3339 date or date-time; without an offset it is UTC."""
    text = _FRACTION.sub(r"\1", raw.strip().upper())
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise invalid(
            name, f"'{raw}' is not a date-time. Use ISO 8601, e.g. 2026-01-05T09:00:00Z."
        ) from None
    try:
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    except OverflowError:  # an offset pushes it past year 1 or 9999: clamp
        edge = datetime.max if value.year > 1 else datetime.min
        return edge.replace(tzinfo=UTC)


def choice(*values: str) -> Callable[[str, str], str]:
    """A parser accepting exactly one of ``values``."""

    def parse(name: str, raw: str) -> str:
        if raw not in values:
            raise invalid(name, f"'{raw}' is not valid. Valid: {', '.join(values)}.")
        return raw

    return parse


def parse_page(raw: str | None, name: str, default: int, maximum: int) -> int:
    """A positive page number or size, within ``maximum``."""
    if raw is None:
        return default
    if not raw.isascii() or not raw.isdigit() or len(raw) > 12 or int(raw) < 1:
        raise invalid(name, f"'{raw}' is not valid: give an integer of at least 1.")
    value = int(raw)
    if value > maximum:
        raise invalid(name, f"{value} is more than the maximum, {maximum}.")
    return value
