"""normalize(): wire message -> IncomingEvent or a Rejection naming the field (DESIGN §2)."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from app.domain.normalize import MAX_ID_LENGTH, IncomingEvent, Rejection, normalize
from tests.factories import RECEIVED_AT, make_raw, make_receipt

IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1"
)
IPAD = (
    "Mozilla/5.0 (iPad; CPU OS 16_6 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/16.6 Mobile/15E148 Safari/604.1"
)
DESKTOP = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36"
)
ANDROID = (
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Mobile Safari/537.36"
)
GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"


def accepted(raw: Any, **receipt: Any) -> IncomingEvent:
    result = normalize(raw, make_receipt(**receipt))
    assert isinstance(result, IncomingEvent), result
    return result


def rejected(raw: Any, **receipt: Any) -> Rejection:
    result = normalize(raw, make_receipt(**receipt))
    assert isinstance(result, Rejection), result
    return result


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def test_a_valid_track_message() -> None:
    event = accepted(make_raw())
    assert event.message_id == "msg-1"
    assert (event.type, event.event_name, event.anonymous_id, event.user_id) == (
        "track",
        "Order Completed",
        "anon-1",
        None,
    )
    assert event.event_at == datetime(2024, 5, 1, 12, tzinfo=UTC)
    assert event.received_at == RECEIVED_AT
    assert event.sent_at is None
    assert event.properties == {"revenue": 42.5, "order_id": "o-1"}
    assert event.order_id == "o-1"
    assert (event.channel, event.device, event.is_bot) == ("Direct", "unknown", False)


# ---- rejections ---------------------------------------------------------------------------------

REJECTIONS = [
    pytest.param("not an object", "invalid_message", "message", id="string"),
    pytest.param([make_raw()], "invalid_message", "message", id="list"),
    pytest.param(None, "invalid_message", "message", id="null"),
    pytest.param(make_raw(type="click"), "invalid_type", "type", id="unknown-type"),
    pytest.param({k: v for k, v in make_raw().items() if k != "type"}, "invalid_type", "type", id="no-type"),
    pytest.param(make_raw(type=5), "invalid_type", "type", id="type-int"),
    pytest.param(make_raw(anonymousId=None), "missing_identity", "anonymousId", id="no-ids"),
    pytest.param(make_raw(anonymousId="", userId=""), "missing_identity", "anonymousId", id="empty-ids"),
    pytest.param(make_raw(type="alias", anonymousId=None, userId="u1"), "missing_identity", "previousId", id="alias"),
    pytest.param(make_raw(type="alias", previousId="a0", anonymousId=None), "missing_identity", "previousId", id="al2"),
    pytest.param(make_raw(userId={"id": 1}), "invalid_identity", "userId", id="userId-object"),
    pytest.param(make_raw(userId=True), "invalid_identity", "userId", id="userId-bool"),
    pytest.param(make_raw(anonymousId=["a"]), "invalid_identity", "anonymousId", id="anonymousId-list"),
    pytest.param(make_raw(anonymousId="a" * (MAX_ID_LENGTH + 1)), "invalid_identity", "anonymousId", id="long-anon"),
    pytest.param(make_raw(userId="u" * (MAX_ID_LENGTH + 1)), "invalid_identity", "userId", id="long-user"),
    pytest.param(make_raw(messageId="m" * (MAX_ID_LENGTH + 1)), "invalid_message_id", "messageId", id="long-messageId"),
    pytest.param(make_raw(messageId=["x"]), "invalid_message_id", "messageId", id="messageId-list"),
    pytest.param(make_raw(messageId=True), "invalid_message_id", "messageId", id="messageId-bool"),
    pytest.param(make_raw(event=None), "missing_event", "event", id="track-no-event"),
    pytest.param(make_raw(event="   "), "missing_event", "event", id="track-blank-event"),
    pytest.param(make_raw(event=42), "missing_event", "event", id="track-event-int"),
    pytest.param(make_raw(timestamp="yesterday"), "invalid_timestamp", "timestamp", id="bad-timestamp"),
    pytest.param(make_raw(timestamp=["2024"]), "invalid_timestamp", "timestamp", id="timestamp-list"),
    pytest.param(make_raw(timestamp="1999-12-31T23:59:59Z"), "invalid_timestamp", "timestamp", id="before-2000"),
    pytest.param(make_raw(sentAt="not a time"), "invalid_timestamp", "sentAt", id="bad-sentAt"),
    pytest.param(make_raw(properties="x"), "invalid_field", "properties", id="properties-string"),
    pytest.param(make_raw(properties=[1, 2]), "invalid_field", "properties", id="properties-list"),
    pytest.param(make_raw(traits=5), "invalid_field", "traits", id="traits-int"),
    pytest.param(make_raw(context="ctx"), "invalid_field", "context", id="context-string"),
]


@pytest.mark.parametrize(("raw", "code", "field"), REJECTIONS)
def test_rejections_name_code_and_field(raw: Any, code: str, field: str) -> None:
    rejection = rejected(raw)
    assert (rejection.code, rejection.field) == (code, field)
    assert rejection.message


@pytest.mark.parametrize("kind", [["track"], {"name": "track"}])
def test_unhashable_type_is_a_rejection(kind: Any) -> None:
    rejection = rejected(make_raw(type=kind))
    assert (rejection.code, rejection.field) == ("invalid_type", "type")


def test_rejection_carries_the_message_id_when_it_is_a_string() -> None:
    assert rejected(make_raw(event=None, messageId="keep-me")).message_id == "keep-me"
    assert rejected(make_raw(event=None, messageId=None)).message_id is None
    assert rejected("nope").message_id is None


def test_batch_level_bad_sent_at_is_rejected() -> None:
    rejection = rejected(make_raw(), batch_sent_at="garbage")
    assert (rejection.code, rejection.field) == ("invalid_timestamp", "sentAt")


@pytest.mark.parametrize("kind", ["page", "screen", "identify", "group"])
def test_only_track_needs_an_event_name(kind: str) -> None:
    assert accepted(make_raw(type=kind, event=None)).event_name is None


def test_ids_at_the_length_limit_and_numeric_ids_are_accepted() -> None:
    event = accepted(make_raw(anonymousId="a" * MAX_ID_LENGTH, userId=12345, messageId=777))
    assert event.anonymous_id == "a" * MAX_ID_LENGTH
    assert (event.user_id, event.message_id) == ("12345", "777")


def test_event_name_is_stripped() -> None:
    assert accepted(make_raw(event="  Signed Up ")).event_name == "Signed Up"


# ---- time ---------------------------------------------------------------------------------------


def test_clock_skew_is_corrected_with_message_sent_at() -> None:
    # the client clock is 3 h fast: the event happened 10 s before it was sent
    event = accepted(make_raw(timestamp="2024-05-01T18:00:00Z", sentAt="2024-05-01T18:00:10Z"))
    assert event.event_at == RECEIVED_AT - timedelta(seconds=10)
    assert event.sent_at == datetime(2024, 5, 1, 18, 0, 10, tzinfo=UTC)


def test_clock_skew_is_corrected_with_batch_sent_at() -> None:
    raw = make_raw(timestamp="2024-05-01T09:00:00Z")
    event = accepted(raw, batch_sent_at="2024-05-01T09:01:00Z")
    assert event.event_at == RECEIVED_AT - timedelta(minutes=1)


def test_message_sent_at_wins_over_batch_sent_at() -> None:
    raw = make_raw(timestamp="2024-05-01T09:00:00Z", sentAt="2024-05-01T09:00:05Z")
    event = accepted(raw, batch_sent_at="2024-05-01T10:00:00Z")
    assert event.event_at == RECEIVED_AT - timedelta(seconds=5)


def test_without_sent_at_the_timestamp_is_trusted() -> None:
    assert accepted(make_raw(timestamp="2024-04-30T08:15:00+02:00")).event_at == datetime(
        2024, 4, 30, 6, 15, tzinfo=UTC
    )


def test_without_timestamp_the_receive_time_is_used() -> None:
    event = accepted(make_raw(timestamp=None, sentAt="2024-05-01T09:00:00Z"))
    assert event.event_at == RECEIVED_AT


def test_original_timestamp_is_used_when_timestamp_is_absent() -> None:
    event = accepted(make_raw(timestamp=None, originalTimestamp="2024-05-01T10:00:00Z"))
    assert event.event_at == datetime(2024, 5, 1, 10, tzinfo=UTC)


@pytest.mark.parametrize(
    ("timestamp", "expected"),
    [
        (1714564800000, datetime(2024, 5, 1, 12, tzinfo=UTC)),  # epoch milliseconds
        (1714564800, datetime(2024, 5, 1, 12, tzinfo=UTC)),  # epoch seconds
        (1714564800.5, datetime(2024, 5, 1, 12, 0, 0, 500000, tzinfo=UTC)),
        ("2024-05-01T12:00:00", datetime(2024, 5, 1, 12, tzinfo=UTC)),  # naive: UTC
        ("2024-05-01T12:00:00.123Z", datetime(2024, 5, 1, 12, 0, 0, 123000, tzinfo=UTC)),
    ],
)
def test_timestamp_forms(timestamp: Any, expected: datetime) -> None:
    assert accepted(make_raw(timestamp=timestamp)).event_at == expected


def test_more_than_24h_in_the_future_is_rejected() -> None:
    future = iso(RECEIVED_AT + timedelta(hours=24, seconds=1))
    rejection = rejected(make_raw(timestamp=future))
    assert (rejection.code, rejection.field) == ("future_timestamp", "timestamp")


def test_up_to_24h_in_the_future_is_accepted() -> None:
    assert accepted(make_raw(timestamp=iso(RECEIVED_AT + timedelta(hours=24)))).event_at == RECEIVED_AT + timedelta(
        hours=24
    )
    assert rejected(make_raw(timestamp=iso(RECEIVED_AT + timedelta(hours=2))), max_future=timedelta(hours=1))


def test_a_client_clock_days_ahead_is_corrected_not_rejected() -> None:
    ahead = RECEIVED_AT + timedelta(days=3)
    raw = make_raw(timestamp=iso(ahead - timedelta(seconds=5)), sentAt=iso(ahead))
    assert accepted(raw).event_at == RECEIVED_AT - timedelta(seconds=5)


def test_future_is_judged_after_skew_correction() -> None:
    # the timestamp looks fine, but the client says it was sent two days *before* it happened
    raw = make_raw(timestamp=iso(RECEIVED_AT), sentAt=iso(RECEIVED_AT - timedelta(days=2)))
    assert rejected(raw).code == "future_timestamp"


@pytest.mark.parametrize("timestamp", [1e20, -1e15])
def test_out_of_range_epoch_timestamp_is_a_rejection(timestamp: float) -> None:
    rejection = rejected(make_raw(timestamp=timestamp))
    assert (rejection.code, rejection.field) == ("invalid_timestamp", "timestamp")


def test_absurd_sent_at_is_a_rejection_not_an_exception() -> None:
    raw = make_raw(timestamp="2024-01-01T00:00:00Z", sentAt="9999-01-01T00:00:00Z")
    assert rejected(raw).code == "invalid_timestamp"


# ---- messageId ----------------------------------------------------------------------------------


def test_generated_message_id_is_deterministic_from_content() -> None:
    one = accepted(make_raw(messageId=None, sentAt="2024-05-01T12:00:01Z"))
    retry = accepted(make_raw(messageId=None, sentAt="2024-05-01T12:07:00Z", writeKey="wk"))
    assert one.message_id == retry.message_id
    assert one.message_id.startswith("rt-")
    assert len(one.message_id) == len("rt-") + 32


def test_generated_message_id_ignores_key_order() -> None:
    a = {"type": "track", "event": "X", "anonymousId": "a", "timestamp": "2024-05-01T12:00:00Z"}
    a["properties"] = {"x": 1, "y": {"p": 1, "q": 2}}
    b = {"properties": {"y": {"q": 2, "p": 1}, "x": 1}, "timestamp": "2024-05-01T12:00:00Z"}
    b |= {"anonymousId": "a", "event": "X", "type": "track"}
    assert accepted(a).message_id == accepted(b).message_id


@pytest.mark.parametrize(
    "change",
    [
        {"properties": {"revenue": 42.6, "order_id": "o-1"}},
        {"timestamp": "2024-05-01T12:00:01Z"},
        {"anonymousId": "anon-2"},
        {"event": "Signed Up"},
    ],
)
def test_generated_message_id_differs_for_different_content(change: dict[str, Any]) -> None:
    assert accepted(make_raw(messageId=None)).message_id != accepted(make_raw(messageId=None, **change)).message_id


def test_without_timestamp_generated_ids_are_unique() -> None:
    first = accepted(make_raw(messageId=None, timestamp=None)).message_id
    second = accepted(make_raw(messageId=None, timestamp=None)).message_id
    assert first != second
    assert first.startswith("rt-") and second.startswith("rt-")


# ---- identity -----------------------------------------------------------------------------------


def test_alias_uses_previous_id_as_anonymous_id() -> None:
    event = accepted({"type": "alias", "userId": "u1", "previousId": "anon-9", "anonymousId": "anon-x"})
    assert (event.type, event.user_id, event.anonymous_id) == ("alias", "u1", "anon-9")


def test_alias_falls_back_to_anonymous_id() -> None:
    event = accepted({"type": "alias", "userId": "u1", "anonymousId": "anon-x"})
    assert event.anonymous_id == "anon-x"


def test_user_id_alone_is_enough() -> None:
    event = accepted(make_raw(anonymousId=None, userId="u-7"))
    assert (event.anonymous_id, event.user_id) == (None, "u-7")


def test_rudderstack_context_traits_become_traits() -> None:
    raw = {"type": "identify", "userId": "u1", "context": {"traits": {"email": "a@example.com", "plan": "pro"}}}
    assert accepted(raw).traits == {"email": "a@example.com", "plan": "pro"}


def test_top_level_traits_win_over_context_traits() -> None:
    raw = {"type": "identify", "userId": "u1", "traits": {"plan": "team"}, "context": {"traits": {"plan": "pro"}}}
    assert accepted(raw).traits == {"plan": "team"}


# ---- context: page, campaign, channel, session, ip, user agent -----------------------------------


def test_page_context_campaign_channel_and_session() -> None:
    raw = make_raw(
        type="page",
        event=None,
        name="Pricing",
        context={
            "page": {
                "url": "https://shop.example.com/pricing",
                "path": "/pricing",
                "referrer": "https://www.google.co.uk/",
                "title": "Pricing",
            },
            "campaign": {"source": "google", "medium": "organic", "name": "", "term": None},
            "sessionId": "s-1",
        },
    )
    event = accepted(raw)
    assert (event.url, event.path, event.referrer, event.name) == (
        "https://shop.example.com/pricing",
        "/pricing",
        "https://www.google.co.uk/",
        "Pricing",
    )
    assert event.campaign == {"source": "google", "medium": "organic"}
    assert event.channel == "Organic Search"
    assert event.session_hint == "s-1"


def test_page_fields_fall_back_to_properties() -> None:
    raw = make_raw(
        type="page",
        event=None,
        properties={"url": "https://shop.example.com/a", "path": "/a", "referrer": "https://t.co/x"},
    )
    event = accepted(raw)
    assert (event.url, event.path, event.referrer, event.channel) == (
        "https://shop.example.com/a",
        "/a",
        "https://t.co/x",
        "Organic Social",
    )


@pytest.mark.parametrize(
    ("context", "site_domains", "channel"),
    [
        ({"campaign": {"medium": "cpc"}, "page": {"referrer": "https://www.google.com/"}}, (), "Paid Search"),
        ({"channel": "offline"}, (), "Offline"),
        ({"page": {"url": "https://shop.example.com/", "referrer": "https://shop.example.com/x"}}, (), "Direct"),
        ({"page": {"referrer": "https://blog.example.com/"}}, ("example.com",), "Direct"),
        ({"page": {"referrer": "https://blog.example.com/"}}, (), "Referral"),
    ],
)
def test_channel_is_computed_with_site_domains(
    context: dict[str, Any], site_domains: tuple[str, ...], channel: str
) -> None:
    assert accepted(make_raw(context=context), site_domains=site_domains).channel == channel


def test_numeric_session_id_from_rudderstack_is_kept() -> None:
    event = accepted(make_raw(context={"sessionId": 1714564800000, "sessionStart": True}))
    assert event.session_hint == "1714564800000"


def test_batch_context_is_merged_and_the_message_context_wins() -> None:
    raw = make_raw(context={"sessionId": "mine", "locale": "fr-FR"})
    event = accepted(raw, batch_context={"sessionId": "batch", "library": {"name": "analytics.js"}})
    assert event.session_hint == "mine"
    assert event.context["library"] == {"name": "analytics.js"}
    assert event.context["locale"] == "fr-FR"


def test_raw_ip_is_removed_from_context_and_kept_in_no_form() -> None:
    ip = "203.0.113.7"
    raw = make_raw(context={"ip": ip, "userAgent": DESKTOP})
    original = copy.deepcopy(raw)
    event = accepted(raw)
    assert "ip" not in event.context
    assert ip not in repr(event)
    assert not hasattr(event, "ip_hash")
    assert raw == original  # the caller's raw message is not mutated


def test_batch_context_ip_is_removed_too() -> None:
    event = accepted(make_raw(), batch_context={"ip": "192.0.2.9"})
    assert "ip" not in event.context
    assert "192.0.2.9" not in repr(event)


@pytest.mark.parametrize(
    ("user_agent", "is_bot", "device"),
    [
        (IPHONE, False, "mobile"),
        (ANDROID, False, "mobile"),
        (IPAD, False, "tablet"),
        (DESKTOP, False, "desktop"),
        (GOOGLEBOT, True, "bot"),
        ("curl/8.4.0", True, "bot"),
        (None, False, "unknown"),
        ("", False, "unknown"),
    ],
)
def test_bot_flag_and_device_type(user_agent: str | None, is_bot: bool, device: str) -> None:
    context = {} if user_agent is None else {"userAgent": user_agent}
    event = accepted(make_raw(context=context))
    assert (event.is_bot, event.device) == (is_bot, device)


@pytest.mark.parametrize(
    ("type_", "properties", "order_id"),
    [
        ("track", {"order_id": 1001}, "1001"),
        ("track", {"order_id": ""}, None),
        ("track", {}, None),
        ("page", {"order_id": "o-1"}, None),  # only track messages carry orders
    ],
)
def test_order_id(type_: str, properties: dict[str, Any], order_id: str | None) -> None:
    assert accepted(make_raw(type=type_, properties=properties)).order_id == order_id
