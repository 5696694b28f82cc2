"""A TeamUp-compatible API read page by page, as ``coursebook mirror`` reads it.

A source on the internet answers slowly, throttles and fails now and then: every
request has bounded timeouts; a ``429`` waits as its ``Retry-After`` says (seconds or an
HTTP date); a ``5xx`` or a network error is tried again after a backoff with full jitter
(so that many clients do not retry in step); and after ``Retry.attempts`` tries the
caller gets one clear error. The token goes in the ``Authorization`` header only: no
message, log line or error of this module ever holds it.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

#: Connect quickly or not at all; a page of 100 expanded sessions may take a while.
TIMEOUT = httpx.Timeout(30.0, connect=5.0)


class SourceError(Exception):
    """The source refused a request, or never answered it."""


@dataclass(frozen=True)
class Retry:
    """How often and how long to try one request again."""

    #: Tries of one request before giving up (the first included).
    attempts: int = 8
    #: The first backoff's ceiling, in seconds; each try doubles it.
    base: float = 0.5
    #: The longest backoff between two tries.
    cap: float = 30.0
    #: The longest a ``Retry-After`` is waited: a source asking for more is asked again then.
    longest_asked: float = 300.0

    def backoff(self, attempt: int) -> float:
        """Seconds to wait after failed try number ``attempt`` (from 1): full jitter."""
        return random.uniform(0, min(self.cap, self.base * 2 ** (attempt - 1)))


def retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds a ``Retry-After`` header asks for: a number of seconds or an HTTP date;
    None when absent or unreadable (the backoff decides then)."""
    if value is None:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def refusal(response: httpx.Response) -> str:
    """What a source's error answer says: TeamUp's ``message``, else its status."""
    try:
        body = response.json()
    except ValueError:
        body = None
    message = body.get("message") if isinstance(body, dict) else None
    shown = f": {message}" if isinstance(message, str) and message else ""
    return f"{response.status_code} {response.reason_phrase}{shown}"


class Source:
    """One provider's data at ``base_url``, read with ``token`` as that provider's."""

    def __init__(
        self,
        base_url: str,
        token: str,
        provider_id: int,
        *,
        retry: Retry = Retry(),
        timeout: httpx.Timeout = TIMEOUT,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.provider_id = provider_id
        self.retry = retry
        self.sleep = sleep
        self.client = httpx.Client(
            base_url=self.base_url,
            timeout=timeout,
            headers={
                "Authorization": f"Bearer {token}",
                "TeamUp-Provider-ID": str(provider_id),
                "Accept": "application/json",
            },
        )
        #: Requests sent, every try counted.
        self.requests = 0

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def get(self, path: str, params: Mapping[str, str | int]) -> dict[str, Any]:
        """The JSON object ``path`` answers with ``params``, tried again as ``retry``
        says; ``SourceError`` when refused (a 4xx other than 429) or never answered."""
        shown = f"{self.base_url}{path}"
        reason = ""
        for attempt in range(1, self.retry.attempts + 1):
            self.requests += 1
            try:
                response = self.client.get(path, params=dict(params))
            except httpx.TransportError as exc:
                reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                wait = self.retry.backoff(attempt)
            else:
                if response.status_code == 200:
                    try:
                        body = response.json()
                    except ValueError:
                        raise SourceError(f"{shown} answered 200 with no JSON object") from None
                    if not isinstance(body, dict):
                        raise SourceError(f"{shown} answered 200 with no JSON object")
                    return body
                if response.status_code != 429 and response.status_code < 500:
                    raise SourceError(f"{shown} refused the request: {refusal(response)}")
                reason = refusal(response)
                asked = retry_after(response.headers.get("Retry-After"))
                wait = (
                    self.retry.backoff(attempt)
                    if asked is None
                    else min(asked, self.retry.longest_asked)
                )
            if attempt < self.retry.attempts:
                self.sleep(wait)
        raise SourceError(
            f"{shown} did not answer after {self.retry.attempts} tries (last: {reason})"
        )
