"""Users and their profiles: a user token reads what its user's staff and customer
profiles allow, so a token for someone new starts with a user and a profile.

Each function checks what the database would refuse first, so that the command line can
say which id or value is wrong instead of repeating a constraint's name.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Any

from sqlalchemy import Connection, Table, func, insert, select

from coursebook.models import (
    PERMISSION_NAMES,
    customer_memberships,
    customer_profiles,
    memberships,
    providers,
    staff_profiles,
    users,
)

#: The longest email and name the ``users`` table holds.
EMAIL_LENGTH = 254
NAME_LENGTH = 200


def create_user(conn: Connection, *, email: str, name: str) -> int:
    """Insert a user with a unique email; return its id."""
    email, name = email.strip(), name.strip()
    local, at, domain = email.rpartition("@")
    if (
        not (local and at and domain)
        or len(email) > EMAIL_LENGTH
        or any(c.isspace() for c in email)
    ):
        raise ValueError(
            f"{email!r} is not an email address (name@domain, at most {EMAIL_LENGTH} characters)."
        )
    if not name or len(name) > NAME_LENGTH:
        raise ValueError(f"A user's name is 1 to {NAME_LENGTH} characters.")
    taken = conn.scalar(select(users.c.id).where(func.lower(users.c.email) == email.lower()))
    if taken is not None:
        raise ValueError(f"User {taken} already has the email {email}.")
    return _insert(conn, users, email=email, name=name)


def add_staff_profile(
    conn: Connection, *, user_id: int, provider_id: int, permissions: frozenset[str]
) -> int:
    """Give a user a staff profile at a provider, with ``permissions``; return its id."""
    unknown = permissions - set(PERMISSION_NAMES)
    if unknown:
        raise ValueError(
            f"Unknown permission(s): {', '.join(sorted(unknown))}. "
            f"Valid: {', '.join(PERMISSION_NAMES)}."
        )
    _no_profile_yet(conn, staff_profiles, "staff", user_id, provider_id)
    values = {name: name in permissions for name in PERMISSION_NAMES}
    return _insert(conn, staff_profiles, user_id=user_id, provider_id=provider_id, **values)


def add_customer_profile(
    conn: Connection,
    *,
    user_id: int,
    provider_id: int,
    membership_ids: Sequence[int],
    starts_on: date,
) -> int:
    """Give a user a customer profile at a provider, holding active ``membership_ids`` of
    that provider from ``starts_on``; return the profile's id."""
    name = _no_profile_yet(conn, customer_profiles, "customer", user_id, provider_id)
    wanted = list(dict.fromkeys(membership_ids))
    rows = conn.execute(
        select(memberships.c.id, memberships.c.provider_id).where(memberships.c.id.in_(wanted))
    )
    owners = {row.id: row.provider_id for row in rows}
    for membership_id in wanted:
        if membership_id not in owners:
            raise ValueError(f"No membership with id {membership_id}.")
        if owners[membership_id] != provider_id:
            raise ValueError(
                f"Membership {membership_id} is provider {owners[membership_id]}'s, "
                f"not provider {provider_id}'s."
            )
    profile_id = _insert(
        conn, customer_profiles, user_id=user_id, provider_id=provider_id, name=name
    )
    for membership_id in wanted:
        _insert(
            conn,
            customer_memberships,
            customer_profile_id=profile_id,
            membership_id=membership_id,
            active=True,
            starts_on=starts_on,
            ends_on=None,
        )
    return profile_id


def _no_profile_yet(
    conn: Connection, table: Table, kind: str, user_id: int, provider_id: int
) -> str:
    """Check that the user and provider exist and that the user has no ``kind`` profile
    there yet; return the user's name."""
    name = conn.scalar(select(users.c.name).where(users.c.id == user_id))
    if name is None:
        raise ValueError(f"No user with id {user_id}.")
    if conn.scalar(select(providers.c.id).where(providers.c.id == provider_id)) is None:
        raise ValueError(f"No provider with id {provider_id}.")
    existing = conn.scalar(
        select(table.c.id).where(table.c.user_id == user_id, table.c.provider_id == provider_id)
    )
    if existing is not None:
        raise ValueError(
            f"User {user_id} already has {kind} profile {existing} at provider {provider_id}."
        )
    return str(name)


def _insert(conn: Connection, table: Table, **values: Any) -> int:
    """Insert one row into ``table``; return its generated id."""
    key = conn.execute(insert(table).values(values)).inserted_primary_key
    assert key is not None
    return int(key[0])
