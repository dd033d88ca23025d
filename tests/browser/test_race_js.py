"""race.js in a real browser against a running Racetrack: each test loads a fixture page of
tests/browser/pages/ and checks what Racetrack *stored* (SQL on the test database, or the read API),
waiting for it rather than sleeping."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import asyncpg
import pytest

from tests.browser.conftest import Pages, Racetrack, desktop_user_agent, wait_for

pytest.importorskip("playwright", reason="browser tests need Playwright: pip install -e '.[test]'")
if TYPE_CHECKING:
    from playwright.async_api import Browser, BrowserContext, Page, Request

EVENTS = """
SELECT type, event_name, name, path, url, referrer, campaign::text AS campaign, channel, properties::text AS properties,
       stage, goal, value, is_lead, is_order, is_repeat_order, anonymous_id, user_id, person_id, is_bot
FROM event WHERE site_id = $1 ORDER BY event_at, event_id
"""


async def stored(db: asyncpg.Connection, site: dict[str, Any], count: int) -> list[dict[str, Any]]:
    """The site's events once `count` are stored and derived (stage decided), exactly `count`."""

    async def probe() -> list[dict[str, Any]] | None:
        rows = [dict(r) for r in await db.fetch(EVENTS, site["id"])]
        return rows if len(rows) >= count and all(r["stage"] is not None for r in rows) else None

    rows = await wait_for(probe, what=f"{count} stored events of site {site['id']}")
    for row in rows:
        row["campaign"], row["properties"] = json.loads(row["campaign"]), json.loads(row["properties"])
    assert len(rows) == count, [(r["type"], r["event_name"], r["path"]) for r in rows]
    return rows


def period() -> dict[str, str]:
    today = datetime.now(UTC).date()
    return {"from": str(today - timedelta(days=1)), "to": str(today + timedelta(days=2)), "tz": "UTC"}


async def kpis(racetrack: Racetrack, site: dict[str, Any], **params: str) -> list[dict[str, Any]]:
    answer = await racetrack.read(site, "/v1/kpis", granularity="total", **period(), **params)
    assert answer.status_code == 200, answer.text
    buckets: list[dict[str, Any]] = answer.json()["buckets"]
    return buckets


async def funnel(racetrack: Racetrack, site: dict[str, Any]) -> dict[str, int]:
    answer = await racetrack.read(site, "/v1/funnel", **period(), funnel="independent")  # each stage on its own
    assert answer.status_code == 200, answer.text
    return {step["stage"]: step["persons"] for step in answer.json()["steps"]}


async def anonymous_id(page: Page) -> str | None:
    raw = await page.evaluate("localStorage.getItem('ajs_anonymous_id')")
    return json.loads(raw) if raw else None


def batches(page: Page) -> list[Request]:
    """Every request the page makes to Racetrack's ingestion, as they happen."""
    seen: list[Request] = []
    page.on("request", lambda request: seen.append(request) if "/v1/batch" in request.url else None)
    return seen


async def test_landing_page_view_keeps_referrer_and_campaign(
    page: Page, racetrack: Racetrack, pages: Pages, db: asyncpg.Connection
) -> None:
    site = await racetrack.create_site()
    sent = batches(page)
    url = pages.url("landing.html", site["write_key"], "?utm_source=spring_sale&utm_campaign=spring&utm_content=hero")
    await page.goto(url, referer="https://www.google.com/")

    [view] = await stored(db, site, 1)
    assert (view["type"], view["stage"], view["goal"]) == ("page", "reach", "page_view")
    assert view["url"] == url and view["path"] == f"/k/{site['write_key']}/landing.html"
    assert view["referrer"] == "https://www.google.com/"
    assert view["campaign"] == {"source": "spring_sale", "name": "spring", "content": "hero"}
    assert view["channel"] == "Organic Search"  # no utm_medium: the referrer decides
    assert view["anonymous_id"] == await anonymous_id(page) and not view["is_bot"]
    # text/plain with the key in the body: what navigator.sendBeacon posts, no preflight
    assert sent and sent[0].method == "POST" and sent[0].headers["content-type"].startswith("text/plain")
    assert json.loads(sent[0].post_data or "")["writeKey"] == site["write_key"]
    [spring] = await kpis(racetrack, site, breakdown="campaign")
    assert (spring["group"], spring["kpis"]["pageviews"], spring["kpis"]["visitors"]) == ("spring", 1, 1)


