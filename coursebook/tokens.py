"""API tokens: random secrets shown once, stored only as a SHA-256 digest.

A token carries 32 random bytes, so a fast digest is enough: there is nothing to
brute-force, and the lookup by digest is an index probe that reveals no timing about
the secret itself.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, insert, select

from coursebook.models import PERMISSION_NAMES, api_tokens

TOKEN_PREFIX = "cb_"


def hash_token(token: str) -> str:
    """The digest stored for ``token``."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def new_token() -> str:
    """A fresh token: the ``cb_`` prefix and 32 random bytes, URL-safe."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


@dataclass(frozen=True)
class CreatedToken:
    """A token row just created; ``secret`` is shown once and never stored."""

    id: int
    secret: str


def create_token(
    conn: Connection,
    *,
    created_at: datetime,
    name: str = "",
    user_id: int | None = None,
    provider_id: int | None = None,
    permissions: frozenset[str] = frozenset(),
    expires_at: datetime | None = None,
    revoked_at: datetime | None = None,
    secret: str | None = None,
) -> CreatedToken:
    """Store a user token (``user_id``) or an M2M token (``provider_id`` + ``permissions``)."""
    if (user_id is None) == (provider_id is None):
        raise ValueError("A token belongs to exactly one of a user or a provider.")
    unknown = permissions - set(PERMISSION_NAMES)
    if unknown:
        raise ValueError(
            f"Unknown permission(s): {', '.join(sorted(unknown))}. "
            f"Valid: {', '.join(PERMISSION_NAMES)}."
        )
    if user_id is not None and permissions:
        raise ValueError("A user token takes its permissions from the user's staff profiles.")
    secret = secret or new_token()
    values: dict[str, Any] = {
        "token_hash": hash_token(secret),
        "prefix": secret[:10],
        "name": name,
        "user_id": user_id,
        "provider_id": provider_id,
        "created_at": created_at,
        "expires_at": expires_at,
        "revoked_at": revoked_at,
    }
    values.update({perm: perm in permissions for perm in PERMISSION_NAMES})
    key = conn.execute(insert(api_tokens).values(values)).inserted_primary_key
    assert key is not None
    return CreatedToken(id=int(key[0]), secret=secret)


def token_states(conn: Connection, secrets: Iterable[str], now: datetime) -> dict[str, bool]:
    """For each of ``secrets`` this database holds, whether it still authenticates (neither
    revoked nor expired at ``now``); a secret it does not hold is left out."""
    by_digest = {hash_token(secret): secret for secret in secrets}
    rows = conn.execute(
        select(api_tokens.c.token_hash, api_tokens.c.revoked_at, api_tokens.c.expires_at).where(
            api_tokens.c.token_hash.in_(by_digest)
        )
    )
    return {
        by_digest[row.token_hash]: row.revoked_at is None and not expired(row.expires_at, now)
        for row in rows
    }


def expired(expires_at: datetime | None, now: datetime) -> bool:
    """Whether a token expiring at ``expires_at`` no longer authenticates at ``now``.

    SQLite gives back the naive UTC it stored, PostgreSQL an aware value."""
    if expires_at is None:
        return False
    return (expires_at if expires_at.tzinfo else expires_at.replace(tzinfo=UTC)) <= now
