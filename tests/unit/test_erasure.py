"""Which person an erasure names, which rejected messages carry them, and how the two endpoints are
described in OpenAPI."""

from __future__ import annotations

import orjson
import pytest

from app.api.persons import EXPORTED_NAMES, ExportedEvent, ExportedFacts
from app.config import Settings
from app.domain.erasure import InvalidPersonId, PersonRef, identifiers_of, parse_person_id
from app.main import create_app
from app.store.erasure import EVENT_COLUMNS, EVENT_FACTS


def test_person_ids_as_the_api_shows_them() -> None:
    assert parse_person_id("u:42") == PersonRef("u:42", "42", None)
    assert parse_person_id("a:anon:1/x") == PersonRef("a:anon:1/x", None, "anon:1/x")
    for bad in ("42", "u:", "a:", "x:1", "U:1", "", "u:" + "x" * 513, "a:\x00"):
        with pytest.raises(InvalidPersonId):
            parse_person_id(bad)


def test_the_export_models_are_the_stored_event_and_its_derived_facts() -> None:
    """The export's models document the stored columns (nullable as stored); their fields are those columns."""
    assert tuple(ExportedFacts.model_fields) == EVENT_FACTS  # EventFacts' fields, less event_id
    assert list(ExportedEvent.model_fields) == [*(EXPORTED_NAMES.get(c, c) for c in EVENT_COLUMNS), "facts"]


ALICE = identifiers_of(
    parse_person_id("u:alice"), ["anon-1"], [("email", " Alice@Example.COM "), ("phone", "+49 170 1234567")]
)


@pytest.mark.parametrize(
    "raw",
    [
        {"type": "track", "userId": "alice"},
        {"type": "page", "anonymousId": "anon-1", "userId": "someone"},
        {"type": "alias", "previousId": "anon-1"},
        {"type": "identify", "traits": {"email": "alice@example.com"}},
        {"type": "identify", "context": {"traits": {"phone": "49-170-1234567"}}},
        {"type": "track", "properties": {"email": "ALICE@example.com"}},
    ],
)
def test_a_rejected_message_that_names_the_person(raw: dict[str, object]) -> None:
    assert ALICE.carries(raw)
    text = orjson.dumps(raw).decode().lower()
    assert any(n in text for n in ALICE.needles()) or "49-170" in text  # the prefilter finds it (phone: as sent)


@pytest.mark.parametrize(
    "raw",
    [
        {"type": "track", "userId": "alicea"},
        {"type": "track", "anonymousId": "alice"},  # a userId is not an anonymousId
        {"type": "identify", "traits": {"email": "bob@example.com", "phone": "123"}},
        {"type": "track", "userId": True},
        "alice",
        ["alice"],
    ],
)
def test_a_rejected_message_of_someone_else(raw: object) -> None:
    assert not ALICE.carries(raw)


def test_an_anonymous_person_is_named_by_their_anonymous_id_and_integers_count_as_ids() -> None:
    ids = identifiers_of(parse_person_id("a:7"), [], [])
    assert ids.carries({"anonymousId": 7}) and not ids.carries({"userId": 7})
    assert ids.needles() == ["7"]


def test_both_endpoints_take_the_admin_key_and_describe_their_answers() -> None:
    spec = create_app(Settings(database_url="postgresql://unused/unused")).openapi()
    erase = spec["paths"]["/v1/persons/{person_id}"]["delete"]
    export = spec["paths"]["/v1/persons/{person_id}/export"]["get"]
    for operation, model in ((erase, "ErasureAnswer"), (export, "ExportAnswer")):
        assert operation["security"] == [{"adminKey": []}]
        schema = operation["responses"]["200"]["content"]["application/json"]["schema"]
        assert schema == {"$ref": f"#/components/schemas/{model}"}
        assert {"401", "403", "404", "422"} <= set(operation["responses"])
    exported = spec["components"]["schemas"]["ExportAnswer"]["properties"]
    assert {"events", "pending_events", "sessions", "identity_links", "person_state", "rejected_messages"} <= set(
        exported
    )
