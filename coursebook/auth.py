"""Authentication: the ``Authorization`` header to a ``Principal``, in one statement."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BindParameter,
    Connection,
    String,
    bindparam,
    false,
    literal_column,
    select,
    union_all,
)

from coursebook.errors import ApiError
from coursebook.memo import NO_MEMO, VERSION, WRITE_COUNT, Memo
from coursebook.models import PERMISSION_NAMES, api_tokens, customer_profiles, staff_profiles
from coursebook.query import Query
from coursebook.tokens import expired, hash_token

SCHEMES = ("bearer", "token")
CHALLENGE = {"WWW-Authenticate": "Bearer"}
MAX_TOKEN_LENGTH = 256
#: One message for every token that cannot be used, unknown, expired or revoked: telling
#: them apart would tell the holder of a leaked token that it was once valid.
UNUSABLE = "Invalid token."


@dataclass(frozen=True, slots=True)
class StaffProfile:
    """A user's staff profile at one provider, with the permissions it holds."""

    id: int
    provider_id: int
    permissions: frozenset[str]


@dataclass(frozen=True, slots=True)
class CustomerProfile:
    """A user's customer profile at one provider."""

    id: int
    provider_id: int


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: a user with profiles, or a provider's M2M token."""

    token_id: int
    user_id: int | None
    m2m_provider_id: int | None
    m2m_permissions: frozenset[str]
    staff: tuple[StaffProfile, ...]
    customers: tuple[CustomerProfile, ...]

    @property
    def provider_ids(self) -> frozenset[int]:
        """Every provider these credentials reach."""
        if self.m2m_provider_id is not None:
            return frozenset({self.m2m_provider_id})
        staff = {p.provider_id for p in self.staff}
        return frozenset(staff | {p.provider_id for p in self.customers})


def _failed(message: str) -> ApiError:
    return ApiError(401, "authentication_failed", message, headers=CHALLENGE)


def token_from_header(authorization: str | None) -> str:
    """The token of a ``Bearer``/``Token`` header; 401 when absent or malformed."""
    if not authorization:
        raise ApiError(401, "not_authenticated", headers=CHALLENGE)
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() not in SCHEMES:
        raise ApiError(401, "not_authenticated", headers=CHALLENGE)
    token = token.strip()
    if not token or " " in token or len(token) > MAX_TOKEN_LENGTH:
        raise _failed("Invalid token header.")
    return token


DIGEST: BindParameter[str] = bindparam("digest", type_=String)
_TOKEN_COLUMNS = (
    api_tokens.c.id,
    api_tokens.c.token_hash,
    api_tokens.c.user_id,
    api_tokens.c.provider_id,
    api_tokens.c.expires_at,
    api_tokens.c.revoked_at,
    *[api_tokens.c[name] for name in PERMISSION_NAMES],
)

# The token with each of its user's staff profiles (one row with no profile when there
# is none, so the token itself always comes back), then with each customer profile:
# one statement, each half an index probe. The write count beside them stamps what a
# worker remembers of the token (``coursebook.memo``).
_PRINCIPAL = Query(
    union_all(
        select(
            *_TOKEN_COLUMNS,
            literal_column("'staff'").label("profile_kind"),
            staff_profiles.c.id.label("profile_id"),
            staff_profiles.c.provider_id.label("profile_provider_id"),
            *[staff_profiles.c[name].label(f"profile_{name}") for name in PERMISSION_NAMES],
            WRITE_COUNT.label(VERSION),
        )
        .select_from(
            api_tokens.outerjoin(staff_profiles, staff_profiles.c.user_id == api_tokens.c.user_id)
        )
        .where(api_tokens.c.token_hash == DIGEST),
        select(
            *_TOKEN_COLUMNS,
            literal_column("'customer'").label("profile_kind"),
            customer_profiles.c.id.label("profile_id"),
            customer_profiles.c.provider_id.label("profile_provider_id"),
            *[false().label(f"profile_{name}") for name in PERMISSION_NAMES],
            WRITE_COUNT.label(VERSION),
        )
        .select_from(
            api_tokens.join(customer_profiles, customer_profiles.c.user_id == api_tokens.c.user_id)
        )
        .where(api_tokens.c.token_hash == DIGEST),
    )
)


def _granted(row: Any, prefix: str) -> frozenset[str]:
    return frozenset(name for name in PERMISSION_NAMES if row[f"{prefix}{name}"])


def _principal(rows: list[dict[str, Any]]) -> Principal:
    first = rows[0]
    staff = tuple(
        StaffProfile(row["profile_id"], row["profile_provider_id"], _granted(row, "profile_"))
        for row in rows
        if row["profile_kind"] == "staff" and row["profile_id"] is not None
    )
    customers = tuple(
        CustomerProfile(row["profile_id"], row["profile_provider_id"])
        for row in rows
        if row["profile_kind"] == "customer"
    )
    return Principal(
        token_id=first["id"],
        user_id=first["user_id"],
        m2m_provider_id=first["provider_id"],
        m2m_permissions=_granted(first, "") if first["provider_id"] is not None else frozenset(),
        staff=staff,
        customers=customers,
    )


def _look_up(
    conn: Connection, digest: str, memo: Memo
) -> tuple[Principal, datetime | None, datetime | None]:
    """The principal of the token with ``digest``, its revocation and expiry; 401 if none.
    ``memo`` is shown the write count they were read at (it keeps them)."""
    rows = _PRINCIPAL.rows(conn, {"digest": digest})
    if not rows or not hmac.compare_digest(rows[0]["token_hash"], digest):
        raise _failed(UNUSABLE)
    memo.observe(rows[0][VERSION])
    return _principal(rows), rows[0]["revoked_at"], rows[0]["expires_at"]


#: The digest of each well-formed ``Authorization`` header seen lately: hashing the
#: token again, about three microseconds, is most of what a known token costs. It is
#: memory only (the database keeps digests alone), holds no answer about the token, and
#: is emptied when it reaches ``DIGESTS_KEPT`` headers.
_DIGESTS: dict[str, str] = {}
DIGESTS_KEPT = 4096


def authenticate(
    conn: Connection, authorization: str | None, now: datetime, memo: Memo = NO_MEMO
) -> Principal:
    """The principal behind ``authorization``; 401 for anything not a live token.

    A token found in the database is kept in ``memo`` (by digest, with its expiry and
    revocation, which are checked on every request); an unknown one never is.
    """
    header = authorization or ""
    digest = _DIGESTS.get(header)
    if digest is None:
        digest = hash_token(token_from_header(header))  # 401 when it holds no token
        if len(_DIGESTS) >= DIGESTS_KEPT:
            _DIGESTS.clear()
        _DIGESTS[header] = digest
    principal, revoked_at, expires_at = memo.get(
        ("principal", digest), _look_up, conn, digest, memo
    )
    if revoked_at is not None or expired(expires_at, now):
        memo.confirm(conn)  # remembered revoked or expired: still so (PostgreSQL)
        raise _failed(UNUSABLE)
    return principal
