"""The rate limit: requests a minute per caller (SEMANTICS.md section 10).

The algorithm and the Redis storage are the ``limits`` library's: a fixed window per
caller, opened by its first request and counted with one ``INCR`` (a Lua script that
also sets the window's expiry). Without Redis, the workers of one machine count in a
SQLite file (``LocalStorage``, the same storage interface): ``limits`` has no storage
shared between processes short of a server.

The limit applies before authentication, so that a flood costs no database work: a
request presenting a token is counted against that token (its SHA-256 digest, as the
database keys tokens, never the secret), one presenting none against its client
address. A token this worker has not yet seen authenticate is counted against the
token too, but first the address must have budget left, and if the token is refused
(401) the address is charged: an address sending made-up tokens runs out as an
address would, while a valid token never spends its address's budget (many clients
share one address behind a NAT or an integrator's server).

Under load, the requests one turn of the event loop starts are counted together:
``Batch`` sends one ``INCRBY`` of their number per caller (one Lua call, or one upsert)
and hands each request its own count from the consecutive run the store answers. The
count stays exact (the store adds each batch atomically, so no two requests anywhere
get the same count), and a worker pays one round trip per caller and loop turn
instead of one per request.

When the store does not answer within ``redis_timeout`` the request is let through
(fail open: the limit protects the service, and an outage of Redis should not become
an outage of the API), a warning is logged once, the failure counted, and the store
tried again a second later.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import math
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

from limits import RateLimitItemPerMinute
from limits.aio.storage import RedisStorage, Storage
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from coursebook.errors import ApiError
from coursebook.metrics import STORE_FAILURES, THROTTLED, UNCHECKED
from coursebook.settings import Settings
from coursebook.tokens import hash_token

logger = logging.getLogger("coursebook")

#: Seconds between tries of a store that failed; requests pass unchecked meanwhile.
RETRY_SECONDS = 1.0
#: What a store that does not answer raises.
STORE_ERRORS = (RedisError, sqlite3.Error, OSError, asyncio.TimeoutError)
#: Most token digests and window ends a worker remembers before starting again empty.
REMEMBERED = 100_000


class LocalStorage(Storage):
    """``limits``' storage interface over a SQLite file the workers of one machine share.

    A counter is a row (key, count, end of its window); one upsert counts a request and
    opens a new window when the last one ended. Writers take an ``flock`` first: the
    kernel wakes the next writer as soon as the lock is free, where SQLite's own busy
    handler would sleep a millisecond or more between tries.
    """

    STORAGE_SCHEME = None

    _INCR = (
        "INSERT INTO hits (key, count, expires) VALUES (:key, :amount, :expires) "
        "ON CONFLICT (key) DO UPDATE SET "
        "count = CASE WHEN expires <= :now THEN :amount ELSE count + :amount END, "
        "expires = CASE WHEN expires <= :now THEN :expires ELSE expires END "
        "RETURNING count"
    )

    def __init__(self, path: str) -> None:
        super().__init__()
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._lock_file = open(f"{path}.lock", "a+b")  # noqa: SIM115 (held for the process's life)
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._next_sweep = 0.0
        with self._locked():
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS hits "
                "(key TEXT PRIMARY KEY, count INTEGER NOT NULL, expires REAL NOT NULL) "
                "WITHOUT ROWID"
            )
        # A counter needs no durability across a machine's crash: nothing waits for disk.
        self._db.execute("PRAGMA synchronous=OFF")

    @property
    def base_exceptions(self) -> type[Exception] | tuple[type[Exception], ...]:
        return (sqlite3.Error, OSError)

    @contextmanager
    def _locked(self) -> Iterator[None]:
        fcntl.flock(self._lock_file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self._lock_file, fcntl.LOCK_UN)

    async def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        now = time.time()
        with self._locked():
            if now >= self._next_sweep:  # windows that ended, once a minute per worker
                self._db.execute("DELETE FROM hits WHERE expires <= ?", (now,))
                self._next_sweep = now + 60
            row = self._db.execute(
                self._INCR, {"key": key, "amount": amount, "expires": now + expiry, "now": now}
            ).fetchone()
        return int(row[0])

    async def get(self, key: str) -> int:
        row = self._db.execute(
            "SELECT count FROM hits WHERE key = ? AND expires > ?", (key, time.time())
        ).fetchone()
        return 0 if row is None else int(row[0])

    async def get_expiry(self, key: str) -> float:
        now = time.time()
        row = self._db.execute(
            "SELECT expires FROM hits WHERE key = ? AND expires > ?", (key, now)
        ).fetchone()
        return now if row is None else float(row[0])

    async def check(self) -> bool:
        return True

    async def reset(self) -> int | None:
        with self._locked():
            return self._db.execute("DELETE FROM hits").rowcount

    async def clear(self, key: str) -> None:
        with self._locked():
            self._db.execute("DELETE FROM hits WHERE key = ?", (key,))

    def close(self) -> None:
        self._db.close()
        self._lock_file.close()


class Batch:
    """The counts of one turn of the event loop, sent as one increment per key.

    ``count`` queues a request; the first one of a turn schedules ``_send`` for the
    next turn, by which time every request that turn started has queued its own.
    """

    def __init__(self, storage: Storage, expiry: int) -> None:
        self.storage = storage
        self.expiry = expiry
        self._waiting: dict[str, list[asyncio.Future[int]]] = {}
        #: Increments in flight (the loop keeps only weak references to tasks).
        self._sending: set[asyncio.Task[None]] = set()

    def count(self, key: str) -> asyncio.Future[int]:
        """This request's count in ``key``'s window, once the store has answered."""
        loop = asyncio.get_running_loop()
        if not self._waiting:
            loop.call_soon(self._send)
        future: asyncio.Future[int] = loop.create_future()
        self._waiting.setdefault(key, []).append(future)
        return future

    def _send(self) -> None:
        waiting, self._waiting = self._waiting, {}
        for key, futures in waiting.items():
            task = asyncio.ensure_future(self._increment(key, futures))
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)

    async def _increment(self, key: str, futures: list[asyncio.Future[int]]) -> None:
        try:
            total = await self.storage.incr(key, self.expiry, amount=len(futures))
        except BaseException as error:  # each request decides (fails open, or is cancelled)
            for future in futures:
                if not future.done():
                    future.set_exception(error)
            if not isinstance(error, Exception):
                raise
            return
        for index, future in enumerate(futures, start=total - len(futures) + 1):
            if not future.done():  # a request whose client left is cancelled
                future.set_result(index)


class Verdict(NamedTuple):
    """A caller's standing after one request: admitted or not, and its window."""

    allowed: bool
    limit: int
    remaining: int
    #: Seconds until the window ends and the budget is whole again.
    reset: int

    def headers(self) -> list[tuple[bytes, bytes]]:
        """The rate-limit headers every answer of the API carries."""
        return [
            (b"x-ratelimit-limit", str(self.limit).encode()),
            (b"x-ratelimit-remaining", str(self.remaining).encode()),
            (b"x-ratelimit-reset", str(self.reset).encode()),
        ]


