"""Past its backlog of underived events, a site's ingestion answers 503 + Retry-After (SDKs retry)
instead of growing the inbox without bound."""

from __future__ import annotations

import httpx
import pytest

from app.config import Settings
from tests.conftest import ROOT_TOKEN, create_site


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(database_url=database_url, admin_token=ROOT_TOKEN, flush_max_wait_ms=2.0, max_backlog=3,
                    deriver=False, read_wait_seconds=0)  # fmt: skip


async def test_past_the_backlog_ingestion_answers_503_with_retry_after(client: httpx.AsyncClient) -> None:
    site = await create_site(client)
    pages = [{"type": "page", "anonymousId": "a", "messageId": f"b{n}"} for n in range(3)]
    assert (await client.post("/v1/batch", json={"batch": pages}, auth=(site["write_key"], ""))).status_code == 200
    import app.pipeline.ingest as ingest

    ingest.BACKLOG_CHECK_SECONDS, saved = 0.0, ingest.BACKLOG_CHECK_SECONDS
    try:
        more = await client.post("/v1/batch", json={"batch": [{"type": "page", "anonymousId": "a", "messageId": "x"}]},
                                 auth=(site["write_key"], ""))  # fmt: skip
    finally:
        ingest.BACKLOG_CHECK_SECONDS = saved
    assert more.status_code == 503, more.text
    assert more.json()["code"] == "backlog_full" and more.headers["retry-after"].isdigit()