async def test_single_page_app_navigation_is_a_page_view_each(
    page: Page, racetrack: Racetrack, pages: Pages, db: asyncpg.Connection
) -> None:
    site = await racetrack.create_site()
    home = pages.url("spa.html", site["write_key"])
    await page.goto(home)
    await page.click("text=Pricing")  # pushState
    await page.evaluate("history.replaceState({}, '', location.href)")  # the same URL: no navigation
    await page.evaluate("history.replaceState({}, '', '/app/pricing?period=yearly')")
    await page.go_back()  # popstate, back to the home URL
    await page.wait_for_function("location.pathname.endsWith('/spa.html')")
    await page.evaluate("location.hash = 'faq'")  # hashchange (and popstate): counted once
    await page.evaluate("dispatchEvent(new PageTransitionEvent('pageshow', {persisted: true}))")  # bfcache restore

    views = await stored(db, site, 6)
    spa = f"/k/{site['write_key']}/spa.html"
    assert [(v["type"], v["path"]) for v in views] == [
        ("page", spa),
        ("page", "/app/pricing"),
        ("page", "/app/pricing"),
        ("page", spa),
        ("page", spa),
        ("page", spa),
    ]
    assert views[1]["referrer"] == home  # an in-app navigation comes from the previous page
    assert views[2]["url"].endswith("/app/pricing?period=yearly") and views[4]["url"] == home + "#faq"
    assert {v["anonymous_id"] for v in views} == {await anonymous_id(page)}
    [total] = await kpis(racetrack, site)
    assert (total["kpis"]["pageviews"], total["kpis"]["sessions"], total["kpis"]["visitors"]) == (6, 1, 1)


async def test_download_and_outbound_link_clicks(
    page: Page, racetrack: Racetrack, pages: Pages, db: asyncpg.Connection
) -> None:
    site = await racetrack.create_site()
    await page.goto(pages.url("links.html", site["write_key"]))
    async with page.expect_download():
        await page.click("#brochure")
    await page.click("#partner")  # leaves the site for another host
    await page.wait_for_url(f"{racetrack.url}/healthz?from=links")

    view, download, outbound = await stored(db, site, 3)
    assert view["type"] == "page"
    assert (download["event_name"], download["properties"]) == (
        "File Downloaded",
        {"url": pages.url("brochure.pdf", site["write_key"])},
    )
    assert (outbound["event_name"], outbound["properties"]) == (
        "Outbound Link Clicked",
        {"url": f"{racetrack.url}/healthz?from=links"},
    )
    assert outbound["path"] == f"/k/{site['write_key']}/links.html"  # clicked on the page it left


async def test_tagged_signup_form_is_an_act_lead(
    page: Page, racetrack: Racetrack, pages: Pages, db: asyncpg.Connection
) -> None:
    site = await racetrack.create_site()
    await page.goto(pages.url("signup.html", site["write_key"]))
    await page.click("#join")  # submits the form, which leaves for thanks.html
    await page.wait_for_url("**/thanks.html?email=*")

    rows = await stored(db, site, 3)
    # by what they are, not by time: the signup's beacon and the next page's view are milliseconds
    # apart, and their clock-corrected times can come in either order
    [signup] = [r for r in rows if r["type"] == "track"]
    assert sorted(r["type"] for r in rows) == ["page", "page", "track"]
    assert (signup["type"], signup["event_name"], signup["properties"]) == ("track", "signup", {"plan": "pro"})
    assert (signup["stage"], signup["goal"], signup["is_lead"]) == ("act", "signup", True)
    [total] = await kpis(racetrack, site)
    assert (total["kpis"]["leads"], total["kpis"]["lead_rate"]) == (1, 1.0)
    assert (await funnel(racetrack, site))["act"] == 1


