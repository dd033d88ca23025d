"""The RACE dashboard in a real browser: its numbers are the API's, every panel follows the view,
sign-in and target editing are guarded, nothing loads from another host, it fits a phone."""

from __future__ import annotations

import gzip
import os
import re
from datetime import date, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx

from app.domain.dashboard import kpi_text
from tests.conftest import PROJECT
from tests.dashboard.conftest import Demo, Server, Watched, last_days, sign_in
from tests.oracle import KPI_NAMES

PANELS = ("quality", "kpis", "plan", "funnel", "chart", "by_group", "by_peso", "goals", "cohorts")
JS_BUDGET_GZIP = 50 * 1024


def _number(text: str) -> float | None:
    return None if text == "" else float(text)


def _next_day(day: str) -> str:
    return (date.fromisoformat(day) + timedelta(days=1)).isoformat()


async def _values(page: Any, selector: str, key: str) -> dict[str, float | None]:
    found = await page.eval_on_selector_all(
        selector, f"els => els.map(e => [e.dataset.{key}, e.dataset.value])"
    )
    return {name: _number(value) for name, value in found}


async def _show(page: Any, **view: str) -> None:
    await page.goto("/dashboard?" + urlencode(view))
    await page.wait_for_selector("html[data-ready]")


async def _api_total(api: httpx.AsyncClient, first: str, last: str, tz: str, **extra: Any) -> list[dict[str, Any]]:
    answer = await api.get("/v1/kpis", params={"from": first, "to": _next_day(last), "tz": tz,
                                               "granularity": "total", **extra})  # fmt: skip
    assert answer.status_code == 200, answer.text
    buckets: list[dict[str, Any]] = answer.json()["buckets"]
    return buckets


async def _assert_kpis_match(page: Any, api: httpx.AsyncClient, first: str, last: str, tz: str) -> None:
    shown = await _values(page, "#panel-kpis [data-kpi]", "kpi")
    expected = (await _api_total(api, first, last, tz))[0]["kpis"]
    assert set(shown) == set(KPI_NAMES)
    assert shown == expected
    for kpi in ("visitors", "revenue", "bounce_rate", "avg_session_seconds"):  # the text says the same
        text = await page.inner_text(f'#panel-kpis [data-kpi="{kpi}"] dd.value')
        assert text.split("\n")[0].strip().startswith(kpi_text(kpi, expected[kpi])), (kpi, text)


async def test_numbers_equal_the_api(watched: Watched, demo: Demo, api: httpx.AsyncClient) -> None:
    page = watched.page
    first, last = last_days(30)
    await sign_in(page, demo.read_key)
    await _show(page, period="custom", first=first, last=last, tz="UTC")
    await _assert_kpis_match(page, api, first, last, "UTC")
    assert (await _values(page, "#panel-kpis [data-kpi]", "kpi"))["visitors"], "the demo has visitors"

    funnel = (await api.get("/v1/funnel", params={"from": first, "to": _next_day(last), "tz": "UTC"})).json()
    assert await _values(page, "#panel-funnel li[data-stage]", "stage") == {
        s["stage"]: s["persons"] for s in funnel["steps"]
    }

    report = (await api.get("/v1/report", params={"month": demo.month, "tz": "UTC"})).json()
    by_kpi = {k["kpi"]: k for stage in report["stages"] for k in stage["kpis"]}
    rows = await page.eval_on_selector_all(
        "#panel-plan tr[data-kpi]",
        "rows => rows.map(r => [r.dataset.kpi, Object.fromEntries([...r.querySelectorAll('[data-field]')]"
        ".map(c => [c.dataset.field, c.dataset.value]))])",
    )
    assert {kpi for kpi, _ in rows} == set(demo.targets)
    for kpi, cells in rows:
        assert _number(cells["actual"]) == by_kpi[kpi]["value"]
        assert _number(cells["target"]) == by_kpi[kpi]["target"] == demo.targets[kpi]
        assert _number(cells["attainment"]) == by_kpi[kpi]["attainment"]
        if by_kpi[kpi]["status"] in ("met", "missed", "on_track", "off_track"):
            assert cells["status"] in ("green", "amber", "red")
        else:  # too early in the month, not started, no data: no colour, and the page says which
            assert cells["status"] == "None"

    by_channel = await _api_total(api, first, last, "UTC", breakdown="channel", limit=10)
    shown_visitors = await page.eval_on_selector_all(
        "#panel-by_group tr[data-group]", "rows => rows.map(r => [r.dataset.group, "
        "r.querySelector('[data-kpi=visitors]').dataset.value])",
    )  # fmt: skip
    assert {g: float(v) for g, v in shown_visitors} == {r["group"]: r["kpis"]["visitors"] for r in by_channel}

    goals = (await api.get("/v1/goals", params={"from": first, "to": _next_day(last), "tz": "UTC",
                                                "granularity": "total"})).json()  # fmt: skip
    shown_goals = await page.eval_on_selector_all(
        "#panel-goals tr[data-goal]",
        "rows => rows.map(r => [r.dataset.goal, r.querySelector('[data-field=completions]').dataset.value])",
    )
    assert {g: int(v) for g, v in shown_goals} == {
        g["goal"]: g["completions"] for g in goals["buckets"][0]["goals"]
    }
    assert not watched.errors


