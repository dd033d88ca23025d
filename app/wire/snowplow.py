"""Snowplow tracker protocol 2 -> Segment-spec messages (DESIGN §2). Pure: no I/O.

`POST /com.snowplowanalytics.snowplow/tp2` sends `{"schema": "iglu:...payload_data...", "data":
[events]}`, `GET /i` one event as query parameters; every field is a string.

Events (`e`):
- `pv` page view -> page (name = `page`, the title).
- `se` structured event -> track named by its action `se_ac` ("add_to_cart" -> "Product Added",
  "remove_from_cart" -> "Product Removed"); properties category/action/label/property/value.
- `ue` self-describing event (`ue_pr` JSON or `ue_px` base64url, padded or not) -> track named by
  the schema's name (`iglu:com.acme/link_click/jsonschema/1-0-0` -> "link_click", properties = its
  data plus `schema`), except: screen_view -> screen; add_to_cart / remove_from_cart -> "Product
  Added" / "Product Removed"; the snowplow ecommerce plugin's `snowplow_ecommerce_action` by its
  `type` (add_to_cart -> "Product Added", transaction -> "Order Completed" with order_id and revenue
  from the transaction entity, ...).
- `tr` ecommerce transaction -> track "Order Completed": order_id = `tr_id`, revenue = `tr_tt`,
  tax, shipping, currency, affiliation, city/state/country (numbers parsed from their strings).
- `ti` transaction item -> track "Transaction Item" with `transaction_id` = `ti_id`, sku, name,
  category, price, quantity, currency. Not `order_id`, which in Segment's spec marks the order
  itself (and is deduplicated as one): an item is a part of one.
- `pp` page ping -> nothing (a heartbeat every few seconds; not an event for the funnel).
- anything else, or an undecodable `ue`, -> a message that normalize rejects (type
  "snowplow:<why>"), so it is kept in failed_event with the raw parameters.

Fields: `eid` -> messageId; `ttm` (true timestamp, ms) -> timestamp as is, else `dtm` (device ms)
-> timestamp with `stm` (device send time, ms) -> sentAt for the clock-skew correction; `duid` (or
the client_session entity's userId, or `tnuid`/`nuid`) -> anonymousId; `uid` -> userId; `sid` (or
client_session.sessionId) -> context.sessionId; `url`/`refr`/`page` -> context.page and the URL's
utm_* -> context.campaign; `ua` -> context.userAgent; `lang` -> context.locale; `tz` ->
context.timezone; `ip` -> context.ip (handled by normalize; the raw IP is not stored); contexts
`co`/`cx` -> the entities read above, the whole list kept in context.snowplow.contexts; `tv` ->
context.library.version; `aid` (the tracker's app id) -> writeKey unless the request names a key
itself (a `writeKey` parameter, which this mapping also reads, or the route's query/auth).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import orjson

from app.errors import BadRequest
from app.wire.webpage import b64_json_bytes, campaign_of, number, page_context, text

STRUCTURED_EVENTS = {"add_to_cart": "Product Added", "remove_from_cart": "Product Removed"}
CART_SCHEMAS = {
    ("com.snowplowanalytics.snowplow", "add_to_cart"): "Product Added",
    ("com.snowplowanalytics.snowplow", "remove_from_cart"): "Product Removed",
}
SCREEN_SCHEMAS = frozenset(
    {("com.snowplowanalytics.mobile", "screen_view"), ("com.snowplowanalytics.snowplow", "screen_view")}
)
ECOMMERCE = "com.snowplowanalytics.snowplow.ecommerce"
ECOMMERCE_ACTIONS = {
    "add_to_cart": "Product Added",
    "remove_from_cart": "Product Removed",
    "product_view": "Product Viewed",
    "list_view": "Product List Viewed",
    "list_click": "Product Clicked",
    "checkout_step": "Checkout Step Viewed",
    "transaction": "Order Completed",
    "refund": "Order Refunded",
    "promo_view": "Promotion Viewed",
    "promo_click": "Promotion Clicked",
}
IGNORED_EVENTS = frozenset({"pp"})

# How a message's properties are read from a tracker's fields: (property, field, parser).
Fields = tuple[tuple[str, str, Callable[[Any], Any]], ...]
STRUCTURED_FIELDS: Fields = (
    ("category", "se_ca", text), ("action", "se_ac", text), ("label", "se_la", text),
    ("property", "se_pr", text), ("value", "se_va", number),
)  # fmt: skip
TRANSACTION_FIELDS: Fields = (
    ("order_id", "tr_id", text), ("revenue", "tr_tt", number), ("tax", "tr_tx", number),
    ("shipping", "tr_sh", number), ("currency", "tr_cu", text), ("affiliation", "tr_af", text),
    ("city", "tr_ci", text), ("state", "tr_st", text), ("country", "tr_co", text),
)  # fmt: skip
TRANSACTION_ITEM_FIELDS: Fields = (
    ("transaction_id", "ti_id", text), ("sku", "ti_sk", text), ("name", "ti_nm", text),
    ("category", "ti_ca", text), ("price", "ti_pr", number), ("quantity", "ti_qu", number),
    ("currency", "ti_cu", text),
)  # fmt: skip
CART_PRODUCT_FIELDS: Fields = (  # the data of an add_to_cart / remove_from_cart event
    ("product_id", "sku", text), ("sku", "sku", text), ("name", "name", text), ("category", "category", text),
    ("price", "unitPrice", number), ("quantity", "quantity", number), ("currency", "currency", text),
)  # fmt: skip
ECOMMERCE_PRODUCT_FIELDS: Fields = (  # the ecommerce plugin's product entity
    ("product_id", "id", text), ("name", "name", text), ("category", "category", text), ("brand", "brand", text),
    ("variant", "variant", text), ("price", "price", number), ("quantity", "quantity", number),
    ("currency", "currency", text),
)  # fmt: skip
ECOMMERCE_TRANSACTION_FIELDS: Fields = (  # the ecommerce plugin's transaction entity
    ("order_id", "transaction_id", text), ("revenue", "revenue", number), ("currency", "currency", text),
    ("tax", "tax", number), ("shipping", "shipping", number), ("discount", "discount_amount", number),
    ("payment_method", "payment_method", text),
)  # fmt: skip


class _Unmappable(Exception):
    pass


def tp2_messages(body: Any) -> list[dict[str, Any]]:
    """A decoded tp2 POST body -> Segment messages (page pings dropped), each with its writeKey."""
    if isinstance(body, Mapping) and isinstance(body.get("data"), list):
        events = body["data"]
    elif isinstance(body, list):
        events = body
    elif isinstance(body, Mapping) and "e" in body:
        events = [body]
    else:
        raise BadRequest(
            "body must be a Snowplow payload_data object {schema, data: [events]}",
            "invalid_batch",
            [{"field": "data", "message": "must be an array of events"}],
        )
    messages = [event_message(event) for event in events]
    return [m for m in messages if m is not None]


def event_message(params: Any) -> dict[str, Any] | None:
    """One tracker-protocol event (GET /i's query or one item of tp2's data) -> a message, or None."""
    if not isinstance(params, Mapping):
        return {"type": "snowplow:invalid_event", "snowplow": _without_ip(params)}
    kind = params.get("e")
    if isinstance(kind, str) and kind in IGNORED_EVENTS:
        return None
    try:
        entities = _contexts(params)
        message = _common(params, entities)
        message.update(_event(kind, params, entities))
    except _Unmappable as exc:
        return {"type": f"snowplow:{exc}", "messageId": text(params.get("eid")), "snowplow": _without_ip(params)}
    return message


def _without_ip(params: Any) -> Any:
    """Kept raw when rejected, but never with the client's IP (README: no IP stored in any form)."""
    return {k: v for k, v in params.items() if k != "ip"} if isinstance(params, Mapping) else params


