"""Bots: user agents of software rather than of a person reading."""

import re

# Case-insensitive substrings of user agents that belong to software, not to
# a person reading: search crawlers, feed fetchers, link checkers, uptime
# monitors and scripting clients. Scoring them would reward the site's most
# frequent "visitors" for being robots.
BOT_USER_AGENT_MARKERS = (
    "bot",
    "crawler",
    "spider",
    "slurp",
    "archiver",
    "ezooms",
    "nutch",
    "siteexplorer",
    "yandex",
    "facebookexternalhit",
    "embedly",
    "feed",
    "rss",
    "livejournal.com",
    "curl",
    "wget",
    "libfetch",
    "python-requests",
    "python-urllib",
    "aiohttp",
    "httpx",
    "scrapy",
    "go-http-client",
    "libwww-perl",
    "okhttp",
    "java/",
    "axios",
    "node-fetch",
    "undici",
    "phantomjs",
    "headless",
    "chef client",
    "portscout",
    "distilator",
    "link validator",
    "link sleuth",
    "monitor",
    "pingdom",
    "uptime",
    "nagios",
    "check_http",
    "zabbix",
    "statuscake",
)

# Phones whose model name holds a marker: a person reading, not a bot
# ("Android 9; CUBOT P30").
NOT_BOT_MODELS = ("cubot",)

# One search for all the markers: a loop over them took a third of a line's
# time. A model name above is skipped by matching it first, as no bot.
_BOT_MARKER = re.compile(
    "|".join(re.escape(m) for m in (*NOT_BOT_MODELS, *BOT_USER_AGENT_MARKERS))
)


def is_bot(agent: str) -> bool:
    """Whether the lower-case user agent `agent` names a bot."""
    return any(found[0] not in NOT_BOT_MODELS for found in _BOT_MARKER.finditer(agent))
