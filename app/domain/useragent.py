"""Bot flag and device type from a user agent, with maintained parsers. Pure: no I/O."""

from __future__ import annotations

from functools import lru_cache

from crawlerdetect import CrawlerDetect
from user_agents import parse

_crawlers = CrawlerDetect()


@lru_cache(maxsize=4096)
def is_bot(user_agent: str | None) -> bool:
    return bool(user_agent) and bool(_crawlers.isCrawler(user_agent))


@lru_cache(maxsize=4096)
def device_of(user_agent: str | None) -> str:
    """mobile, tablet, desktop, bot, or unknown (no or unparsable agent)."""
    if not user_agent:
        return "unknown"
    if is_bot(user_agent):
        return "bot"
    agent = parse(user_agent)
    if agent.is_tablet:
        return "tablet"
    if agent.is_mobile:
        return "mobile"
    if agent.is_pc:
        return "desktop"
    return "unknown"
