"""``access.resolve``: a principal and the provider and mode headers to an access
decision (SEMANTICS.md sections 3 and 4), without a database."""

from __future__ import annotations

import pytest

from coursebook.access import CUSTOMER, INSTRUCTOR, STAFF, Access, resolve
from coursebook.auth import CustomerProfile, Principal, StaffProfile
from coursebook.errors import ApiError

MAIN, OTHER = 1, 2


def user(*, staff: dict[int, set[str]] | None = None, customers: tuple[int, ...] = ()) -> Principal:
    return Principal(
        token_id=10,
        user_id=20,
        m2m_provider_id=None,
        m2m_permissions=frozenset(),
        staff=tuple(
            StaffProfile(100 + provider, provider, frozenset(permissions))
            for provider, permissions in (staff or {}).items()
        ),
        customers=tuple(CustomerProfile(200 + provider, provider) for provider in customers),
    )


def m2m(*permissions: str) -> Principal:
    return Principal(11, None, MAIN, frozenset(permissions), (), ())


def refused(principal: Principal, provider: str | None, mode: str | None) -> ApiError:
    with pytest.raises(ApiError) as caught:
        resolve(principal, provider, mode)
    return caught.value


def test_full_staff_reads_every_session_of_its_provider() -> None:
    access = resolve(user(staff={MAIN: {"manage_events"}}), None, None)
    assert access == Access(MAIN, "provider", STAFF, {"access_provider_id": MAIN}, 100 + MAIN)


def test_instructor_only_staff_reads_what_it_instructs() -> None:
    access = resolve(user(staff={MAIN: {"instructor_attendances"}}), None, None)
    assert access.scope is INSTRUCTOR
    assert access.params == {"access_provider_id": MAIN, "access_staff_profile_id": 100 + MAIN}


def test_staff_without_a_reading_permission_is_refused_and_told_which_would_do() -> None:
    error = refused(user(staff={MAIN: {"manage_customers"}}), None, None)
    assert (error.status, error.code) == (403, "permission_denied")
    assert "manage_events" in (error.message or "")


def test_a_customer_sees_what_customer_mode_allows() -> None:
    access = resolve(user(customers=(MAIN,)), None, None)
    assert access.mode == "customer"
    assert access.scope is CUSTOMER
    assert access.redact_permissions
    assert ("instructor", "availability_schedules") in access.hidden_fields
    assert access.params == {"access_provider_id": MAIN, "access_customer_profile_id": 200 + MAIN}


def test_staff_and_customer_profiles_need_the_mode_header() -> None:
    both = user(staff={MAIN: {"developer"}}, customers=(MAIN,))
    error = refused(both, None, None)
    assert (error.status, error.code) == (400, "mode_required")
    assert resolve(both, None, "customer").scope is CUSTOMER
    assert resolve(both, None, "provider").scope is STAFF


def test_a_mode_without_its_profile_is_not_allowed() -> None:
    error = refused(user(customers=(MAIN,)), None, "provider")
    assert (error.status, error.code) == (403, "mode_not_allowed")
    error = refused(user(staff={MAIN: {"developer"}}), None, "customer")
    assert (error.status, error.code) == (403, "mode_not_allowed")


@pytest.mark.parametrize("mode", ["Customer", "staff", "", "provider,customer"])
def test_an_unknown_mode_is_invalid(mode: str) -> None:
    error = refused(user(customers=(MAIN,)), None, mode)
    assert (error.status, error.code) == (400, "parameter_invalid")
    assert list(error.field_errors) == ["Teamup-Request-Mode"]


def test_several_providers_need_the_provider_header_and_are_listed() -> None:
    principal = user(staff={MAIN: {"developer"}, OTHER: {"developer"}})
    error = refused(principal, None, None)
    assert (error.status, error.code) == (400, "provider_required")
    assert error.field_errors == {"TeamUp-Provider-ID": ["Required. One of: 1, 2."]}
    assert resolve(principal, str(OTHER), None).provider_id == OTHER


@pytest.mark.parametrize("header", ["3", "-1", "0", "99999999999999999"])
def test_an_unreachable_provider_is_refused(header: str) -> None:
    error = refused(user(staff={MAIN: {"developer"}}), header, None)
    assert (error.status, error.code) == (403, "provider_invalid")


@pytest.mark.parametrize("header", ["abc", "1.0", "--1", "", "1" * 20, "١"])
def test_a_provider_header_that_is_no_integer_is_invalid(header: str) -> None:
    error = refused(user(staff={MAIN: {"developer"}}), header, None)
    assert (error.status, error.code) == (400, "parameter_invalid")


def test_an_m2m_token_runs_in_provider_mode_with_its_permissions() -> None:
    assert resolve(m2m("developer"), None, None).scope is STAFF
    assert resolve(m2m("developer"), str(MAIN), "provider").mode == "provider"
    error = refused(m2m("developer"), None, "customer")
    assert (error.status, error.code) == (403, "mode_not_allowed")


def test_access_knows_the_callers_staff_profile_here_in_either_mode() -> None:
    both = user(staff={MAIN: {"developer"}, OTHER: {"developer"}}, customers=(MAIN, OTHER))
    for mode in ("customer", "provider"):
        assert resolve(both, str(MAIN), mode).staff_profile_id == 100 + MAIN
        assert resolve(both, str(OTHER), mode).staff_profile_id == 100 + OTHER
    assert resolve(user(customers=(MAIN,)), None, None).staff_profile_id is None
    assert resolve(m2m("developer"), None, None).staff_profile_id is None


def test_an_m2m_token_with_instructor_permissions_only_reads_nothing() -> None:
    error = refused(m2m("instructor_manage_events"), None, None)
    assert (error.status, error.code) == (403, "permission_denied")
    # It says why, and names only permissions that would read something.
    message = error.message or ""
    assert "instructs no course session" in message
    assert message.endswith("Requires one of: manage_events, attendances, developer.")


def test_credentials_reaching_no_provider_are_refused() -> None:
    error = refused(user(), None, None)
    assert (error.status, error.code) == (403, "permission_denied")