class Admission(NamedTuple):
    """What ``RateLimiter.admit`` decided; ``verdict`` is None when nothing was checked
    (the store unreachable). ``unproven`` names a token this worker has not seen
    authenticate, for ``settle``."""

    verdict: Verdict | None
    unproven: str | None = None
    address: str = ""


UNCHECKED_ADMISSION = Admission(None)


def throttled(verdict: Verdict) -> ApiError:
    """The 429 ``throttled`` answer, worded as Django REST framework words it."""
    unit = "second" if verdict.reset == 1 else "seconds"
    return ApiError(
        429,
        "throttled",
        f"Request was throttled. Expected available in {verdict.reset} {unit}.",
        headers={"Retry-After": str(verdict.reset)},
    )


def _token(authorization: str | None) -> str | None:
    """The token of an ``Authorization`` header as authentication would read it."""
    if not authorization:
        return None
    token = authorization.strip().partition(" ")[2].strip()
    return token or None


class RateLimiter:
    """Counts each caller's requests in a store shared by every worker."""

    def __init__(self, storage: Storage, per_minute: int) -> None:
        self.storage = storage
        self.item = RateLimitItemPerMinute(per_minute)
        self.amount = per_minute
        self.expiry = self.item.get_expiry()
        self.batch = Batch(storage, self.expiry)
        #: Digests of tokens this worker has seen authenticate.
        self._proven: set[str] = set()
        #: When each caller's window ends, as this worker last learnt it.
        self._ends: dict[str, float] = {}
        #: While the store is failing: when to try it again (0: it is not failing).
        self._retry_at = 0.0

    @classmethod
    def from_settings(cls, settings: Settings) -> RateLimiter | None:
        """The limiter the settings ask for: Redis, the local file, or none (limit 0)."""
        if settings.rate_limit == 0:
            return None
        storage: Storage
        if settings.redis_url:
            storage = RedisStorage(
                f"async+{settings.redis_url}",
                implementation="redispy",
                key_prefix=settings.rate_limit_prefix,
                socket_timeout=settings.redis_timeout,
                socket_connect_timeout=settings.redis_timeout,
                # One try: a retry would only double the wait before failing open.
                retry=Retry(NoBackoff(), 0),  # type: ignore[arg-type]
            )
        else:
            storage = LocalStorage(settings.rate_limit_file)
        return cls(storage, settings.rate_limit)

    async def admit(self, authorization: str | None, address: str) -> Admission:
        """Count this request against its caller; ``Admission.verdict.allowed`` says
        whether it may be answered."""
        if self._retry_at and not self._due():
            UNCHECKED.inc()
            return UNCHECKED_ADMISSION
        token = _token(authorization)
        try:
            if token is None:
                admission = Admission(await self._hit(f"address:{address}"))
            else:
                digest = hash_token(token)[:32]
                if digest in self._proven:
                    admission = Admission(await self._hit(f"token:{digest}"))
                else:
                    spent = await self._spent(f"address:{address}")
                    verdict = spent or await self._hit(f"token:{digest}")
                    admission = Admission(verdict, None if spent else digest, address)
        except STORE_ERRORS as error:
            self._failed(error)
            return UNCHECKED_ADMISSION
        if self._retry_at:
            self._retry_at = 0.0
            logger.info("Rate-limit store answers again: requests are counted")
        if admission.verdict is not None and not admission.verdict.allowed:
            THROTTLED.inc()
        return admission

    async def settle(self, admission: Admission, status: int) -> None:
        """After the answer to an unproven token: refused (401), it costs its address a
        request; otherwise the token is proven and counted alone from now on."""
        if admission.unproven is None:
            return
        if status != 401:
            if len(self._proven) >= REMEMBERED:
                self._proven.clear()
            self._proven.add(admission.unproven)
            return
        try:
            await self.storage.incr(self.item.key_for(f"address:{admission.address}"), self.expiry)
        except STORE_ERRORS as error:
            self._failed(error)

    async def close(self) -> None:
        """Release the store's connections."""
        if isinstance(self.storage, LocalStorage):
            self.storage.close()
        elif isinstance(self.storage, RedisStorage):
            client = getattr(self.storage.bridge, "storage", None)
            if client is not None:
                await client.aclose()

    async def _hit(self, caller: str) -> Verdict:
        key = self.item.key_for(caller)
        count = await self.batch.count(key)
        reset = await self._reset(caller, key, fresh=count == 1)
        return Verdict(count <= self.amount, self.amount, max(0, self.amount - count), reset)

    async def _spent(self, caller: str) -> Verdict | None:
        """A refusal when ``caller`` has no budget left, without counting a request."""
        key = self.item.key_for(caller)
        if await self.storage.get(key) < self.amount:
            return None
        return Verdict(False, self.amount, 0, await self._reset(caller, key, fresh=False))

    async def _reset(self, caller: str, key: str, *, fresh: bool) -> int:
        """Seconds until ``caller``'s window ends: known when this request opened it or
        when this worker asked before; asked of the store once per window otherwise."""
        now = time.time()
        end = self._ends.get(caller)
        if fresh or end is None or end <= now:
            end = now + self.expiry if fresh else await self.storage.get_expiry(key)
            if len(self._ends) >= REMEMBERED:
                self._ends.clear()
            self._ends[caller] = end
        return max(1, math.ceil(end - now))

    def _due(self) -> bool:
        """Whether to try the failing store now; this request tries, the rest wait."""
        now = time.monotonic()
        if now < self._retry_at:
            return False
        self._retry_at = now + RETRY_SECONDS
        return True

    def _failed(self, error: BaseException) -> None:
        STORE_FAILURES.inc()
        if not self._retry_at:
            logger.warning(
                "Rate-limit store unreachable (%s): requests pass unchecked until it answers",
                type(error).__name__,
            )
        self._retry_at = time.monotonic() + RETRY_SECONDS