def _common(params: Mapping[str, Any], entities: list[Mapping[str, Any]]) -> dict[str, Any]:
    session = _entity(entities, "com.snowplowanalytics.snowplow", "client_session")
    true_time = _millis(params.get("ttm"))
    url = text(params.get("url"))
    context: dict[str, Any] = {}
    page = page_context(url, referrer=text(params.get("refr")), title=text(params.get("page")))
    if page:
        context["page"] = page
    campaign = campaign_of(url)
    if campaign:
        context["campaign"] = campaign
    for key, value in (
        ("sessionId", text(params.get("sid")) or text(session.get("sessionId"))),
        ("userAgent", text(params.get("ua"))),
        ("locale", text(params.get("lang"))),
        ("timezone", text(params.get("tz"))),
        ("ip", text(params.get("ip"))),
    ):
        if value:
            context[key] = value
    context["library"] = {"name": "snowplow", "version": text(params.get("tv"))}
    if entities:
        context["snowplow"] = {"contexts": entities}
    message: dict[str, Any] = {
        "messageId": text(params.get("eid")),
        "anonymousId": text(params.get("duid"))
        or text(session.get("userId"))
        or text(params.get("tnuid"))
        or text(params.get("nuid")),
        "userId": text(params.get("uid")),
        "timestamp": true_time if true_time is not None else _millis(params.get("dtm")),
        "sentAt": None if true_time is not None else _millis(params.get("stm")),
        "context": context,
    }
    write_key = text(params.get("writeKey")) or text(params.get("aid"))
    if write_key:
        message["writeKey"] = write_key
    return message


def _event(kind: Any, params: Mapping[str, Any], entities: list[Mapping[str, Any]]) -> dict[str, Any]:
    if kind == "pv":
        page = {"title": text(params.get("page"))} | _page_properties(params)
        return {"type": "page", "name": text(params.get("page")), "properties": _clean(page)}
    if kind == "se":
        action = text(params.get("se_ac"))
        event = STRUCTURED_EVENTS.get(action or "", action)
        return {"type": "track", "event": event, "properties": _clean(_read(params, STRUCTURED_FIELDS))}
    if kind == "ue":
        return _self_describing_event(params, entities)
    if kind == "tr":
        return {"type": "track", "event": "Order Completed", "properties": _clean(_read(params, TRANSACTION_FIELDS))}
    if kind == "ti":
        item = _clean(_read(params, TRANSACTION_ITEM_FIELDS))
        return {"type": "track", "event": "Transaction Item", "properties": item}
    raise _Unmappable(f"unknown_event_type:{kind}" if kind else "missing_event_type")


