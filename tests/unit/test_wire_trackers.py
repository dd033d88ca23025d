"""PostHog and Snowplow mappings onto Segment messages (app/wire): pure, edge cases by hand."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from app.api.trackers import POSTHOG_PATHS, router
from app.domain.normalize import IncomingEvent, Receipt, normalize
from app.errors import BadRequest
from app.wire.posthog import posthog_messages
from app.wire.snowplow import event_message, tp2_messages
from app.wire.webpage import b64_json_bytes, campaign_of, number, page_context

RECEIVED = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
UNSTRUCT = "iglu:com.snowplowanalytics.snowplow/unstruct_event/jsonschema/1-0-0"
CONTEXTS = "iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-1"


def normalized(message: dict[str, Any]) -> IncomingEvent:
    result = normalize({k: v for k, v in message.items() if k != "writeKey"}, Receipt(received_at=RECEIVED))
    assert isinstance(result, IncomingEvent), result
    return result


def b64url(value: Any, *, padded: bool) -> str:
    encoded = base64.urlsafe_b64encode(json.dumps(value).encode()).decode()
    return encoded if padded else encoded.rstrip("=")


# ---------------------------------------------------------------- shared helpers


@pytest.mark.parametrize("padded", [True, False])
def test_base64url_with_and_without_padding(padded: bool) -> None:
    value = {"a": "ü?>>", "n": 1}  # '?>>' makes '-' and '_' appear in base64url
    encoded = b64url(value, padded=padded)
    assert encoded.endswith("=") if padded else "=" not in encoded
    assert "-" in encoded or "_" in encoded
    assert json.loads(b64_json_bytes(encoded)) == value


def test_base64_standard_alphabet_and_whitespace_are_accepted() -> None:
    value = {"x": "???>>>"}
    standard = base64.b64encode(json.dumps(value).encode()).decode()
    assert "+" in standard or "/" in standard
    assert json.loads(b64_json_bytes(standard[:10] + "\n" + standard[10:])) == value


@pytest.mark.parametrize("bad", ["!!!", "a", "abcde"])
def test_base64_garbage_raises_value_error(bad: str) -> None:
    with pytest.raises(ValueError):
        b64_json_bytes(bad)


@pytest.mark.parametrize(
    ("raw", "parsed"),
    [("99.50", 99.5), ("2", 2), (" 3 ", 3), ("-1.5e2", -150.0), ("abc", "abc"), ("nan", "nan"), ("inf", "inf"), (4, 4)],
)
def test_string_typed_numbers(raw: Any, parsed: Any) -> None:
    assert number(raw) == parsed
    assert type(number(raw)) is type(parsed)


def test_page_context_and_campaign_from_url() -> None:
    url = "https://shop.example/a/b?utm_source=news&utm_medium=email&utm_campaign=spring&utm_term=&x=1"
    assert page_context(url, referrer=None, title="T") == {"url": url, "path": "/a/b", "title": "T"}
    assert campaign_of(url) == {"source": "news", "medium": "email", "name": "spring"}
    assert campaign_of(None) == {} and campaign_of("https://[bad") == {}


# ---------------------------------------------------------------- Snowplow


def sp(**fields: Any) -> dict[str, Any]:
    return {
        "e": "pv",
        "eid": "e-1",
        "duid": "d-1",
        "aid": "wk-1",
        "dtm": "1772366400000",  # 2026-03-01T12:00:00Z
        "stm": "1772366401000",
        "tv": "js-3.24.0",
        **fields,
    }


def test_snowplow_page_view_fields() -> None:
    message = event_message(
        sp(url="https://shop.example/p?utm_source=x&utm_medium=cpc", page="P", refr="https://google.com/", uid="u-1")
    )
    assert message is not None
    assert message["type"] == "page" and message["name"] == "P"
    assert (message["messageId"], message["anonymousId"], message["userId"]) == ("e-1", "d-1", "u-1")
    assert message["writeKey"] == "wk-1"
    assert message["timestamp"] == 1772366400000 and message["sentAt"] == 1772366401000  # strings -> ints
    assert message["context"]["page"] == {
        "url": "https://shop.example/p?utm_source=x&utm_medium=cpc",
        "path": "/p",
        "referrer": "https://google.com/",
        "title": "P",
    }
    assert message["context"]["campaign"] == {"source": "x", "medium": "cpc"}
    event = normalized(message)
    assert event.event_at == RECEIVED - timedelta(seconds=1)  # receivedAt - (stm - dtm)
    assert event.channel == "Paid Search"


def test_snowplow_true_timestamp_is_taken_as_is() -> None:
    message = event_message(sp(ttm="1772360000000"))
    assert message is not None
    assert message["timestamp"] == 1772360000000 and message["sentAt"] is None
    assert normalized(message).event_at == datetime.fromtimestamp(1772360000, tz=UTC)


def test_snowplow_bad_timestamp_string_is_rejected_by_normalize() -> None:
    message = event_message(sp(dtm="yesterday"))
    assert message is not None
    result = normalize(message, Receipt(received_at=RECEIVED))
    assert not isinstance(result, IncomingEvent) and result.code == "invalid_timestamp"


@pytest.mark.parametrize("padded", [True, False])
@pytest.mark.parametrize("field", ["ue_px", "ue_pr"])
def test_snowplow_unstructured_add_to_cart(padded: bool, field: str) -> None:
    inner = {
        "schema": "iglu:com.snowplowanalytics.snowplow/add_to_cart/jsonschema/1-0-0",
        "data": {"sku": "s-1", "quantity": 2, "unitPrice": 4.5, "currency": "EUR"},
    }
    envelope = {"schema": UNSTRUCT, "data": inner}
    value = b64url(envelope, padded=padded) if field == "ue_px" else json.dumps(envelope)
    message = event_message(sp(e="ue", **{field: value}))
    assert message is not None
    assert (message["type"], message["event"]) == ("track", "Product Added")
    assert message["properties"] == {"product_id": "s-1", "sku": "s-1", "price": 4.5, "quantity": 2, "currency": "EUR"}


def test_snowplow_unstructured_other_schema_is_named_by_it() -> None:
    inner = {"schema": "iglu:com.acme/video_played/jsonschema/1-0-0", "data": {"id": "v"}}
    message = event_message(sp(e="ue", ue_px=b64url({"schema": UNSTRUCT, "data": inner}, padded=False)))
    assert message is not None
    assert message["event"] == "video_played"
    assert message["properties"] == {"id": "v", "schema": inner["schema"]}


def test_snowplow_screen_view_is_a_screen() -> None:
    inner = {"schema": "iglu:com.snowplowanalytics.mobile/screen_view/jsonschema/1-0-0", "data": {"name": "Home"}}
    message = event_message(sp(e="ue", ue_pr=json.dumps({"schema": UNSTRUCT, "data": inner})))
    assert message is not None and (message["type"], message["name"]) == ("screen", "Home")


@pytest.mark.parametrize(
    ("fields", "why"),
    [
        ({"e": "ue", "ue_px": "%%%"}, "snowplow:invalid_ue_px"),
        ({"e": "ue", "ue_pr": "{nope"}, "snowplow:invalid_ue_pr"),
        ({"e": "ue"}, "snowplow:invalid_self_describing_event"),
        ({"e": "xx"}, "snowplow:unknown_event_type:xx"),
        ({"e": ""}, "snowplow:missing_event_type"),
    ],
)
def test_snowplow_unmappable_events_become_rejected_messages(fields: dict[str, str], why: str) -> None:
    message = event_message(sp(**fields))
    assert message is not None
    assert message["type"] == why and message["messageId"] == "e-1"
    assert message["snowplow"]["eid"] == "e-1"  # the raw parameters are kept for failed_event
    result = normalize(message, Receipt(received_at=RECEIVED))
    assert not isinstance(result, IncomingEvent) and result.code == "invalid_type"


def test_snowplow_structured_events() -> None:
    cart = event_message(sp(e="se", se_ca="shop", se_ac="add_to_cart", se_la="sku", se_pr="1", se_va="19.90"))
    assert cart is not None
    assert cart["event"] == "Product Added"
    assert cart["properties"] == {
        "category": "shop",
        "action": "add_to_cart",
        "label": "sku",
        "property": "1",
        "value": 19.9,
    }
    other = event_message(sp(e="se", se_ca="video", se_ac="play"))
    assert (
        other is not None
        and other["event"] == "play"
        and other["properties"] == {"category": "video", "action": "play"}
    )


def test_snowplow_transaction_and_item_with_string_numbers() -> None:
    order = event_message(sp(e="tr", tr_id="o-1", tr_tt="99.50", tr_tx="15.9", tr_sh="0", tr_cu="EUR"))
    assert order is not None and order["event"] == "Order Completed"
    assert order["properties"] == {"order_id": "o-1", "revenue": 99.5, "tax": 15.9, "shipping": 0, "currency": "EUR"}
    assert normalized(order).order_id == "o-1"
    item = event_message(sp(e="ti", ti_id="o-1", ti_sk="s-1", ti_pr="4.50", ti_qu="2"))
    assert item is not None and item["event"] == "Transaction Item"
    assert item["properties"] == {"transaction_id": "o-1", "sku": "s-1", "price": 4.5, "quantity": 2}
    assert normalized(item).order_id is None  # an item is not the order


def test_snowplow_ecommerce_plugin_transaction() -> None:
    inner = {
        "schema": "iglu:com.snowplowanalytics.snowplow.ecommerce/snowplow_ecommerce_action/jsonschema/1-0-2",
        "data": {"type": "transaction"},
    }
    entities = {
        "schema": CONTEXTS,
        "data": [
            {
                "schema": "iglu:com.snowplowanalytics.snowplow.ecommerce/transaction/jsonschema/1-0-0",
                "data": {"transaction_id": "t-9", "revenue": 45.5, "currency": "USD", "payment_method": "card"},
            },
            {
                "schema": "iglu:com.snowplowanalytics.snowplow.ecommerce/product/jsonschema/1-0-0",
                "data": {"id": "p-1", "price": 45.5, "currency": "USD", "quantity": 1},
            },
            {
                "schema": "iglu:com.snowplowanalytics.snowplow/client_session/jsonschema/1-0-2",
                "data": {"sessionId": "cs-1", "userId": "d-from-session"},
            },
        ],
    }
    params = sp(
        e="ue", ue_px=b64url({"schema": UNSTRUCT, "data": inner}, padded=False), cx=b64url(entities, padded=False)
    )
    del params["duid"]
    message = event_message(params)
    assert message is not None
    assert message["event"] == "Order Completed"
    assert message["properties"]["order_id"] == "t-9" and message["properties"]["revenue"] == 45.5
    assert message["properties"]["products"] == [{"product_id": "p-1", "price": 45.5, "quantity": 1, "currency": "USD"}]
    assert message["anonymousId"] == "d-from-session"  # no duid: the client_session entity's
    assert message["context"]["sessionId"] == "cs-1"
    assert len(message["context"]["snowplow"]["contexts"]) == 3


def test_snowplow_undecodable_contexts_are_not_fatal() -> None:
    message = event_message(sp(cx="%%%"))
    assert message is not None and message["type"] == "page" and "snowplow" not in message["context"]


def test_snowplow_page_ping_is_dropped_and_write_key_parameter_wins() -> None:
    assert event_message(sp(e="pp")) is None
    message = event_message(sp(writeKey="wk-explicit"))
    assert message is not None and message["writeKey"] == "wk-explicit"


def test_snowplow_tp2_body_shapes() -> None:
    body = {"schema": "iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4", "data": [sp(), sp(e="pp")]}
    assert [m["type"] for m in tp2_messages(body)] == ["page"]
    assert [m["type"] for m in tp2_messages([sp()])] == ["page"]
    assert [m["type"] for m in tp2_messages(sp())] == ["page"]
    for bad in ({"data": "x"}, "str", 3, {"schema": "s"}):
        with pytest.raises(BadRequest):
            tp2_messages(bad)
    assert tp2_messages({"data": [5]})[0]["type"] == "snowplow:invalid_event"


# ---------------------------------------------------------------- PostHog


def ph(event: str = "Signed Up", distinct_id: Any = "anon-1", **properties: Any) -> dict[str, Any]:
    return {
        "event": event,
        "distinct_id": distinct_id,
        "uuid": "0190-uuid",
        "timestamp": "2026-03-01T11:00:00+00:00",
        "properties": properties,
    }


def one(body: Any, **kwargs: Any) -> dict[str, Any]:
    (message,) = posthog_messages(body, **kwargs)
    return message


def test_posthog_track_defaults() -> None:
    message = one({"api_key": "phc_1", "batch": [ph(plan="pro")], "sent_at": "2026-03-01T11:00:05+00:00"})
    assert message["type"] == "track" and message["event"] == "Signed Up"
    assert (message["messageId"], message["anonymousId"]) == ("0190-uuid", "anon-1")
    assert "userId" not in message
    assert message["writeKey"] == "phc_1" and message["sentAt"] == "2026-03-01T11:00:05+00:00"
    assert message["properties"] == {"plan": "pro"}
    assert normalized(message).event_at == RECEIVED - timedelta(seconds=5)


def test_posthog_pageview_context() -> None:
    event = ph(
        "$pageview",
        **{
            "$current_url": "https://shop.example/x?utm_source=fb&utm_medium=paid_social",
            "$pathname": "/x",
            "$referrer": "$direct",
            "title": "X",
            "$session_id": "s-1",
            "$useragent": "UA/1.0",
        },
    )
    message = one([event])
    assert message["type"] == "page" and message["name"] == "X"
    assert message["context"]["page"] == {
        "url": "https://shop.example/x?utm_source=fb&utm_medium=paid_social",
        "path": "/x",
        "title": "X",
    }
    assert message["context"]["campaign"] == {"source": "fb", "medium": "paid_social"}
    assert message["context"]["sessionId"] == "s-1" and message["context"]["userAgent"] == "UA/1.0"


def test_posthog_utm_properties_win_over_the_url() -> None:
    event = ph(**{"$current_url": "https://s.example/?utm_source=url", "utm_source": "prop", "utm_medium": "email"})
    assert one([event])["context"]["campaign"] == {"source": "prop", "medium": "email"}


def test_posthog_identify_links_and_names_the_person() -> None:
    event = ph(
        "$identify",
        "user-1",
        **{"$anon_distinct_id": "anon-1", "$set": {"a": 1, "b": 1}, "$set_once": {"b": 0, "c": 0}},
    )
    identify, link = posthog_messages([event])
    assert identify["type"] == "identify"
    assert (identify["userId"], identify["anonymousId"]) == ("user-1", "anon-1")
    assert identify["traits"] == {"a": 1, "b": 1, "c": 0}  # $set wins over $set_once
    assert "$set" not in identify["properties"] and "$anon_distinct_id" not in identify["properties"]
    assert link == {
        "type": "alias",
        "messageId": "0190-uuid:identified",
        "previousId": "user-1",
        "userId": "user-1",
        "timestamp": identify["timestamp"],
        "sentAt": None,
        "context": identify["context"],
    }
    assert normalized(link).anonymous_id == "user-1"


def test_posthog_python_set_has_set_at_top_level() -> None:
    event = ph("$set", "user-1")
    event["$set"] = {"plan": "pro"}
    message = one([event])
    assert message["type"] == "identify" and message["traits"] == {"plan": "pro"}
    assert message["anonymousId"] == "user-1"


def test_posthog_create_alias() -> None:
    event = ph("$create_alias", "old-id", alias="new-id")
    event["properties"]["distinct_id"] = "old-id"
    message = one([event])
    assert message["type"] == "alias"
    assert (message["previousId"], message["userId"]) == ("old-id", "new-id")
    assert normalized(message).anonymous_id == "old-id"


@pytest.mark.parametrize("flag", [True, "true"])
def test_posthog_identified_events_use_user_id_and_device(flag: Any) -> None:
    message = one([ph(distinct_id="user-1", **{"$is_identified": flag, "$device_id": "dev-1"})])
    assert (message["userId"], message["anonymousId"]) == ("user-1", "dev-1")
    same = one([ph(distinct_id="user-1", **{"$user_state": "identified", "$device_id": "user-1"})])
    assert (same["userId"], same["anonymousId"]) == ("user-1", None)
    anonymous = one([ph(distinct_id="anon-9", **{"$is_identified": False, "$device_id": "anon-9"})])
    assert anonymous["anonymousId"] == "anon-9" and "userId" not in anonymous


def test_posthog_user_id_property() -> None:
    message = one([ph(distinct_id="anon-1", **{"$user_id": "u-7"})])
    assert (message["userId"], message["anonymousId"]) == ("u-7", "anon-1")


def test_posthog_numeric_distinct_id_and_properties_distinct_id() -> None:
    assert one([ph(distinct_id=42)])["anonymousId"] == "42"
    event = ph(distinct_id=None)
    event["properties"] = {"distinct_id": "from-props"}
    assert one([event])["anonymousId"] == "from-props"


def test_posthog_ip_goes_to_context_only() -> None:
    message = one([ph(**{"$ip": "203.0.113.9", "token": "phc_t"})])
    assert message["context"]["ip"] == "203.0.113.9"
    assert message["properties"] == {} and message["writeKey"] == "phc_t"
    top = ph()
    top["ip"] = "198.51.100.1"
    assert one([top])["context"]["ip"] == "198.51.100.1"
    assert "ip" not in normalized(one([top])).context


def test_posthog_key_precedence() -> None:
    event = ph(token="from-props")
    assert one({"api_key": "body", "batch": [event]})["writeKey"] == "from-props"
    event["api_key"] = "from-event"
    assert one({"api_key": "body", "batch": [event]})["writeKey"] == "from-event"
    assert one({"token": "body", "batch": [ph()]})["writeKey"] == "body"
    assert "writeKey" not in one([ph()])


def test_posthog_offset_and_query_send_time() -> None:
    event = ph()
    del event["timestamp"]
    event["offset"] = 1500
    message = one([event], received_at=RECEIVED, query={"_": "1772366405000"})
    assert message["timestamp"] == (RECEIVED - timedelta(milliseconds=1500)).isoformat()
    assert message["sentAt"] is None  # already on the server's clock
    assert normalized(message).event_at == RECEIVED - timedelta(milliseconds=1500)
    timed = one([ph()], query={"_": "1772366405000"})
    assert timed["sentAt"] == 1772366405000
    assert one([ph()], query={"_": "abc"})["sentAt"] is None


def test_posthog_screen_and_group() -> None:
    assert one([ph("$screen", **{"$screen_name": "Home"})])["name"] == "Home"
    group = one([ph("$groupidentify", **{"$group_type": "company", "$group_key": "acme", "$group_set": {"n": 1}})])
    assert (group["type"], group["groupId"], group["traits"]) == ("group", "acme", {"n": 1})


def test_posthog_body_shapes_and_bad_events() -> None:
    assert one(ph())["event"] == "Signed Up"  # one event
    assert one({"data": ph()})["event"] == "Signed Up"
    assert [m["event"] for m in posthog_messages({"batch": [ph(), ph("b")]})] == ["Signed Up", "b"]
    for bad in ({"x": 1}, "str", 5, {"batch": "no"}):
        with pytest.raises(BadRequest):
            posthog_messages(bad)
    assert one([7]) == {"posthog": 7}  # normalize rejects it: not an object
    bad_props = ph()
    bad_props["properties"] = "oops"
    result = normalize(one([bad_props]), Receipt(received_at=RECEIVED))
    assert not isinstance(result, IncomingEvent) and result.code == "invalid_field"
    missing_name = normalize(one([ph("")]), Receipt(received_at=RECEIVED))
    assert not isinstance(missing_name, IncomingEvent) and missing_name.code == "missing_event"


# ---------------------------------------------------------------- routes


def test_posthog_paths_are_served_with_and_without_trailing_slash() -> None:
    paths = {route.path for route in router.routes}  # type: ignore[attr-defined]
    for path in POSTHOG_PATHS:
        assert {path, f"{path}/"} <= paths
    assert {"/com.snowplowanalytics.snowplow/tp2", "/i", "/v1/b"} <= paths
    assert {f"/v1/{letter}" for letter in "tpiasg"} <= paths


@pytest.mark.parametrize("kind", [{"pv": 1}, ["pv"], 7, None])
def test_an_event_kind_that_is_not_text_is_refused_by_name_not_a_crash(kind: Any) -> None:
    message = event_message({"e": kind, "aid": "site", "duid": "d1"})
    assert message is not None and str(message["type"]).startswith("snowplow:")