async def test_period_zone_and_breakdown_update_every_panel(
    watched: Watched, demo: Demo, api: httpx.AsyncClient
) -> None:
    page = watched.page
    first, last = last_days(30)
    await sign_in(page, demo.read_key)
    await _show(page, period="custom", first=first, last=last, tz="UTC")

    async def views() -> dict[str, str]:
        found = await page.eval_on_selector_all(
            "[data-panel]", "els => els.map(e => [e.dataset.panel, e.dataset.view])"
        )
        return dict(found)

    before = await views()
    assert set(before) == set(PANELS)

    async with page.expect_navigation():
        await page.select_option("select[name=period]", "last_7")  # the form follows the change itself
    await page.wait_for_selector("html[data-ready]")
    after_period = await views()
    assert all(after_period[p] != before[p] and "period=last_7" in after_period[p] for p in PANELS)
    seven = last_days(7)
    await _assert_kpis_match(page, api, *seven, "UTC")
    assert "period=last_7" in page.url and "key" not in page.url

    async with page.expect_navigation():
        await page.select_option("select[name=tz]", "Asia/Kolkata")
    await page.wait_for_selector("html[data-ready]")
    after_zone = await views()
    assert all(after_zone[p] != after_period[p] and "tz=Asia%2FKolkata" in after_zone[p] for p in PANELS)
    seven = last_days(7, "Asia/Kolkata")  # the zone's own last 7 days (past 18:30 UTC its today is tomorrow)
    await _assert_kpis_match(page, api, *seven, "Asia/Kolkata")

    async with page.expect_navigation():
        await page.select_option("select[name=breakdown]", "device")
    await page.wait_for_selector("html[data-ready]")
    after_breakdown = await views()
    assert all(after_breakdown[p] != after_zone[p] and "breakdown=device" in after_breakdown[p] for p in PANELS)
    groups = await page.eval_on_selector_all("#panel-by_group tr[data-group]", "rows => rows.map(r => r.dataset.group)")
    api_groups = await _api_total(api, *seven, "Asia/Kolkata", breakdown="device", limit=10)
    assert groups == [r["group"] for r in api_groups] and "mobile" in groups

    async with page.expect_navigation():
        await page.select_option("select[name=segment]", "mobile")
    await page.wait_for_selector("html[data-ready]")
    shown = await _values(page, "#panel-kpis [data-kpi]", "kpi")
    mobile = next(r for r in api_groups if r["group"] == "mobile")["kpis"]
    assert shown == mobile
    assert "segment=mobile" in (await views())["chart"]
    assert not watched.errors


