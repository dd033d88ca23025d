"""The schema in code (app/store/tables.py) and the hand-written SQL that names its columns from it."""

from __future__ import annotations

from dataclasses import fields
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import CheckConstraint, PrimaryKeyConstraint, UniqueConstraint

from app.domain.model import Stage
from app.domain.normalize import IncomingEvent
from app.domain.person import EventFacts
from app.store import inbox, persons, tables

PREFIXES = {PrimaryKeyConstraint: "pk_", UniqueConstraint: "uq_", CheckConstraint: "ck_"}


def test_every_constraint_and_index_is_named_by_its_kind() -> None:
    for table in tables.metadata.tables.values():
        for constraint in table.constraints:
            assert str(constraint.name).startswith(PREFIXES[type(constraint)] + table.name), constraint.name
        for index in table.indexes:
            assert str(index.name).startswith(f"ix_{table.name}_"), index.name


def test_the_convention_names_primary_keys_and_checks() -> None:
    assert tables.site.primary_key.name == "pk_site"
    checks = {c.name for c in tables.site_key.constraints if isinstance(c, CheckConstraint)}
    assert checks == {"ck_site_key_kind"}


def test_an_inbox_record_follows_the_copied_columns() -> None:
    at = datetime(2026, 3, 1, tzinfo=UTC)
    event = IncomingEvent(
        message_id="m1", type="track", event_at=at, received_at=at + timedelta(seconds=1), anonymous_id="a1",
        user_id="u1", event_name="Signed Up", name="n", sent_at=at + timedelta(seconds=2), properties={"p": 1},
        traits={"t": 2}, context={"c": 3}, path="/x", url="https://x.test/x", referrer="https://r.test/",
        campaign={"source": "s"}, channel="Email", device="desktop", session_hint="h1", is_bot=True,
    )  # fmt: skip
    stored_later = {"event_id", "ruleset_version"}  # an Event's, decided by derivation
    assert {f.name for f in fields(IncomingEvent)} - stored_later == set(inbox.COLUMNS[1:])
    assert inbox._record(7, event) == (7, *(getattr(event, c) for c in inbox.COLUMNS[1:]))


def test_fact_values_follow_the_fact_columns() -> None:
    facts = EventFacts(event_id=1, stage=Stage.CONVERT, goal="order", value=9.5, is_lead=False, is_order=True,
                       is_first_event=False, is_first_order=True, is_repeat_order=False, session_key="s1",
                       nps_score=None, ruleset_version=3)  # fmt: skip
    expected = tuple(Stage.CONVERT.value if c == "stage" else getattr(facts, c) for c in persons.FACT_COLUMNS)
    assert persons.fact_values(facts) == expected
    assert inbox.ARRIVING_FACT_COLUMNS[1:] == persons.FACT_COLUMNS


def test_casts_come_from_the_column_types() -> None:
    assert tables.sql_types(tables.person_state, ("last_event_at", "revenue", "orders")) == (
        "TIMESTAMP WITH TIME ZONE", "DOUBLE PRECISION", "INTEGER",
    )  # fmt: skip


def test_a_column_list_names_only_columns_of_its_table() -> None:
    with pytest.raises(KeyError, match="no_such_column"):
        tables.columns(tables.inbox, "no_such_column")
    with pytest.raises(KeyError):
        tables.sql_types(tables.session, ("no_such_column",))
