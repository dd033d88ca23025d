"""extend_person (the append fast path): extending stored events with later ones gives exactly what
deriving all of them at once gives, wherever the cut falls."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from app.domain.model import Event
from app.domain.person import SessionFacts, derive_person_state, extend_person
from app.pipeline.rulesets import default_ruleset

T0 = datetime(2026, 3, 1, tzinfo=UTC)
KINDS = [
    ("page", None),
    ("track", "Order Completed"),
    ("track", "Signed Up"),
    ("track", "Product Viewed"),
    ("track", "Survey Answered"),
    ("identify", None),
]


@st.composite
def event_lists(draw: st.DrawFn) -> list[Event]:
    events = []
    for n in range(draw(st.integers(1, 14))):
        kind, name = draw(st.sampled_from(KINDS))
        events.append(Event(
            message_id=f"m{n:02d}", type=kind, event_name=name, event_id=n + 1,
            event_at=T0 + timedelta(minutes=10 * draw(st.integers(0, 60))),  # ties and exact 30-minute gaps
            properties={"revenue": draw(st.integers(1, 50)), "score": draw(st.integers(0, 10))},
            session_hint=draw(st.sampled_from([None, None, "s1", "s2"])),
            is_bot=draw(st.integers(0, 9)) == 0, channel=draw(st.sampled_from(["Direct", "Email"])),
        ))  # fmt: skip
    return events


def ruleset_for(version: int | None) -> object:
    return default_ruleset()


def _merged(before: list[SessionFacts], parts: list[SessionFacts]) -> dict[str, SessionFacts]:
    """What the store's upsert does: a part extends an existing session, or starts a new one."""
    out = {s.session_key: s for s in before}
    for part in parts:
        old = out.get(part.session_key)
        out[part.session_key] = part if old is None else replace(
            old, ended_at=max(old.ended_at, part.ended_at), event_count=old.event_count + part.event_count,
            is_bounce=False)  # fmt: skip
    return out


@settings(max_examples=300, deadline=None)
@given(events=event_lists(), cut=st.integers(0, 14))
def test_extending_equals_deriving_everything(events: list[Event], cut: int) -> None:
    ordered = sorted(events, key=lambda e: (e.event_at, e.message_id))
    old, new = ordered[:cut], ordered[cut:]
    full_facts, full_sessions, full_state = derive_person_state("p", events, ruleset_for)  # type: ignore[arg-type]
    old_facts, old_sessions, state = derive_person_state("p", old, ruleset_for)  # type: ignore[arg-type]
    extended = extend_person("p", state, new, ruleset_for)  # type: ignore[arg-type]
    assert extended is not None
    new_facts, parts, final = extended
    assert sorted(old_facts + new_facts, key=lambda f: f.event_id) == sorted(full_facts, key=lambda f: f.event_id)
    assert _merged(old_sessions, parts) == {s.session_key: s for s in full_sessions}
    assert final == full_state


def test_an_event_before_the_last_stored_one_needs_the_full_derivation() -> None:
    stored = [Event(message_id="b", type="page", event_at=T0 + timedelta(hours=1), event_id=1)]
    _, _, state = derive_person_state("p", stored, ruleset_for)  # type: ignore[arg-type]
    late = Event(message_id="a", type="page", event_at=T0, event_id=2)
    assert extend_person("p", state, [late], ruleset_for) is None  # type: ignore[arg-type]