def _self_describing_event(params: Mapping[str, Any], entities: list[Mapping[str, Any]]) -> dict[str, Any]:
    envelope = _json_field(params, "ue_pr", "ue_px")
    inner = envelope.get("data") if isinstance(envelope, Mapping) else None
    if not isinstance(inner, Mapping) or not isinstance(inner.get("schema"), str):
        raise _Unmappable("invalid_self_describing_event")
    schema: str = inner["schema"]
    raw_data = inner.get("data")
    data: Mapping[str, Any] = raw_data if isinstance(raw_data, Mapping) else {}
    vendor, name = _schema_name(schema)
    if (vendor, name) in SCREEN_SCHEMAS:
        return {"type": "screen", "name": text(data.get("name")), "properties": dict(data) | {"schema": schema}}
    if (vendor, name) in CART_SCHEMAS:
        product = _clean(_read(data, CART_PRODUCT_FIELDS))
        return {"type": "track", "event": CART_SCHEMAS[(vendor, name)], "properties": product}
    if (vendor, name) == (ECOMMERCE, "snowplow_ecommerce_action"):
        return _ecommerce_action(data, entities)
    return {"type": "track", "event": name, "properties": dict(data) | {"schema": schema}}


def _ecommerce_action(data: Mapping[str, Any], entities: list[Mapping[str, Any]]) -> dict[str, Any]:
    action = text(data.get("type")) or "ecommerce_action"
    products = [_product(e) for e in _entities(entities, ECOMMERCE, "product")]
    properties: dict[str, Any] = {"action": action, "name": text(data.get("name"))}
    if len(products) == 1 and action != "transaction":
        properties |= products[0]
    elif products:
        properties["products"] = products
    transaction = _entity(entities, ECOMMERCE, "transaction")
    if transaction:  # its empty fields too: they replace a product's (then _clean drops them)
        properties |= _read(transaction, ECOMMERCE_TRANSACTION_FIELDS)
    cart = _entity(entities, ECOMMERCE, "cart")
    if cart:
        properties["cart_id"] = text(cart.get("cart_id"))
    event = ECOMMERCE_ACTIONS.get(action, action)
    return {"type": "track", "event": event, "properties": _clean(properties)}


def _product(entity: Mapping[str, Any]) -> dict[str, Any]:
    return _clean(_read(entity, ECOMMERCE_PRODUCT_FIELDS))


def _read(source: Mapping[str, Any], fields: Fields) -> dict[str, Any]:
    """Each field of source as its property, parsed (empty ones included: see _clean)."""
    return {prop: parse(source.get(field)) for prop, field, parse in fields}


def _contexts(params: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The event's context entities [{schema, data}]. Undecodable contexts are not fatal: dropped."""
    try:
        envelope = _json_field(params, "co", "cx")
    except _Unmappable:
        return []
    entities = envelope.get("data") if isinstance(envelope, Mapping) else None
    if not isinstance(entities, list):
        return []
    return [e for e in entities if isinstance(e, Mapping) and isinstance(e.get("schema"), str)]


def _entities(entities: list[Mapping[str, Any]], vendor: str, name: str) -> list[Mapping[str, Any]]:
    found = [e.get("data") for e in entities if _schema_name(e["schema"]) == (vendor, name)]
    return [d for d in found if isinstance(d, Mapping)]


def _entity(entities: list[Mapping[str, Any]], vendor: str, name: str) -> Mapping[str, Any]:
    found = _entities(entities, vendor, name)
    return found[0] if found else {}


def _json_field(params: Mapping[str, Any], plain: str, encoded: str) -> Any:
    """The JSON in `plain` (as is) or `encoded` (base64url, padded or not); None when neither is set."""
    raw = params.get(plain)
    if isinstance(raw, Mapping | list):
        return raw
    if isinstance(raw, str) and raw:
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise _Unmappable(f"invalid_{plain}") from None
    raw = params.get(encoded)
    if isinstance(raw, str) and raw:
        try:
            return orjson.loads(b64_json_bytes(raw))
        except ValueError:  # orjson.JSONDecodeError is a ValueError too
            raise _Unmappable(f"invalid_{encoded}") from None
    return None


def _schema_name(schema: str) -> tuple[str, str]:
    """iglu:com.acme/link_click/jsonschema/1-0-0 -> ("com.acme", "link_click")."""
    parts = schema.removeprefix("iglu:").split("/")
    return (parts[0], parts[1]) if len(parts) >= 2 else ("", schema)


def _millis(value: Any) -> Any:
    """Epoch milliseconds as an int ("1700000000000" -> 1700000000000); other values unchanged."""
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return value if value != "" else None


def _page_properties(params: Mapping[str, Any]) -> dict[str, Any]:
    return page_context(text(params.get("url")), referrer=text(params.get("refr")))


def _clean(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None and v != ""}
