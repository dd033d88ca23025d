"""channel_of() first-match rules and the PESO mapping (DESIGN §4)."""

from __future__ import annotations

import pytest

from app.domain.channels import CHANNELS, PESO, channel_of, host_of, peso_of

SITE = "https://shop.example.com/products/1"


def channel(
    referrer: str | None = None,
    medium: str | None = None,
    context_channel: str | None = None,
    page_url: str | None = SITE,
    site_domains: tuple[str, ...] = (),
) -> str:
    return channel_of(
        context_channel=context_channel,
        medium=medium,
        referrer=referrer,
        page_url=page_url,
        site_domains=site_domains,
    )


@pytest.mark.parametrize(
    ("context_channel", "medium", "referrer", "expected"),
    [
        # Offline wins over everything
        ("offline", None, None, "Offline"),
        ("OFFLINE", "cpc", "https://www.google.com/", "Offline"),
        ("web", None, None, "Direct"),
        # Paid Search
        (None, "cpc", None, "Paid Search"),
        (None, "ppc", "https://www.google.com/", "Paid Search"),
        (None, "paid", None, "Paid Search"),
        (None, "paidsearch", None, "Paid Search"),
        (None, "paid_search", None, "Paid Search"),
        (None, " CPC ", None, "Paid Search"),  # trimmed, case-insensitive
        # Display
        (None, "display", None, "Display"),
        (None, "banner", "https://news.example.org/", "Display"),
        (None, "cpm", None, "Display"),
        # Paid Social
        (None, "paid social", "https://facebook.com/", "Paid Social"),
        (None, "paid_social", None, "Paid Social"),
        (None, "paidsocial", None, "Paid Social"),
        # Email
        (None, "email", None, "Email"),
        (None, "e-mail", None, "Email"),
        (None, "newsletter", "https://mail.example.net/", "Email"),
        (None, "Email", None, "Email"),
        # Affiliates
        (None, "affiliate", "https://deals.example.org/", "Affiliates"),
        (None, "affiliates", None, "Affiliates"),
        # an unknown medium falls through to the referrer
        (None, "social", "https://www.facebook.com/", "Organic Social"),
        (None, "organic", "https://www.bing.com/search", "Organic Search"),
        (None, "referral", None, "Direct"),
    ],
)
def test_context_channel_and_medium(
    context_channel: str | None, medium: str | None, referrer: str | None, expected: str
) -> None:
    assert channel(referrer, medium, context_channel) == expected


@pytest.mark.parametrize(
    "referrer",
    [
        "https://www.google.com/search?q=shoes",
        "https://www.google.co.uk/",
        "https://google.de/",
        "https://news.google.com/",
        "google.com",  # no scheme
        "https://www.bing.com/search?q=x",
        "https://search.yahoo.com/",
        "https://yahoo.co.jp/",
        "https://duckduckgo.com/",
        "https://www.baidu.com/",
        "https://yandex.ru/",
        "https://www.ecosia.org/",
        "https://search.brave.com/",
        "https://www.startpage.com/",
        "https://www.qwant.com/",
        "https://WWW.GOOGLE.COM/",
    ],
)
def test_organic_search(referrer: str) -> None:
    assert channel(referrer) == "Organic Search"


@pytest.mark.parametrize(
    "referrer",
    [
        "https://t.co/abc123",
        "https://m.facebook.com/",
        "https://l.facebook.com/l.php?u=x",
        "https://www.instagram.com/",
        "https://twitter.com/someone",
        "https://x.com/someone",
        "https://www.linkedin.com/feed/",
        "https://lnkd.in/abc",
        "https://www.pinterest.co.uk/",
        "https://old.reddit.com/r/x",
        "https://www.youtube.com/watch?v=1",
        "https://youtu.be/1",
        "https://www.tiktok.com/",
        "https://mastodon.social/@me",
    ],
)
def test_organic_social(referrer: str) -> None:
    assert channel(referrer) == "Organic Social"


@pytest.mark.parametrize(
    "referrer",
    [
        "https://bit.co/x",  # "t.co" must match whole labels only
        "https://microsoft.co/",
        "https://box.com/",  # not x.com
        "https://notgoogle.com/",
        "https://googleadservices.com/",
        "https://myfacebook.com.example.org/",
        "https://blog.partner.org/post",
    ],
)
def test_other_hosts_are_referral(referrer: str) -> None:
    assert channel(referrer) == "Referral"


@pytest.mark.parametrize(
    ("referrer", "page_url", "site_domains"),
    [
        (None, SITE, ()),
        ("", SITE, ()),
        ("https://shop.example.com/cart", SITE, ()),  # same host
        ("https://SHOP.example.com/", SITE, ()),
        ("https://www.shop.example.com/", SITE, ()),  # www. is ignored
        ("https://shop.example.com:8443/", SITE, ()),  # port is ignored
        ("https://m.shop.example.com/", SITE, ()),  # a subdomain of the page host
        ("https://blog.example.com/", SITE, ("example.com",)),  # a site domain covers its subdomains
        ("https://checkout.example.net/", SITE, ("example.com", "https://checkout.example.net")),
        ("https://shop.example.com/", None, ("shop.example.com",)),
    ],
)
def test_direct(referrer: str | None, page_url: str | None, site_domains: tuple[str, ...]) -> None:
    assert channel(referrer, page_url=page_url, site_domains=site_domains) == "Direct"


def test_search_and_social_win_over_own_domain_lists() -> None:
    assert channel("https://www.google.com/", site_domains=("google.com",)) == "Organic Search"


@pytest.mark.parametrize(
    ("channel_name", "peso"),
    [
        ("Paid Search", "Paid"),
        ("Display", "Paid"),
        ("Paid Social", "Paid"),
        ("Affiliates", "Paid"),
        ("Organic Search", "Earned"),
        ("Referral", "Earned"),
        ("Organic Social", "Shared"),
        ("Email", "Owned"),
        ("Direct", "Owned"),
        ("Offline", "Owned"),
    ],
)
def test_peso_mapping(channel_name: str, peso: str) -> None:
    assert peso_of(channel_name) == peso
    assert PESO[channel_name] == peso


def test_every_channel_has_a_peso_group_and_unknown_falls_back_to_owned() -> None:
    assert set(CHANNELS) == {
        "Offline",
        "Paid Search",
        "Display",
        "Paid Social",
        "Email",
        "Affiliates",
        "Organic Search",
        "Organic Social",
        "Referral",
        "Direct",
    }
    assert set(PESO.values()) == {"Paid", "Earned", "Shared", "Owned"}
    assert peso_of("Carrier Pigeon") == "Owned"


@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("https://www.Example.com:8080/a?b=c", "example.com"),
        ("example.com/path", "example.com"),
        ("//cdn.example.com/x", "cdn.example.com"),
        ("", ""),
        (None, ""),
        ("https://[::1", ""),  # unparsable
    ],
)
def test_host_of(url: str | None, host: str) -> None:
    assert host_of(url) == host


@pytest.mark.parametrize(
    "referrer",
    ["https://mail.google.com/mail/u/0/", "https://docs.google.com/d/1", "android-app://com.google.android.gm"],
)
def test_webmail_and_documents_of_search_companies_are_referrals(referrer: str) -> None:
    assert channel_of(context_channel=None, medium=None, referrer=referrer, page_url="https://shop.example/") == (
        "Referral"
    )
