"""A KPI added to the registry reaches every answer: one entry (its new person set and the KPI, no
migration) and /v1/kpis from the rollups and from the events, the rollup rebuild, CSV, OpenAPI,
targets' attainment, the one-pager and the dashboard's labels all carry it, equal to the oracle's
own hand-written computation (tests/oracle.py). Rollups stored before the entry existed are not
read as if they had it: reads come from the events until the site's rollups are rebuilt in the
registry's layout (what the deriver does on its own), then from the rollups again."""

from __future__ import annotations

import asyncio
import csv
import io
import math
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from app import rollups
from app.config import Settings
from app.demo import generate_messages
from app.domain import dashboard as view_logic
from app.domain.kpis import REGISTRY, Kpi, Unit
from app.domain.kpis.registry import PersonSet, Ratio, equals
from app.main import create_app
from app.store.database import create_pool
from tests.conftest import create_site, drain
from tests.oracle import KPI_NAMES, TEST_ONLY_KPI_NAMES, Oracle, parse_ts

# Not in DESIGN §5, so a test-only KPI: a persons rate like lead_rate and conversion_rate.
ADD_TO_CART_PERSONS = PersonSet("add_to_cart_persons", (equals("goal", "add_to_cart"),))
ADD_TO_CART_RATE = Kpi(
    "add_to_cart_rate", "act", Unit.RATIO, Ratio("add_to_cart_persons", "visitors"),
    "distinct persons with an add_to_cart event in the bucket / visitors", "Add-to-cart rate",
)  # fmt: skip
START = datetime(2026, 3, 2, tzinfo=UTC)
END = datetime(2026, 4, 12, tzinfo=UTC)  # after the last generated event
FROM, TO = date(2026, 3, 4), date(2026, 4, 9)  # a clipped first and last month; orders before FROM


@pytest.fixture
def add_to_cart_rate() -> Iterator[None]:
    """The KPI registered: its entries, and nothing else."""
    with REGISTRY.extended(person_sets=[ADD_TO_CART_PERSONS], kpis=[ADD_TO_CART_RATE]):
        yield


