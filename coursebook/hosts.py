"""Which ``Host`` headers the server answers for, as Django's ``ALLOWED_HOSTS`` decides.

Absolute URLs in answers (related collections, page links) are built from the
request's host when no public URL is set, so a host the operator did not name would
turn them into links to someone else's server, carrying the client's token if it
follows them. Such a request is refused before anything is built from it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import urlsplit

from coursebook.errors import ApiError, invalid

#: A host as a ``Host`` header may carry it: a name or an address, or an IPv6 address
#: in brackets, with an optional port.
HOST = re.compile(r"^(?P<name>[A-Za-z0-9.\-]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?$")


def host_name(header: str) -> str | None:
    """The host of a ``Host`` header without its port, lower case, and without the
    trailing dot of a fully qualified name; None when it is no host at all."""
    matched = HOST.match(header)
    if matched is None:
        return None
    return matched["name"].lower().removesuffix(".")


class AllowedHosts:
    """The hosts a server answers for: exact names, ``.example.com`` (the domain and
    its subdomains) or ``*`` (any well-formed host)."""

    __slots__ = ("any", "decided", "exact", "suffixes")

    #: Host headers decided: a bounded dictionary, since clients choose the header.
    MAX_DECIDED = 1024

    def __init__(self, patterns: Iterable[str], public_url: str | None = None) -> None:
        names = [pattern.strip().lower() for pattern in patterns if pattern.strip()]
        if public_url:
            public_host = urlsplit(public_url).hostname
            if public_host:
                names.append(f"[{public_host}]" if ":" in public_host else public_host)
        self.any = "*" in names
        self.exact = frozenset(name for name in names if not name.startswith("."))
        self.suffixes = tuple(name for name in names if name.startswith("."))
        self.decided: dict[str, bool] = {}

    def allows(self, header: str) -> bool:
        """Whether a request with this ``Host`` header is answered (each header decided
        once: requests carry the same few)."""
        decided = self.decided.get(header)
        if decided is None:
            if len(self.decided) >= self.MAX_DECIDED:
                self.decided.clear()
            decided = self.decided[header] = self._allows(header)
        return decided

    def _allows(self, header: str) -> bool:
        name = host_name(header)
        if name is None:
            return False
        if self.any or name in self.exact:
            return True
        return any(name.endswith(suffix) or name == suffix[1:] for suffix in self.suffixes)


def refused_host(header: str) -> ApiError:
    """The 400 for a request whose ``Host`` this server does not answer for."""
    name = host_name(header)
    if name is None:
        return invalid("Host", "The Host header is not a host name.")
    return invalid("Host", f"'{name}' is not a host this server answers for.")