async def test_tagged_orders_convert_then_engage_as_a_repeat_purchase(
    page: Page, racetrack: Racetrack, pages: Pages, db: asyncpg.Connection
) -> None:
    site = await racetrack.create_site()
    await page.goto(pages.url("shop.html", site["write_key"]))
    await page.click("#first")
    await page.click("#second")

    _, first, second = await stored(db, site, 3)
    assert first["properties"] == {"revenue": 49.9, "order_id": "A-1001", "currency": "EUR"}
    assert (first["stage"], first["goal"], first["value"], first["is_order"]) == ("convert", "purchase", 49.9, True)
    assert (second["stage"], second["goal"], second["value"]) == ("engage", "repeat_purchase", 20.0)
    assert second["is_repeat_order"]
    [total] = await kpis(racetrack, site)
    got = total["kpis"]
    assert (got["orders"], got["revenue"], got["new_customers"], got["repeat_orders"]) == (2, 69.9, 1, 1)
    assert await funnel(racetrack, site) == {"reach": 1, "act": 0, "convert": 1, "engage": 1}


async def test_js_api_keeps_calls_made_before_it_loaded(
    page: Page, racetrack: Racetrack, pages: Pages, db: asyncpg.Connection
) -> None:
    site = await racetrack.create_site()
    await page.goto(pages.url("api.html", site["write_key"]))
    await page.evaluate("race.order({order_id: 'B-1', revenue: 12.5, currency: 'EUR'})")

    rows = await stored(db, site, 4)
    assert [(r["type"], r["event_name"]) for r in rows] == [
        ("page", None),
        ("identify", None),
        ("track", "Product Viewed"),
        ("track", "Order Completed"),
    ]
    assert [r["user_id"] for r in rows] == [None, "user-42", "user-42", "user-42"]
    person = await racetrack.read(site, "/v1/persons/u:user-42")
    assert person.status_code == 200, person.text
    got = person.json()
    assert (got["stage"], got["orders"], got["revenue"]) == ("convert", 1, 12.5)
    assert got["identities"]["anonymous_ids"] == [await anonymous_id(page)]
    assert len(got["events"]) == 4  # the anonymous page view belongs to the user too


async def test_returning_visitor_is_recognised(
    browser: Browser, context: BrowserContext, page: Page, racetrack: Racetrack, pages: Pages, db: asyncpg.Connection
) -> None:
    site = await racetrack.create_site()
    await page.goto(pages.url("landing.html", site["write_key"]))
    await stored(db, site, 1)
    first = await anonymous_id(page)
    saved = await context.storage_state()
    await context.close()  # the browser is closed; the visitor comes back another time

    later = await browser.new_context(user_agent=desktop_user_agent(browser), storage_state=saved)
    try:
        again = await later.new_page()
        await again.goto(pages.url("thanks.html", site["write_key"]))
        rows = await stored(db, site, 2)
        assert first and {r["anonymous_id"] for r in rows} == {first} == {await anonymous_id(again)}
    finally:
        await later.close()
    person = (await racetrack.read(site, f"/v1/persons/a:{first}")).json()
    assert person["events_total"] == 2
    [total] = await kpis(racetrack, site)
    assert (total["kpis"]["visitors"], total["kpis"]["new_visitors"], total["kpis"]["pageviews"]) == (1, 1, 2)


async def test_nothing_is_stored_before_consent_when_consent_is_required(
    page: Page, racetrack: Racetrack, pages: Pages, db: asyncpg.Connection
) -> None:
    site = await racetrack.create_site()
    sent = batches(page)
    await page.goto(pages.url("consent.html", site["write_key"]))
    await page.click("#newsletter")
    assert await anonymous_id(page) is None and await page.evaluate("localStorage.length") == 0
    await page.click("#refuse")
    # the next page asks for no consent: once its page view is stored, anything the consent page
    # had sent (it would have gone first, at the latest when the page was left) would be too
    await page.goto(pages.url("thanks.html", site["write_key"]))

    [view] = await stored(db, site, 1)
    assert view["path"].endswith("/thanks.html")
    assert [json.loads(r.post_data or "")["batch"][0]["context"]["page"]["title"] for r in sent] == ["Thanks"]


