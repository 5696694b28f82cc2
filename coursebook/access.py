"""Access: who may read what, decided once per request.

``resolve`` turns a principal and the provider/mode headers into an ``Access``:
the provider the request runs for, its mode, and the SQL conditions and hidden
fields that follow from them. The loader applies the decision; it never makes it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from sqlalchemy import ColumnElement, and_, exists, select, true

from coursebook import models as m
from coursebook.auth import Principal
from coursebook.errors import ApiError, invalid
from coursebook.fields import CUSTOMER_PROFILE_ID, PROVIDER_ID, STAFF_PROFILE_ID, Customers
from coursebook.graph import COURSE_SESSION, RESOURCES
from coursebook.ids import parse_integer

Mode = Literal["provider", "customer"]
MODES: tuple[Mode, ...] = ("customer", "provider")

#: Any of these lets staff read every course session of the provider.
FULL_READ = frozenset({"manage_events", "attendances", "developer", "super_admin"})
#: These alone let staff read the sessions they instruct.
INSTRUCTOR_READ = frozenset({"instructor_manage_events", "instructor_attendances"})

Conditions = Mapping[str, tuple[ColumnElement[bool], ...]]


@dataclass(frozen=True, eq=False)
class Scope:
    """What one kind of access may see, as SQL conditions with bound parameters.

    There are three scopes, built once: statements that use them are cached by the
    scope's name, and each request supplies only the parameter values.
    """

    name: str
    #: Row conditions by resource name; a root row failing them does not exist (404).
    visible: Conditions = field(default_factory=dict)
    #: Row conditions by resource name; a root row failing them is forbidden (403).
    permitted: Conditions = field(default_factory=dict)
    hidden_fields: frozenset[tuple[str, str]] = frozenset()
    redact_permissions: bool = False

    def filters(self, resource: str) -> tuple[ColumnElement[bool], ...]:
        """Every condition rows of ``resource`` must meet to appear in a response."""
        return (*self.visible.get(resource, ()), *self.permitted.get(resource, ()))

    def permitted_condition(self, resource: str) -> ColumnElement[bool]:
        """The 403 condition of ``resource`` as one expression."""
        conditions = self.permitted.get(resource)
        return and_(*conditions) if conditions else true()


@dataclass(frozen=True)
class Access:
    """The decision for one request: provider, mode, scope and its parameter values."""

    provider_id: int
    mode: Mode
    scope: Scope
    params: Mapping[str, int]
    #: The caller's staff profile at this provider, in either mode (``instructors=me``);
    #: None for a caller without one, such as an M2M token.
    staff_profile_id: int | None = None

    def filters(self, resource: str) -> tuple[ColumnElement[bool], ...]:
        """Every condition rows of ``resource`` must meet to appear in a response."""
        return self.scope.filters(resource)

    @property
    def hidden_fields(self) -> frozenset[tuple[str, str]]:
        return self.scope.hidden_fields

    @property
    def redact_permissions(self) -> bool:
        return self.scope.redact_permissions


def _header_int(value: str) -> int:
    try:
        return parse_integer(value)
    except ValueError:
        raise invalid("TeamUp-Provider-ID", "A valid integer is required.") from None


def _mode_header(value: str | None) -> Mode | None:
    if value is None:
        return None
    text = value.strip()
    for mode in MODES:
        if text == mode:
            return mode
    raise invalid(
        "Teamup-Request-Mode", f"'{value}' is not a valid mode. Valid: customer, provider."
    )


def _choose_provider(principal: Principal, header: str | None) -> int:
    reachable = principal.provider_ids
    if header is not None:
        provider_id = _header_int(header)
        if provider_id not in reachable:
            raise ApiError(
                403,
                "provider_invalid",
                "Your credentials do not give access to this provider.",
                field_errors={"TeamUp-Provider-ID": [f"Provider {provider_id} is not available."]},
            )
        return provider_id
    if len(reachable) > 1:
        raise ApiError(
            400,
            "provider_required",
            "Your credentials reach several providers: say which in TeamUp-Provider-ID.",
            field_errors={
                "TeamUp-Provider-ID": [
                    "Required. One of: " + ", ".join(str(p) for p in sorted(reachable)) + "."
                ]
            },
        )
    if not reachable:
        raise ApiError(403, "permission_denied", "Your credentials reach no provider.")
    return next(iter(reachable))


def _mode_not_allowed(mode: Mode) -> ApiError:
    return ApiError(
        403,
        "mode_not_allowed",
        f"You have no {'staff' if mode == 'provider' else 'customer'} profile at this provider.",
    )


def resolve(principal: Principal, provider_header: str | None, mode_header: str | None) -> Access:
    """Decide provider, mode and scope for a request, per SEMANTICS.md sections 3 and 4."""
    requested_mode = _mode_header(mode_header)
    provider_id = _choose_provider(principal, provider_header)

    if principal.m2m_provider_id is not None:
        if requested_mode == "customer":
            raise _mode_not_allowed("customer")
        return _provider_access(provider_id, principal.m2m_permissions, staff_profile_id=None)

    staff = next((p for p in principal.staff if p.provider_id == provider_id), None)
    customer = next((p for p in principal.customers if p.provider_id == provider_id), None)
    if requested_mode is None:
        if staff is not None and customer is not None:
            raise ApiError(
                400,
                "mode_required",
                "You have staff and customer profiles: say which in Teamup-Request-Mode.",
                field_errors={"Teamup-Request-Mode": ["Required. One of: customer, provider."]},
            )
        requested_mode = "provider" if staff is not None else "customer"
    if requested_mode == "provider":
        if staff is None:
            raise _mode_not_allowed("provider")
        return _provider_access(provider_id, staff.permissions, staff_profile_id=staff.id)
    if customer is None:
        raise _mode_not_allowed("customer")
    return _customer_access(provider_id, customer.id, None if staff is None else staff.id)


def _instructs() -> ColumnElement[bool]:
    """The session is taught by the requesting staff profile."""
    return exists(
        select(m.course_session_instructors.c.course_session_id)
        .join(m.instructors, m.instructors.c.id == m.course_session_instructors.c.instructor_id)
        .where(
            m.course_session_instructors.c.course_session_id == COURSE_SESSION.table.c.id,
            m.instructors.c.staff_profile_id == STAFF_PROFILE_ID,
        )
    )


def customer_scope() -> Scope:
    """What customer mode sees, as the graph declares it: each resource's visible rows,
    and no relation marked hidden from customers."""
    return Scope(
        "customer",
        visible={r.name: r.customer_rows for r in RESOURCES.values() if r.customer_rows},
        hidden_fields=frozenset(
            (resource.name, relation.name)
            for resource in RESOURCES.values()
            for relation in resource.relations
            if relation.customers is Customers.HIDDEN
        ),
        redact_permissions=True,
    )


STAFF = Scope("staff")
INSTRUCTOR = Scope("instructor", permitted={"course_session": (_instructs(),)})
CUSTOMER = customer_scope()


def _provider_access(
    provider_id: int, permissions: frozenset[str], staff_profile_id: int | None
) -> Access:
    params = {PROVIDER_ID.key: provider_id}
    if permissions & FULL_READ:
        return Access(provider_id, "provider", STAFF, params, staff_profile_id)
    if permissions & INSTRUCTOR_READ and staff_profile_id is not None:
        params[STAFF_PROFILE_ID.key] = staff_profile_id
        return Access(provider_id, "provider", INSTRUCTOR, params, staff_profile_id)
    if permissions & INSTRUCTOR_READ:
        # An API token teaches nothing: its instructor permissions reach no session.
        raise ApiError(
            403,
            "permission_denied",
            "An API token instructs no course session, so instructor_manage_events and "
            "instructor_attendances read nothing with it. Requires one of: manage_events, "
            "attendances, developer.",
        )
    raise ApiError(
        403,
        "permission_denied",
        "Requires one of: manage_events, attendances, instructor_manage_events, "
        "instructor_attendances, developer.",
    )


def _customer_access(
    provider_id: int, customer_profile_id: int, staff_profile_id: int | None
) -> Access:
    params = {PROVIDER_ID.key: provider_id, CUSTOMER_PROFILE_ID.key: customer_profile_id}
    return Access(provider_id, "customer", CUSTOMER, params, staff_profile_id)
