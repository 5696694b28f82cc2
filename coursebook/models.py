"""The database schema: every object of the course-session contract, plus providers,
users, profiles and API tokens.

Tables are declared with SQLAlchemy Core so that the read path can build plain,
batched SELECTs; Alembic migrations are generated from this metadata. Every column
the API filters or joins on has an index.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)

# SQLite only auto-increments INTEGER PRIMARY KEY; PostgreSQL gets BIGINT identities.
Id = BigInteger().with_variant(Integer(), "sqlite")
#: The largest id a column can hold: anything above it cannot exist.
MAX_ID = 2**63 - 1

#: The 13 staff permission flags, in the order the contract lists them.
PERMISSION_NAMES: tuple[str, ...] = (
    "email_notifications",
    "revenue",
    "attendances",
    "super_admin",
    "customers",
    "discount_codes",
    "manage_events",
    "store",
    "developer",
    "customer_payments",
    "instructor_attendances",
    "instructor_manage_events",
    "pos",
)


def _pk() -> Column[int]:
    return Column("id", Id, primary_key=True, autoincrement=True)


def _fk(name: str, target: str, *, nullable: bool = False, index: bool = True) -> Column[int]:
    return Column(name, Id, ForeignKey(target, ondelete="CASCADE"), nullable=nullable, index=index)


def _permission_columns() -> list[Column[bool]]:
    return [Column(name, Boolean, nullable=False, default=False) for name in PERMISSION_NAMES]


providers = Table(
    "providers",
    metadata,
    _pk(),
    Column("name", String(200), nullable=False),
    Column("slug", String(100), nullable=False, unique=True),
    Column("timezone", String(64), nullable=False),
    Column("currency_code", String(3), nullable=False),
    Column("currency_symbol", String(8), nullable=False),
    Column("currency_symbol_position", String(6), nullable=False, default="before"),
    CheckConstraint("currency_symbol_position IN ('before', 'after')", name="symbol_position"),
)

users = Table(
    "users",
    metadata,
    _pk(),
    Column("email", String(254), nullable=False, unique=True),
    Column("name", String(200), nullable=False),
)

staff_profiles = Table(
    "staff_profiles",
    metadata,
    _pk(),
    _fk("provider_id", "providers.id"),
    _fk("user_id", "users.id"),
    *_permission_columns(),
    UniqueConstraint("user_id", "provider_id", name="uq_staff_profiles_user_provider"),
)

customer_profiles = Table(
    "customer_profiles",
    metadata,
    _pk(),
    _fk("provider_id", "providers.id"),
    _fk("user_id", "users.id"),
    Column("name", String(200), nullable=False),
    UniqueConstraint("user_id", "provider_id", name="uq_customer_profiles_user_provider"),
)

api_tokens = Table(
    "api_tokens",
    metadata,
    _pk(),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("prefix", String(16), nullable=False),
    Column("name", String(200), nullable=False, default=""),
    _fk("user_id", "users.id", nullable=True),
    # Set for a machine-to-machine token, which belongs to exactly one provider.
    _fk("provider_id", "providers.id", nullable=True),
    *_permission_columns(),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=True),
    Column("revoked_at", DateTime(timezone=True), nullable=True),
    CheckConstraint("(user_id IS NULL) <> (provider_id IS NULL)", name="user_xor_provider"),
)

images = Table(
    "images",
    metadata,
    _pk(),
    _fk("provider_id", "providers.id"),
    Column("url", String(500), nullable=False),
    Column("original_width", Integer, nullable=True),
    Column("original_height", Integer, nullable=True),
    Column("profile_id", Id, nullable=True),
    _fk("user_id", "users.id", nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

venues = Table(
    "venues",
    metadata,
    _pk(),
    _fk("provider_id", "providers.id"),
    Column("name", String(200), nullable=False),
    Column("description", Text, nullable=True),
    Column("address", String(500), nullable=False),
    Column("timezone", String(250), nullable=False),
    Column("video_url", String(500), nullable=True),
    Column("zoom_user", Integer, nullable=False, default=0),
    Column("venue_type", String(16), nullable=False),
    Column("lat", Float, nullable=False),
    Column("lng", Float, nullable=False),
    Column("archived", Boolean, nullable=False, default=False),
    Column("is_online", Boolean, nullable=False, default=False),
    Column("video_url_type", String(16), nullable=True),
    CheckConstraint("venue_type IN ('physical', 'online')", name="venue_type"),
    CheckConstraint("video_url_type IN ('static', 'zoom')", name="video_url_type"),
)

physical_addresses = Table(
    "physical_addresses",
    metadata,
    Column("venue_id", Id, ForeignKey("venues.id", ondelete="CASCADE"), primary_key=True),
    Column("street", String(200), nullable=False),
    Column("street_secondary", String(200), nullable=True),
    Column("city", String(100), nullable=False),
    Column("region", String(100), nullable=False),
    Column("postal_code", String(20), nullable=False),
    Column("country", String(2), nullable=False),
    Column("lat", Float, nullable=True),
    Column("lng", Float, nullable=True),
)

venue_rooms = Table(
    "venue_rooms",
    metadata,
    _pk(),
    _fk("venue_id", "venues.id"),
    Column("status", String(16), nullable=False, default="active"),
    Column("name", String(64), nullable=False),
    _fk("thumbnail_id", "images.id", nullable=True),
    CheckConstraint("status IN ('active', 'archived')", name="status"),
)

instructors = Table(
    "instructors",
    metadata,
    _pk(),
    _fk("provider_id", "providers.id"),
    Column(
        "staff_profile_id",
        Id,
        ForeignKey("staff_profiles.id", ondelete="CASCADE"),
        nullable=False,
        unique=True,
    ),
    Column("name", String(200), nullable=False),
    Column("picture_url", String(500), nullable=False, default=""),
    Column("description", Text, nullable=False, default=""),
    # Secret part of the instructor's iCalendar feed URL.
    Column("icalendar_key", String(64), nullable=False),
)

availability_schedules = Table(
    "availability_schedules",
    metadata,
    _pk(),
    _fk("instructor_id", "instructors.id"),
    Column("name", String(32), nullable=True),
    _fk("venue_id", "venues.id", nullable=True),
    # {"monday": [["09:00:00", "12:00:00"], ...], ...}: local wall-clock ranges per weekday.
    Column("weekly_ranges", JSON, nullable=False),
    Column("schedule_type", String(4), nullable=False, default="IU"),
    Column("is_default", Boolean, nullable=False, default=False),
    CheckConstraint("schedule_type IN ('IU', 'RRTL', 'GC')", name="schedule_type"),
)

offering_type_categories = Table(
    "offering_type_categories",
    metadata,
    _pk(),
    _fk("provider_id", "providers.id"),
    Column("name", String(256), nullable=False),
    _fk("image_id", "images.id", nullable=True),
    Column("color", String(16), nullable=False),
)

offering_types = Table(
    "offering_types",
    metadata,
    _pk(),
    _fk("provider_id", "providers.id"),
    _fk("category_id", "offering_type_categories.id", nullable=True),
    Column("name", String(256), nullable=False),
    Column("description", Text, nullable=True),
    Column("allows_dropins", Boolean, nullable=False, default=True),
    Column("background_color", String(16), nullable=False),
    Column("cancellation_notice_interval", Integer, nullable=False, default=0),
    Column("customer_visibility", String(24), nullable=False, default="public"),
    # Money is kept in minor units (pence, cents) of the provider's currency.
    Column("dropin_price_minor", Integer, nullable=False),
    Column("has_active_schedules", Boolean, nullable=False, default=True),
    _fk("image_id", "images.id", nullable=True),
    Column("is_draft", Boolean, nullable=False, default=False),
    Column("max_allowed_age", Integer, nullable=True),
    Column("min_allowed_age", Integer, nullable=True),
    Column("order", Integer, nullable=True),
    Column("registrations_close_interval", Integer, nullable=False, default=0),
    Column("registrations_open_interval", Integer, nullable=False, default=0),
    Column("schedule_type", String(32), nullable=False, default="course"),
    Column("status", String(16), nullable=False, default="active"),
    Column("waitlist_max", Integer, nullable=True),
    # Appointment settings (always present on an offering type).
    Column("appointment_duration", Integer, nullable=False, default=60),
    Column("appointment_buffer_before", Integer, nullable=False, default=0),
    Column("appointment_buffer_after", Integer, nullable=False, default=0),
    Column("appointment_start_time_increments", Integer, nullable=True),
    _fk("appointment_default_venue_id", "venues.id"),
    Column("appointment_default_venue_room_ids", JSON, nullable=False),
    # Room-rental settings (always present on an offering type).
    Column("room_rental_duration", Integer, nullable=False, default=60),
    Column("room_rental_buffer_before", Integer, nullable=False, default=0),
    Column("room_rental_buffer_after", Integer, nullable=False, default=0),
    Column("room_rental_start_time_increments", Integer, nullable=True),
    Column("room_rental_room_uniformity", Boolean, nullable=False, default=False),
    CheckConstraint(
        "customer_visibility IN ('public', 'membership_holders', 'private')",
        name="customer_visibility",
    ),
    CheckConstraint("status IN ('active', 'archived', 'unknown')", name="status"),
    CheckConstraint("waitlist_max IS NULL OR waitlist_max BETWEEN 0 AND 65535", name="waitlist"),
    CheckConstraint("appointment_duration BETWEEN 5 AND 1440", name="appointment_duration"),
    CheckConstraint("room_rental_duration BETWEEN 5 AND 1440", name="room_rental_duration"),
)

offering_type_instructors = Table(
    "offering_type_instructors",
    metadata,
    Column(
        "offering_type_id",
        Id,
        ForeignKey("offering_types.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("instructor_id", Id, ForeignKey("instructors.id", ondelete="CASCADE"), primary_key=True),
    Index("ix_offering_type_instructors_instructor", "instructor_id"),
)

availability_schedule_offering_types = Table(
    "availability_schedule_offering_types",
    metadata,
    _pk(),
    _fk("offering_type_id", "offering_types.id"),
    _fk("availability_schedule_id", "availability_schedules.id"),
    Column("venue_room_ids", JSON, nullable=False),
)

memberships = Table(
    "memberships",
    metadata,
    _pk(),
    _fk("provider_id", "providers.id"),
    Column("type", String(16), nullable=False),
    Column("name", String(200), nullable=False),
    Column("description", Text, nullable=False, default=""),
    Column("begin_on_first_registration", Boolean, nullable=False, default=False),
    Column("start_date", Date, nullable=True),
    Column("expiration_date", Date, nullable=True),
    Column("duration", Integer, nullable=False),
    Column("duration_unit", String(8), nullable=False, default="days"),
    Column("one_time_fee_minor", Integer, nullable=False),
    Column("price_minor", Integer, nullable=False),
    Column("use_prorate", Boolean, nullable=False, default=False),
    Column("category", Integer, nullable=False, default=0),
    Column("is_dropin", Boolean, nullable=False, default=False),
    Column("for_sale", Boolean, nullable=False, default=True),
    Column("allow_repeat_purchases", Boolean, nullable=False, default=True),
    Column("visible_to_customers", Boolean, nullable=False, default=True),
    Column("purchasable_only_by_provider", Boolean, nullable=False, default=False),
    Column("new_customers_only", Boolean, nullable=False, default=False),
    Column("penalty_system", Integer, nullable=True),
    Column("is_draft", Boolean, nullable=False, default=False),
    Column("incomplete_reasons", JSON, nullable=False),
    Column("shareable", Boolean, nullable=False, default=False),
    # How many of its customer memberships are active: kept by triggers on
    # ``customer_memberships`` (migration 0005), so reading it costs nothing.
    Column("active_member_count", Integer, nullable=False, server_default="0"),
    CheckConstraint("type IN ('pack', 'recurring_plan', 'prepaid_plan')", name="type"),
    CheckConstraint("duration_unit IN ('days', 'weeks', 'months')", name="duration_unit"),
)

offering_type_memberships = Table(
    "offering_type_memberships",
    metadata,
    Column(
        "offering_type_id",
        Id,
        ForeignKey("offering_types.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("membership_id", Id, ForeignKey("memberships.id", ondelete="CASCADE"), primary_key=True),
    Index("ix_offering_type_memberships_membership", "membership_id"),
)

customer_memberships = Table(
    "customer_memberships",
    metadata,
    _pk(),
    _fk("customer_profile_id", "customer_profiles.id"),
    _fk("membership_id", "memberships.id"),
    Column("active", Boolean, nullable=False, default=True),
    Column("starts_on", Date, nullable=False),
    Column("ends_on", Date, nullable=True),
    # A membership's active member count reads this index alone, however many
    # customers the provider has.
    Index("ix_customer_memberships_membership_active", "membership_id", "active"),
)

registration_timelines = Table(
    "registration_timelines",
    metadata,
    _pk(),
    _fk("offering_type_id", "offering_types.id"),
    Column("name", String(256), nullable=True),
    Column("audience_type", String(24), nullable=False),
    _fk("thumbnail_id", "images.id", nullable=True),
    CheckConstraint(
        "audience_type IN ('everyone', 'business_only', 'membership_holders', "
        "'specific_memberships', 'specific_customers', 'private_url')",
        name="audience_type",
    ),
)

courses = Table(
    "courses",
    metadata,
    _pk(),
    _fk("provider_id", "providers.id"),
    _fk("offering_type_id", "offering_types.id"),
    Column("name", String(256), nullable=True),
    Column("published", Boolean, nullable=False, default=True),
)

course_sessions = Table(
    "course_sessions",
    metadata,
    _pk(),
    _fk("provider_id", "providers.id", index=False),
    _fk("course_id", "courses.id", index=False),
    _fk("venue_id", "venues.id"),
    Column("starts_at", DateTime(timezone=True), nullable=False),
    Column("ends_at", DateTime(timezone=True), nullable=False),
    Column("status", String(16), nullable=False, default="active"),
    Column("max_occupancy", Integer, nullable=True),
    # How many of the session's attendances are ATTENDING_STATUSES: kept by triggers on
    # ``attendances`` (migration 0004), so reading it costs nothing per session.
    Column("attending_count", Integer, nullable=False, server_default="0"),
    CheckConstraint("status IN ('active', 'cancelled')", name="status"),
    CheckConstraint("ends_at >= starts_at", name="ends_after_start"),
    # A list page in start order, skipping the pages before it, from the index alone
    # (PostgreSQL's index does not end with the id as SQLite's does; migration 0007).
    Index("ix_course_sessions_provider_starts_at", "provider_id", "starts_at", "id"),
    # A course's sessions come in start order: filter and sort from one index, so the
    # planner never walks the provider's whole calendar to find one course.
    Index("ix_course_sessions_course_starts_at", "course_id", "starts_at"),
)

course_session_instructors = Table(
    "course_session_instructors",
    metadata,
    Column(
        "course_session_id",
        Id,
        ForeignKey("course_sessions.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("instructor_id", Id, ForeignKey("instructors.id", ondelete="CASCADE"), primary_key=True),
    Index("ix_course_session_instructors_instructor", "instructor_id", "course_session_id"),
)

ATTENDING_STATUSES: tuple[str, ...] = ("registered", "attended")

attendances = Table(
    "attendances",
    metadata,
    _pk(),
    _fk("course_session_id", "course_sessions.id", index=False),
    _fk("customer_profile_id", "customer_profiles.id"),
    Column("status", String(16), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    CheckConstraint(
        "status IN ('registered', 'attended', 'waitlisted', 'cancelled', 'no_show')",
        name="status",
    ),
    Index("ix_attendances_session_status", "course_session_id", "status"),
)

#: One row counting the writes committed to the database, on PostgreSQL: a statement
#: trigger on every other table adds one to it in the writing transaction, so a
#: statement that reads it sees the count that matches the rest of what it reads.
#: Workers keep what they remember (tokens, access, counts) stamped with the count it
#: was read at, and trust it only while the count has not moved (``memo``). SQLite has
#: ``PRAGMA data_version`` for this; the table is there too, unused, so that the
#: schema is one.
data_version = Table(
    "data_version",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("version", BigInteger, nullable=False, server_default="0"),
    CheckConstraint("id = 1", name="one_row"),
)