async def test_wrong_key_fails_with_a_clear_message(watched: Watched, demo: Demo, server: Server) -> None:
    page = watched.page
    await page.goto("/")
    assert urlsplit(page.url).path == "/dashboard/signin"
    wrong = "rk_this-is-not-a-key-of-any-site"
    await page.fill("#key", wrong)
    await page.click("form button[type=submit]")
    alert = page.locator("[role=alert]")
    await alert.wait_for()
    assert "not a read or admin key" in await alert.inner_text()
    assert urlsplit(page.url).path == "/dashboard/signin"
    assert not [c for c in await page.context.cookies() if c["name"] == "racetrack_session"]
    # the keys never show in a URL or a log line
    await sign_in(page, demo.read_key)
    assert all(demo.read_key not in url and wrong not in url for url in watched.requests)
    log = server.log.read_text()
    assert demo.read_key not in log and wrong not in log and "/dashboard/signin" in log
    cookie = next(c for c in await page.context.cookies() if c["name"] == "racetrack_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax" and demo.read_key not in cookie["value"]
    # sign-out ends the session
    await page.click("form.signout button")
    await page.wait_for_url(re.compile(r"/dashboard/signin"))
    await page.goto("/dashboard")
    assert urlsplit(page.url).path == "/dashboard/signin"


async def test_a_read_key_cannot_edit_targets(watched: Watched, demo: Demo, server: Server) -> None:
    page = watched.page
    await sign_in(page, demo.read_key)
    assert await page.locator("#target-editor").count() == 0
    assert "admin key" in await page.inner_text("#editor-locked")
    token = await page.get_attribute("form.signout input[name=csrf]", "value")
    month = demo.month
    forged = await page.request.post("/dashboard/targets", form={
        "csrf": token, "month": month, "target_revenue": "1", "back": "/dashboard"})  # fmt: skip
    assert forged.status == 403 and "admin key" in await forged.text()

    async def revenue_target() -> float:
        answer = httpx.get(f"{server.url}/v1/targets", params={"from": month, "to": month},
                           headers={"Authorization": f"Bearer {demo.admin_key}"})  # fmt: skip
        return next(t["value"] for t in answer.json()["targets"] if t["kpi"] == "revenue")

    assert await revenue_target() == demo.targets["revenue"]
    assert not watched.errors


async def test_the_admin_key_edits_targets_through_the_form(watched: Watched, demo: Demo, server: Server) -> None:
    page = watched.page
    await sign_in(page, demo.admin_key)
    await page.click("#target-editor summary")
    await page.fill("input[name=target_new_customers]", "12")
    async with page.expect_navigation():
        await page.click("#target-editor button[type=submit]")
    await page.wait_for_selector("html[data-ready]")
    assert "Targets saved" in await page.inner_text("[role=status]")
    answer = httpx.get(f"{server.url}/v1/targets", params={"from": demo.month, "to": demo.month},
                       headers={"Authorization": f"Bearer {demo.admin_key}"})  # fmt: skip
    saved = [{k: t[k] for k in ("kpi", "month", "value")} for t in answer.json()["targets"]]
    assert {"kpi": "new_customers", "month": demo.month, "value": 12.0} in saved
    cell = '#panel-plan tr[data-kpi="new_customers"] [data-field=target]'
    assert await page.get_attribute(cell, "data-value") == "12.0"
    # without the page's token nothing is saved
    refused = await page.request.post("/dashboard/targets", form={
        "csrf": "forged", "month": demo.month, "target_new_customers": "99", "back": "/dashboard"})  # fmt: skip
    assert refused.status == 403
    assert not watched.errors


async def test_csv_links_answer_the_endpoints_csv(watched: Watched, demo: Demo, api: httpx.AsyncClient) -> None:
    page = watched.page
    first, last = last_days(30)
    await sign_in(page, demo.read_key)
    await _show(page, period="custom", first=first, last=last, tz="UTC")
    links = dict(
        await page.eval_on_selector_all(
            "[data-panel]", "els => els.map(e => [e.dataset.panel, e.querySelector('a.csv').getAttribute('href')])"
        )
    )
    assert set(links) == set(PANELS)
    for panel, href in links.items():
        answer = await page.request.get(href)
        assert answer.status == 200 and answer.headers["content-type"].startswith("text/csv"), panel
    got = await (await page.request.get(links["kpis"])).text()
    expected = await api.get("/v1/kpis", params={"from": first, "to": _next_day(last), "tz": "UTC",
                                                 "granularity": "total", "format": "csv"})  # fmt: skip
    assert got == expected.text


async def test_no_outside_request_no_console_error_and_it_fits_a_phone(
    watched: Watched, demo: Demo, server: Server, output_dir: Path
) -> None:
    page = watched.page
    await sign_in(page, demo.read_key)
    await _show(page, period="last_30")
    assert await page.locator("#chart canvas").count() == 1  # uPlot drew the chart
    await page.screenshot(path=str(output_dir / "dashboard-desktop.png"), full_page=True)
    if os.environ.get("RACETRACK_UPDATE_SCREENSHOT") or not (PROJECT / "docs" / "dashboard.png").exists():
        await page.screenshot(path=str(PROJECT / "docs" / "dashboard.png"), full_page=True)

    sources = await page.eval_on_selector_all(
        "script", "els => els.map(e => [e.getAttribute('src'), e.type])"
    )  # every script is a file (the chart's numbers are a JSON data block, never run)
    assert all(src or kind == "application/json" for src, kind in sources), sources
    sizes = [len(gzip.compress(await (await page.request.get(src)).body(), 9)) for src, _ in sources if src]
    assert len(sizes) == 2 and sum(sizes) <= JS_BUDGET_GZIP, sizes  # uPlot and the page's own script

    await page.set_viewport_size({"width": 375, "height": 812})
    await page.reload()
    await page.wait_for_selector("html[data-ready]")
    assert await page.evaluate("document.documentElement.scrollWidth") <= 375  # no sideways scrolling
    await page.screenshot(path=str(output_dir / "dashboard-phone.png"), full_page=True)

    await page.goto("/docs")
    await page.wait_for_selector(".swagger-ui .info")
    origin = urlsplit(server.url).netloc
    assert [u for u in watched.requests if urlsplit(u).netloc != origin and not u.startswith("data:")] == []
    assert not watched.errors, watched.errors


async def test_the_view_is_keyboard_usable(watched: Watched, demo: Demo) -> None:
    page = watched.page
    await sign_in(page, demo.read_key)
    await page.keyboard.press("Tab")
    assert await page.evaluate("document.activeElement.textContent") == "Skip to the numbers"
    for _ in range(3):  # skip link, sign out, then the period picker
        if await page.evaluate("document.activeElement.name") == "period":
            break
        await page.keyboard.press("Tab")
    assert await page.evaluate("document.activeElement.name") == "period"
    await page.select_option("select[name=period]", "custom")  # custom shows the day fields, moves focus there
    assert await page.evaluate("document.activeElement.name") == "first"
    assert await page.is_visible("input[name=last]")
    first, last = last_days(10)
    await page.fill("input[name=first]", first)
    async with page.expect_navigation():  # both days given: the form follows by itself
        await page.fill("input[name=last]", last)
    await page.wait_for_selector("html[data-ready]")
    assert f"first={first}" in page.url and f"last={last}" in page.url
    assert not watched.errors