async def test_consent_given_later_sends_what_waited(
    page: Page, racetrack: Racetrack, pages: Pages, db: asyncpg.Connection
) -> None:
    site = await racetrack.create_site()
    sent = batches(page)
    await page.goto(pages.url("consent.html", site["write_key"]))
    await page.click("#newsletter")
    assert await anonymous_id(page) is None and sent == []
    await page.click("#accept")

    view, newsletter = await stored(db, site, 2)
    given = await anonymous_id(page)
    assert given and view["anonymous_id"] == newsletter["anonymous_id"] == given
    assert (newsletter["goal"], newsletter["stage"], newsletter["is_lead"]) == ("newsletter", "act", True)


async def test_a_click_just_before_the_page_closes_is_delivered(
    page: Page, racetrack: Racetrack, pages: Pages, db: asyncpg.Connection
) -> None:
    site = await racetrack.create_site()
    await page.goto(pages.url("newsletter.html", site["write_key"]))
    await page.click("#subscribe")
    await page.close()

    _, click = await stored(db, site, 2)
    assert (click["event_name"], click["properties"], click["goal"]) == (
        "newsletter_signup",
        {"list": "weekly"},
        "newsletter",
    )


async def test_engaged_time_and_scroll_depth_are_sent_on_pagehide(
    page: Page, racetrack: Racetrack, pages: Pages, db: asyncpg.Connection
) -> None:
    site = await racetrack.create_site()
    await page.clock.install()  # the page's clock, moved on by the test instead of waiting 20 s
    await page.goto(pages.url("article.html", site["write_key"]))
    await page.evaluate("document.getElementById('end').scrollIntoView()")
    await page.wait_for_function("scrollY > 0")
    await page.clock.fast_forward("00:20")
    await page.goto(pages.url("thanks.html", site["write_key"]))  # pagehide

    rows = await stored(db, site, 3)  # two page views and, by name (the faked clock reorders times):
    [engaged] = [r for r in rows if r["event_name"] == "Page Engaged"]
    assert engaged["path"].endswith("/article.html") and engaged["stage"] == "none"
    assert engaged["properties"]["scroll_depth"] == 100
    assert 20 <= engaged["properties"]["engaged_seconds"] < 30


async def test_automated_browsers_are_not_tracked_unless_the_page_opts_in(
    page: Page, racetrack: Racetrack, pages: Pages, db: asyncpg.Connection
) -> None:
    assert await page.evaluate("navigator.webdriver")
    site = await racetrack.create_site()
    sent = batches(page)
    await page.goto(pages.url("no-webdriver.html", site["write_key"]))
    await page.click("#subscribe")
    await page.goto(pages.url("thanks.html", site["write_key"]))  # opts in: the sentinel

    [view] = await stored(db, site, 1)
    assert view["path"].endswith("/thanks.html") and len(sent) == 1


async def test_global_privacy_control_is_honoured_when_the_site_asks(
    context: BrowserContext, page: Page, racetrack: Racetrack, pages: Pages, db: asyncpg.Connection
) -> None:
    gpc = "Object.defineProperty(Navigator.prototype, 'globalPrivacyControl', {get: () => true})"
    await context.add_init_script(gpc)
    site = await racetrack.create_site()
    sent = batches(page)
    await page.goto(pages.url("do-not-track.html", site["write_key"]))
    await page.click("#subscribe")
    await page.goto(pages.url("thanks.html", site["write_key"]))  # does not ask: tracked

    [view] = await stored(db, site, 1)
    assert view["path"].endswith("/thanks.html") and len(sent) == 1
