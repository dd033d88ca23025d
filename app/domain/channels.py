"""Marketing channel of an event and its PESO group (DESIGN §4). Pure: no I/O.

The first matching row of CHANNEL_RULES wins; the lists are the documented contract (README).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from urllib.parse import urlsplit

OFFLINE, PAID_SEARCH, DISPLAY, PAID_SOCIAL = "Offline", "Paid Search", "Display", "Paid Social"
EMAIL, AFFILIATES, ORGANIC_SEARCH, ORGANIC_SOCIAL = "Email", "Affiliates", "Organic Search", "Organic Social"
REFERRAL, DIRECT = "Referral", "Direct"

PAID_SEARCH_MEDIUMS = frozenset({"cpc", "ppc", "paid", "paidsearch", "paid_search", "paid-search"})
DISPLAY_MEDIUMS = frozenset({"display", "banner", "cpm"})
PAID_SOCIAL_MEDIUMS = frozenset(
    {"paid social", "paid_social", "paid-social", "paidsocial", "social_paid", "social-paid"}
)
EMAIL_MEDIUMS = frozenset({"email", "e-mail", "e_mail", "newsletter"})
AFFILIATE_MEDIUMS = frozenset({"affiliate", "affiliates"})
SEARCH_ENGINES = (
    "google.",
    "bing.com",
    "yahoo.",
    "duckduckgo.com",
    "baidu.com",
    "yandex.",
    "ecosia.org",
    "search.brave.com",
    "startpage.com",
    "ask.com",
    "naver.com",
    "seznam.cz",
    "qwant.com",
)
# hosts of search engines' companies that are not searches (webmail, documents, Android app ids)
NOT_SEARCH_PREFIXES = ("mail.", "docs.", "drive.", "accounts.", "calendar.", "com.google.android.")
SOCIAL_NETWORKS = (
    "facebook.com",
    "fb.com",
    "instagram.com",
    "t.co",
    "twitter.com",
    "x.com",
    "linkedin.com",
    "lnkd.in",
    "pinterest.",
    "reddit.com",
    "tiktok.com",
    "youtube.com",
    "youtu.be",
    "snapchat.com",
    "threads.net",
    "mastodon.social",
    "whatsapp.com",
    "vk.com",
    "quora.com",
    "tumblr.com",
)
PESO = {
    PAID_SEARCH: "Paid",
    DISPLAY: "Paid",
    PAID_SOCIAL: "Paid",
    AFFILIATES: "Paid",
    ORGANIC_SEARCH: "Earned",
    REFERRAL: "Earned",
    ORGANIC_SOCIAL: "Shared",
    EMAIL: "Owned",
    DIRECT: "Owned",
    OFFLINE: "Owned",
}
CHANNELS = tuple(PESO)


@functools.lru_cache(maxsize=8192)  # a site's page URLs and referrers repeat: parse each once
def host_of(url: str | None) -> str:
    if not url:
        return ""
    try:
        host = urlsplit(url if "//" in url else f"//{url}").hostname or ""
    except ValueError:
        return ""
    return host.lower().removeprefix("www.")


def _host_in(host: str, patterns: Iterable[str]) -> bool:
    # "google." matches google.com, google.co.uk, news.google.com; "t.co" matches t.co and m.t.co, not bit.co
    for pattern in patterns:
        if pattern.endswith("."):
            if host.startswith(pattern) or f".{pattern}" in f".{host}":
                return True
        elif host == pattern or host.endswith(f".{pattern}"):
            return True
    return False


@functools.lru_cache(maxsize=8192)  # a referrer host is matched against every pattern: once
def _organic_channel(ref_host: str) -> str | None:
    if _host_in(ref_host, SEARCH_ENGINES) and not ref_host.startswith(NOT_SEARCH_PREFIXES):
        return ORGANIC_SEARCH
    if _host_in(ref_host, SOCIAL_NETWORKS):
        return ORGANIC_SOCIAL
    return None


def channel_of(
    *,
    context_channel: str | None,
    medium: str | None,
    referrer: str | None,
    page_url: str | None,
    site_domains: Iterable[str] = (),
) -> str:
    if (context_channel or "").lower() == "offline":
        return OFFLINE
    m = (medium or "").strip().lower()
    for mediums, channel in (
        (PAID_SEARCH_MEDIUMS, PAID_SEARCH),
        (DISPLAY_MEDIUMS, DISPLAY),
        (PAID_SOCIAL_MEDIUMS, PAID_SOCIAL),
        (EMAIL_MEDIUMS, EMAIL),
        (AFFILIATE_MEDIUMS, AFFILIATES),
    ):
        if m in mediums:
            return channel
    ref_host = host_of(referrer)
    if not ref_host:
        return DIRECT
    organic = _organic_channel(ref_host)
    if organic:
        return organic
    own = {host_of(page_url)} | {host_of(d) for d in site_domains}
    own.discard("")
    if any(ref_host == h or ref_host.endswith(f".{h}") for h in own):
        return DIRECT
    return REFERRAL


def peso_of(channel: str) -> str:
    return PESO.get(channel, "Owned")