@pytest.fixture
async def registered_client(add_to_cart_rate: None, settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    from asgi_lifespan import LifespanManager

    # derivation by drain() only: this process's deriver would bring every other site of the test
    # database to the extended layout (they are stale while the registry is extended)
    app = create_app(settings.model_copy(update={"deriver": False}))
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://racetrack.test") as c:
            yield c


def _same(expected: Any, got: Any) -> bool:
    if expected is None or got is None:
        return expected is got
    return math.isclose(expected, got, rel_tol=1e-9, abs_tol=1e-9)


def _differences(expected: list[dict[str, Any]], answer: httpx.Response, names: tuple[str, ...]) -> list[str]:
    assert answer.status_code == 200, answer.text
    have = {(parse_ts(r["start"]), r["group"]): r["kpis"] for r in answer.json()["buckets"]}
    want = {(r["start"], r["group"]): r["kpis"] for r in expected}
    assert set(have) == set(want)
    return [
        f"{start.isoformat()} {group} {name}: expected {want[(start, group)][name]}, got {kpis.get(name)}"
        for (start, group), kpis in have.items()
        for name in names
        if not _same(want[(start, group)][name], kpis.get(name))
    ]


async def test_a_registered_kpi_reaches_every_answer(registered_client: httpx.AsyncClient, database_url: str) -> None:
    client = registered_client
    site = await create_site(client, "Europe/Berlin")
    messages = generate_messages(80, 40, START, seed=5)
    for at in range(0, len(messages), 500):
        answer = await client.post("/v1/batch", json={"batch": messages[at : at + 500]}, auth=(site["write_key"], ""))
        assert answer.status_code == 200, answer.text
    await drain()
    oracle = Oracle(messages)
    names = (*KPI_NAMES, *TEST_ONLY_KPI_NAMES)
    read = {"Authorization": f"Bearer {site['read_key']}"}
    period = {"from": FROM.isoformat(), "to": TO.isoformat(), "tz": "Europe/Berlin"}
    expected_days = oracle.kpis(FROM, TO, "day", "Europe/Berlin")
    assert sum(1 for r in expected_days if r["kpis"]["add_to_cart_rate"]) >= 10, "too few add-to-cart days"

    # the answers, from the rollups and from the events, with and without a breakdown
    for source in ("rollups", "events"):
        for granularity in ("day", "month"):
            answer = await client.get(
                "/v1/kpis", params={**period, "granularity": granularity, "source": source}, headers=read
            )
            assert answer.headers["x-racetrack-source"] == source
            assert list(answer.json()["buckets"][0]["kpis"]) == list(REGISTRY.names())
            assert "add_to_cart_rate" in REGISTRY.stage_kpis()["act"]
            expected = oracle.kpis(FROM, TO, granularity, "Europe/Berlin")
            assert not _differences(expected, answer, names), (source, granularity)
        answer = await client.get(
            "/v1/kpis",
            params={**period, "granularity": "total", "breakdown": "channel", "source": source},
            headers=read,
        )
        expected = oracle.kpis(FROM, TO, "total", "Europe/Berlin", breakdown=True)
        assert not _differences(expected, answer, names), source

    # the operators' rebuild recomputes the new set from the events
    pool = await create_pool(database_url, 1, 2)
    try:
        rebuilt = await rollups.rebuild_range(pool, site["id"], ZoneInfo("Europe/Berlin"), START, END)
    finally:
        await pool.close()
    assert rebuilt > 0
    answer = await client.get("/v1/kpis", params={**period, "granularity": "day"}, headers=read)
    assert not _differences(expected_days, answer, names)

    # CSV: a column of its own, the same values
    answer = await client.get("/v1/kpis", params={**period, "granularity": "day", "format": "csv"}, headers=read)
    rows = list(csv.DictReader(io.StringIO(answer.text)))
    assert "add_to_cart_rate" in rows[0]
    by_start = {parse_ts(r["start"]): r["add_to_cart_rate"] for r in rows}
    for r in expected_days:
        value = r["kpis"]["add_to_cart_rate"]
        assert (by_start[r["start"]] == "") if value is None else math.isclose(float(by_start[r["start"]]), value)

    # OpenAPI: its definition, unit and direction
    spec = (await client.get("/openapi.json")).json()
    field = spec["components"]["schemas"]["KpiValues"]["properties"]["add_to_cart_rate"]
    assert ADD_TO_CART_RATE.definition in field["description"]
    assert (field["x-unit"], field["x-direction"], field["x-race-stage"]) == ("ratio", "higher", "act")

    # targets: accepted for it, and attained per its direction (higher is better)
    admin = {"Authorization": f"Bearer {site['admin_key']}"}
    target = {"kpi": "add_to_cart_rate", "month": "2026-03", "value": 0.5}
    answer = await client.put("/v1/targets", json={"targets": [target]}, headers=admin)
    assert answer.status_code == 200, answer.text
    answer = await client.get("/v1/kpis", params={**period, "granularity": "month"}, headers=read)
    march = answer.json()["buckets"][0]
    actual = march["kpis"]["add_to_cart_rate"]
    plan = march["targets"]["add_to_cart_rate"]
    assert actual and plan["direction"] == "higher" and math.isclose(plan["attainment"], actual / 0.5)
    answer = await client.get("/v1/kpis", params={**period, "granularity": "month", "format": "csv"}, headers=read)
    assert "add_to_cart_rate_attainment" in answer.text.splitlines()[0]

    # the one-pager and the dashboard's words for it
    report = await client.get("/v1/report", params={"month": "2026-03", "tz": "Europe/Berlin"}, headers=read)
    act = next(s for s in report.json()["stages"] if s["stage"] == "act")
    assert "add_to_cart_rate" in [k["kpi"] for k in act["kpis"]]
    assert view_logic.KPI_LABELS["add_to_cart_rate"] == "Add-to-cart rate"
    assert view_logic.kpi_text("add_to_cart_rate", 0.25) == "25.0 %"


async def test_the_registry_is_as_before_once_the_block_ends() -> None:
    """Extending the registry is undone at the block's end (the fixture relies on it)."""
    before = REGISTRY.names()
    with REGISTRY.extended(person_sets=[ADD_TO_CART_PERSONS], kpis=[ADD_TO_CART_RATE]):
        assert REGISTRY.names() != before and "add_to_cart_persons" in REGISTRY.kpi_sets()
    assert REGISTRY.names() == before and "add_to_cart_persons" not in REGISTRY.set_names()


async def test_the_recorded_layout_is_the_registrys(client: httpx.AsyncClient, db: Any) -> None:
    """A site's rollups record the layout they are stored in: the registry's quantities, described."""
    site = await create_site(client)
    page = {"type": "page", "anonymousId": "a1", "messageId": "m1", "timestamp": "2026-05-01T10:00:00Z"}
    assert (await client.post("/v1/batch", json={"batch": [page]}, auth=(site["write_key"], ""))).status_code == 200
    await drain()
    rows = await db.fetch("SELECT family, fingerprint, quantities, complete FROM rollup_layout WHERE site_id = $1",
                          site["id"])  # fmt: skip
    found = {r["family"]: (r["fingerprint"], tuple(r["quantities"]), r["complete"]) for r in rows}
    assert found == {f: (layout.fingerprint, layout.quantities, True) for f, layout in REGISTRY.layouts().items()}
    assert "set visitors: persons where every" in found["kpi"][1]


async def test_rollups_of_an_older_layout_are_rebuilt_not_read(settings: Settings, database_url: str) -> None:
    """Rollups stored before add_to_cart_rate existed: with it registered, /v1/kpis answers from the
    events (right, with the new KPI), never from rows that lack its set; once the site is rebuilt in
    the registry's layout, from the rollups, still right. And back when the entry is gone."""
    from asgi_lifespan import LifespanManager

    app = create_app(settings.model_copy(update={"deriver": False}))  # see registered_client
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://racetrack.test") as client:
            site = await create_site(client, "Europe/Berlin")
            messages = generate_messages(40, 20, START, seed=9)
            for at in range(0, len(messages), 500):
                batch = {"batch": messages[at : at + 500]}
                assert (await client.post("/v1/batch", json=batch, auth=(site["write_key"], ""))).status_code == 200
            await drain()
            read = {"Authorization": f"Bearer {site['read_key']}"}
            period = {"from": FROM.isoformat(), "to": TO.isoformat(), "tz": "Europe/Berlin", "granularity": "day"}
            expected = Oracle(messages).kpis(FROM, TO, "day", "Europe/Berlin")

            async def answers(source: str, names: tuple[str, ...]) -> None:
                answer = await client.get("/v1/kpis", params=period, headers=read)
                assert answer.headers["x-racetrack-source"] == source
                assert not _differences(expected, answer, names)

            pool = await create_pool(database_url, 1, 2)
            try:
                await answers("rollups", KPI_NAMES)
                with REGISTRY.extended(person_sets=[ADD_TO_CART_PERSONS], kpis=[ADD_TO_CART_RATE]):
                    await answers("events", (*KPI_NAMES, *TEST_ONLY_KPI_NAMES))
                    async with pool.acquire() as conn:
                        assert await rollups.convert(conn, site["id"], ZoneInfo("Europe/Berlin")) > 0
                    await answers("rollups", (*KPI_NAMES, *TEST_ONLY_KPI_NAMES))
                await answers("events", KPI_NAMES)  # the rows hold a set the registry no longer has
                assert await rollups.convert_stale(pool) >= 1  # what every deriver runs in the background
                await answers("rollups", KPI_NAMES)
            finally:
                await pool.close()


async def test_the_deriver_rebuilds_rollups_of_another_layout_on_its_own(client: httpx.AsyncClient, db: Any) -> None:
    site = await create_site(client, "Europe/Berlin")
    messages = generate_messages(10, 5, START, seed=3)
    assert (await client.post("/v1/batch", json={"batch": messages}, auth=(site["write_key"], ""))).status_code == 200
    await drain()
    read = {"Authorization": f"Bearer {site['read_key']}"}
    params = {"from": FROM.isoformat(), "to": TO.isoformat(), "granularity": "total"}
    before = await client.get("/v1/kpis", params=params, headers=read)
    assert before.headers["x-racetrack-source"] == "rollups"
    # as if an earlier release had stored them: the layout recorded is not the registry's
    await db.execute("UPDATE rollup_layout SET fingerprint = 'older' WHERE site_id = $1", site["id"])
    sources = []
    for _ in range(300):
        answer = await client.get("/v1/kpis", params=params, headers=read)
        assert answer.json()["buckets"] == before.json()["buckets"]
        sources.append(answer.headers["x-racetrack-source"])
        if sources[-1] == "rollups":
            break
        await asyncio.sleep(0.1)
    assert sources[0] == "events" and sources[-1] == "rollups", sources
