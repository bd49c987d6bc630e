import gzip
import json
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from command import scorer

from scorer import accesslog
from scorer.accesslog import (
    DROP_REASONS,
    MAX_LINE_CHARS,
    ImportOptions,
    ImportStats,
    import_log,
)
from scorer.events import DEFAULT_MAX_FUTURE_MS, TimeBounds, parse_record, parse_time

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "tests" / "data" / "apache_logs_sample"
FULL_LOG = REPO / "examples" / "access_log" / "apache_logs"
BROWSER = "Mozilla/5.0 (X11; Linux x86_64; rv:27.0) Gecko/20100101 Firefox/27.0"
BOUNDS = TimeBounds(max_future_ms=DEFAULT_MAX_FUTURE_MS)

Runner = Callable[..., subprocess.CompletedProcess[str]]


def line(
    request: str = "GET /blog/post.html HTTP/1.1",
    status: int = 200,
    host: str = "192.0.2.7",
    when: str = "17/May/2015:10:05:03 +0000",
    referrer: str = "-",
    agent: str = BROWSER,
) -> str:
    return f'{host} - - [{when}] "{request}" {status} 512 "{referrer}" "{agent}"\n'


def run(
    lines: list[str], options: ImportOptions | None = None
) -> tuple[list[dict[str, str]], ImportStats]:
    stats = ImportStats()
    return list(import_log(lines, options, stats)), stats


def read(path: Path) -> list[str]:
    with path.open(encoding="utf-8", newline="\n") as log:
        return list(log)


def only(lines: list[str], options: ImportOptions | None = None) -> dict[str, str]:
    events, _ = run(lines, options)
    assert len(events) == 1
    return events[0]


def dropped_as(text: str, options: ImportOptions | None = None) -> str:
    events, stats = run([text], options)
    assert events == []
    assert sum(stats.dropped.values()) == 1
    return next(iter(stats.dropped))


def test_sample_counts() -> None:
    events, stats = run(read(SAMPLE))

    assert stats.lines_read == 300
    assert stats.events == Counter({"page_view": 43})
    assert stats.dropped == Counter(
        {"static_asset": 151, "bot": 100, "no_user_agent": 3, "redirect": 3}
    )
    assert stats.distinct_leads == 33
    assert len(events) == 43


def test_full_log_counts() -> None:
    _, stats = run(read(FULL_LOG))

    assert stats.lines_read == 10_000
    assert stats.events == Counter({"page_view": 1611, "content_download": 42})
    assert stats.dropped == Counter(
        {
            "static_asset": 5244,
            "bot": 2574,
            "no_user_agent": 190,
            "other_file": 129,
            "error_status": 83,
            "redirect": 63,
            "partial_content": 34,
            "method": 15,
            "feed": 14,
            "unparseable": 1,
        }
    )
    assert stats.distinct_leads == 944
    assert stats.lines_read == stats.events_emitted + sum(stats.dropped.values())
    assert set(stats.dropped) <= set(DROP_REASONS)


# The counts of events test_sample_counts and test_full_log_counts expect.
@pytest.mark.parametrize(("path", "count"), [(SAMPLE, 43), (FULL_LOG, 1611 + 42)])
def test_every_event_is_accepted_by_the_scorer(path: Path, count: int) -> None:
    events, _ = run(read(path))

    records = [parse_record(json.loads(json.dumps(event)), BOUNDS) for event in events]

    assert len(records) == count


def test_file_order_is_kept() -> None:
    lines = [
        line(when="17/May/2015:10:05:30 +0000", request="GET /a HTTP/1.1"),
        line(when="17/May/2015:10:05:10 +0000", request="GET /b HTTP/1.1"),
    ]

    events, _ = run(lines)

    assert [event["url"] for event in events] == ["/a", "/b"]


def test_the_real_truncated_user_agent_is_unparseable() -> None:
    lines = read(FULL_LOG)
    truncated = lines[8898]
    assert truncated.rstrip("\n").endswith("bot.html")

    assert dropped_as(truncated) == "unparseable"


def test_event_ids_are_deterministic_and_distinct() -> None:
    lines = read(SAMPLE)

    first, _ = run(lines)
    second, _ = run(lines)
    ids = [event["event_id"] for event in first]

    assert first == second
    assert len(set(ids)) == len(ids)


def test_identical_requests_on_two_lines_get_two_ids() -> None:
    events, _ = run([line(), line()])

    assert events[0]["event_id"] != events[1]["event_id"]


def ids(lines: list[str]) -> list[str]:
    events, _ = run(lines)
    return [event["event_id"] for event in events]


def test_event_ids_do_not_depend_on_the_line_number() -> None:
    """Overlapping windows of one log (tail -n, rotated copies) agree."""
    lines = [line(request=f"GET /p{n} HTTP/1.1") for n in range(4)]

    assert ids(lines[2:]) == ids(lines)[2:]
    assert ids(["\n", *lines]) == ids(lines)


def test_identical_lines_are_numbered_by_their_copies_before() -> None:
    same, other = line(), line(request="GET /other HTTP/1.1")

    twice = ids([same, same])
    after_another = ids([other, same, same, same])

    assert after_another[1:3] == twice
    assert len(set(after_another)) == 4


def test_occurrences_of_a_line_forgotten_start_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    lines = [line(request=f"GET /{name} HTTP/1.1") for name in "xyzx"]

    monkeypatch.setattr(accesslog, "OCCURRENCE_MEMORY_LINES", 3)
    remembered = ids(lines)
    monkeypatch.setattr(accesslog, "OCCURRENCE_MEMORY_LINES", 2)
    forgotten = ids(lines)

    assert remembered[0] != remembered[3]
    assert forgotten[0] == forgotten[3]


def test_page_view_fields() -> None:
    event = only([line(request="GET /blog/post.html?page=2 HTTP/1.1")])

    assert event["type"] == "page_view"
    assert event["url"] == "/blog/post.html"
    assert event["category"] == "blog"
    assert event["occurred_at"] == "2015-05-17T10:05:03.000Z"
    assert "referrer" not in event
    assert event["lead_id"].startswith("visitor:")
    assert len(event["lead_id"]) == len("visitor:") + 16


def test_page_without_known_prefix_has_no_category() -> None:
    event = only([line(request="GET /about HTTP/1.1")])

    assert "category" not in event


def test_zone_offset_is_converted_to_utc() -> None:
    event = only([line(when="17/May/2015:12:05:03 +0200")])

    assert event["occurred_at"] == "2015-05-17T10:05:03.000Z"


def test_not_modified_counts_as_a_view() -> None:
    event = only([line(status=304)])

    assert event["type"] == "page_view"


@pytest.mark.parametrize(
    ("path", "asset_type"),
    [
        ("/files/talk.pdf", "whitepaper"),
        ("/files/logstash-1.1.0-monolithic.jar", "software"),
        ("/files/proxy-2.1.tar.gz", "software"),
        ("/scripts/tool.py", "software"),
    ],
)
def test_downloads(path: str, asset_type: str) -> None:
    event = only([line(request=f"GET {path}?x=1 HTTP/1.1")])

    assert event["type"] == "content_download"
    assert event["asset_id"] == path
    assert event["asset_type"] == asset_type
    assert "url" not in event


@pytest.mark.parametrize(
    ("path", "asset_type"),
    [
        *((f"/get/setup{ext}", "software") for ext in (".exe", ".msi", ".dmg")),
        *((f"/get/tool{ext}", "software") for ext in (".pkg", ".deb", ".rpm")),
        *((f"/get/app{ext}", "software") for ext in (".apk", ".whl", ".7z")),
        *((f"/get/src{ext}", "software") for ext in (".tar.bz2", ".tbz2", ".rar")),
        *((f"/get/src{ext}", "software") for ext in (".tar.xz", ".txz", ".xz")),
        ("/get/data.bz2", "software"),
        ("/books/guide.epub", "ebook"),
        *((f"/docs/brief{ext}", "whitepaper") for ext in (".doc", ".docx", ".odt")),
        *((f"/docs/deck{ext}", "whitepaper") for ext in (".ppt", ".PPTX", ".odp")),
        *((f"/docs/sheet{ext}", "whitepaper") for ext in (".xls", ".xlsx", ".ods")),
    ],
)
def test_installers_archives_and_documents_are_downloads(
    path: str, asset_type: str
) -> None:
    event = only([line(request=f"GET {path} HTTP/1.1")])

    assert event["type"] == "content_download"
    assert event["asset_type"] == asset_type


@pytest.mark.parametrize(
    "path",
    [
        "/docs/v2.0",
        "/pricing/v1.5",
        "/customers/example.com",
        "/blog/asp.net-core",
        "/blog/web3.0",
        "/blog/2026.12.01-update",
        "/releases/1.2.3",
        "/blog/post.html",
    ],
)
def test_a_dot_in_the_last_segment_of_a_page_keeps_it_a_page(path: str) -> None:
    event = only([line(request=f"GET {path} HTTP/1.1")])

    assert event["url"] == path


@pytest.mark.parametrize(
    "path", ["/robots.txt", "/.env", "/backup.sql.bak", "/feed.json", "/intro.mp4"]
)
def test_known_non_page_files_are_other_files(path: str) -> None:
    assert dropped_as(line(request=f"GET {path} HTTP/1.1")) == "other_file"


def test_a_page_named_like_a_script_is_a_static_asset() -> None:
    assert dropped_as(line(request="GET /blog/next.js HTTP/1.1")) == "static_asset"


def test_download_extensions_and_types_are_configurable() -> None:
    options = ImportOptions(
        download_extensions=(".tar.gz", ".deb"),
        asset_types={".tar.gz": "source", ".deb": "package"},
    )

    tarball = only([line(request="GET /x.tar.gz HTTP/1.1")], options)
    package = only([line(request="GET /x.deb HTTP/1.1")], options)

    assert tarball["asset_type"] == "source"
    assert package["asset_type"] == "package"
    assert only([line(request="GET /x.pdf HTTP/1.1")], options)["type"] == "page_view"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (line(agent="Mozilla/5.0 (compatible; Googlebot/2.1)"), "bot"),
        (line(agent="UniversalFeedParser/4.2-pre-314-svn"), "bot"),
        (line(agent="curl/7.22.0 (i686-pc-linux-gnu)"), "bot"),
        (line(agent="-"), "no_user_agent"),
        (line(request="GET /images/logo.png HTTP/1.1"), "static_asset"),
        (line(request="GET /style/main.CSS?v=3 HTTP/1.1"), "static_asset"),
        (line(request="GET /favicon.ico HTTP/1.1"), "static_asset"),
        (line(request="GET /?flav=rss20 HTTP/1.1"), "feed"),
        (line(request="GET /blog/feed/ HTTP/1.1"), "feed"),
        (line(request="GET /robots.txt HTTP/1.1"), "other_file"),
        (line(request="HEAD /blog/post.html HTTP/1.1"), "method"),
        (line(request="POST /blog/post.html HTTP/1.1"), "method"),
        (line(status=404), "error_status"),
        (line(status=500), "error_status"),
        (line(status=301), "redirect"),
        (line(status=206, request="GET /talk.pdf HTTP/1.1"), "partial_content"),
        (line(status=101), "other_status"),
        (line(request="-"), "bad_request"),
        (line(request="OPTIONS * HTTP/1.0"), "method"),
        (line(request="CONNECT example.com:443 HTTP/1.1"), "method"),
        (line(request="GET example.com:443 HTTP/1.1"), "bad_request"),
        (line(request="GET ftp://example.com/a HTTP/1.1"), "bad_request"),
        # Servers escape control characters; raw ones are a forged line.
        (line(request="GET /a\x1b[2Jb HTTP/1.1"), "bad_request"),
        (line(request="GET /a\x00b HTTP/1.1"), "bad_request"),
        (line(request="GET /a\x7fb HTTP/1.1"), "bad_request"),
        (line(when="32/May/2015:10:05:03 +0000"), "bad_time"),
        (line(when="17/Mai/2015:10:05:03 +0000"), "bad_time"),
        (line(when="2015-05-17T10:05:03Z"), "bad_time"),
        (line(when="17/May/1999:10:05:03 +0000"), "invalid_timestamp_out_of_range"),
        (line(request=f"GET /{'a' * 5000} HTTP/1.1"), "invalid_too_long"),
        (line().replace(f'"{BROWSER}"', '"Mozilla/5.0 (truncated'), "unparseable"),
        ("\n", "blank"),
        (" \t\r\n", "blank"),
        ("garbage\x00line\n", "unparseable"),
    ],
)
def test_drop_reasons(text: str, reason: str) -> None:
    assert dropped_as(text) == reason
    assert reason.startswith("invalid_") or reason in DROP_REASONS


@pytest.mark.parametrize(
    "agent",
    [
        "Scrapy/2.11.0 (+https://scrapy.org)",
        "axios/1.6.2",
        "node-fetch/1.0 (+https://github.com/bitinn/node-fetch)",
        "undici",
        "Python/3.12 aiohttp/3.9.1",
        "python-httpx/0.26.0",
        "libwww-perl/6.72",
        "Python-urllib/3.11",
        "Mozilla/5.0 (X11; Linux x86_64) HeadlessChrome/120.0.0.0 Safari/537.36",
        "Mozilla/5.0 (Unknown; Linux x86_64) PhantomJS/2.1.1 Safari/538.1",
    ],
)
def test_http_libraries_and_headless_browsers_are_bots(agent: str) -> None:
    assert dropped_as(line(agent=agent)) == "bot"


def test_a_phone_whose_model_holds_a_bot_marker_is_a_person() -> None:
    phone = (
        "Mozilla/5.0 (Linux; Android 9; CUBOT P30) AppleWebKit/537.36 "
        "(KHTML, like Gecko) Chrome/90.0.4430.91 Mobile Safari/537.36"
    )

    assert only([line(agent=phone)])["type"] == "page_view"
    assert dropped_as(line(agent=f"{phone} Googlebot/2.1")) == "bot"


def test_head_is_kept_when_configured() -> None:
    options = ImportOptions(methods=frozenset({"GET", "HEAD"}))

    event = only([line(request="HEAD /blog/post.html HTTP/1.1")], options)

    assert event["type"] == "page_view"


def test_feeds_are_kept_when_configured() -> None:
    event = only(
        [line(request="GET /?flav=atom HTTP/1.1")], ImportOptions(keep_feeds=True)
    )

    assert event["category"] == "feed"


def test_ipv6_client_and_lead_id_hides_the_address() -> None:
    event = only([line(host="2001:db8::42c")])

    assert "2001" not in event["lead_id"]
    assert "db8" not in event["lead_id"]


@pytest.mark.parametrize(
    "spellings",
    [
        ["192.0.2.71", "::ffff:192.0.2.71", "[::FFFF:192.0.2.71]"],
        ["2001:db8::42c", "2001:DB8:0:0:0:0:0:42C", "[2001:db8::42c]"],
        ["fe80::1", "fe80::1%eth0", "[fe80::1%25eth0]"],
        ["host-7.example.com", "Host-7.Example.COM", "host-7.example.com."],
    ],
)
def test_one_client_is_one_lead_however_it_is_written(spellings: list[str]) -> None:
    events, _ = run([line(host=host) for host in spellings])

    assert len(events) == len(spellings)
    assert len({event["lead_id"] for event in events}) == 1


@pytest.mark.parametrize(
    "host",
    [
        "-",
        "unknown",
        "",
        "203.0.113.62,10.0.0.5",
        "203.0.113.62, 10.0.0.5",  # as nginx writes a forwarded list
        "192.0.2",
        "-host.example.com",
    ],
)
def test_a_client_field_that_names_no_client_is_dropped(host: str) -> None:
    assert dropped_as(line(host=host)) == "no_client"


def test_salt_changes_lead_and_event_ids() -> None:
    plain = only([line()])
    salted = only([line()], ImportOptions(salt="s3cret"))

    assert plain["lead_id"] != salted["lead_id"]
    assert plain["event_id"] != salted["event_id"]


def test_by_user_agent_splits_visitors_sharing_an_address() -> None:
    lines = [line(), line(agent="Opera/9.80 (X11; Linux x86_64) Presto/2.12.388")]

    by_address, _ = run(lines)
    by_agent, _ = run(lines, ImportOptions(by_user_agent=True))

    assert by_address[0]["lead_id"] == by_address[1]["lead_id"]
    assert by_agent[0]["lead_id"] != by_agent[1]["lead_id"]


def test_referrer_keeps_scheme_host_and_path_only() -> None:
    referrer = "https://user:pw@www.google.com:8443/search?q=someone%40example.com#top"

    plain = only([line(referrer=referrer)])
    with_query = only(
        [line(referrer=referrer)], ImportOptions(keep_referrer_query=True)
    )

    assert plain["referrer"] == "https://www.google.com:8443/search"
    assert with_query["referrer"].endswith("/search?q=someone%40example.com")


def test_unusable_referrer_is_left_out() -> None:
    event = only([line(referrer="not a url")])

    assert "referrer" not in event


def test_a_referrer_too_long_for_the_scorer_is_left_out() -> None:
    longest = "https://example.com/" + "a" * (4096 - len("https://example.com/"))

    kept = only([line(referrer=longest)])
    left_out = only([line(referrer=longest + "a")])

    assert kept["referrer"] == longest
    assert "referrer" not in left_out
    assert left_out["url"] == "/blog/post.html"


def test_escaped_quote_and_trailing_fields_are_accepted() -> None:
    agent = 'Mozilla/5.0 (X11) \\"quoted\\" Firefox/27.0'
    text = line(agent=agent).rstrip("\n") + ' "extra field"\r\n'

    event = only([text])

    assert event["url"] == "/blog/post.html"


def test_custom_category_prefixes_longest_wins() -> None:
    options = ImportOptions(category_prefixes={"/docs/": "docs", "/docs/api/": "api"})

    event = only([line(request="GET /docs/api/v1 HTTP/1.1")], options)

    assert event["category"] == "api"


def command(*args: str) -> subprocess.CompletedProcess[str]:
    return scorer("import-access-log", *args)


def module(*args: str) -> subprocess.CompletedProcess[str]:
    return scorer(*args, module="scorer.accesslog")


@pytest.mark.parametrize("runner", [command, module])
def test_events_go_to_stdout_and_stats_to_stderr(runner: Runner) -> None:
    result = runner(str(SAMPLE), "--salt", "s")

    assert result.returncode == 0, result.stderr
    events = [json.loads(text) for text in result.stdout.splitlines()]
    assert len(events) == 43
    assert "lines_read=300" in result.stderr
    assert "events.page_view=43" in result.stderr
    assert "distinct_leads=33" in result.stderr
    assert "2001:db8" not in result.stdout + result.stderr


def test_options_go_before_or_after_the_file() -> None:
    after = command(str(SAMPLE), "--salt", "s", "--by-user-agent", "--keep-feeds")
    before = command("--salt", "s", "--keep-feeds", str(SAMPLE), "--by-user-agent")
    unsalted = command(str(SAMPLE), "--by-user-agent", "--keep-feeds")

    assert after.returncode == before.returncode == 0, before.stderr
    assert after.stdout == before.stdout
    assert after.stdout and after.stdout != unsalted.stdout


def test_help_documents_every_option() -> None:
    result = command("--help")

    assert result.returncode == 0
    assert result.stdout.startswith("usage: scorer import-access-log ")
    for option in ("FILE", "--salt SALT", "--by-user-agent", "--keep-feeds"):
        assert f"  {option}  " in result.stdout
    assert "args" not in result.stdout


@pytest.mark.parametrize("runner", [command, module])
@pytest.mark.parametrize(
    ("args", "problem"),
    [
        ((), "the following arguments are required: FILE"),
        ((str(SAMPLE), "--bogus"), "unrecognized arguments: --bogus"),
        (("--salt",), "argument --salt: expected one argument"),
    ],
)
def test_usage_errors_name_the_command(
    runner: Runner, args: tuple[str, ...], problem: str
) -> None:
    result = runner(*args)

    assert result.returncode == 2
    assert result.stderr.startswith("usage: scorer import-access-log ")
    assert result.stderr.endswith(f"scorer import-access-log: error: {problem}\n")
    assert result.stdout == ""


@pytest.mark.parametrize("runner", [command, module])
def test_a_missing_file_is_one_error_line(tmp_path: Path, runner: Runner) -> None:
    absent = tmp_path / "absent.log"

    result = runner(str(absent))

    assert result.returncode == 1
    assert result.stderr == f"error: {absent}: No such file or directory\n"
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_a_page_query_string_is_dropped_unless_asked_for() -> None:
    """A GET form can put a visitor's e-mail and name into the URL."""
    request = "GET /pricing?email=alice%40example.com&name=Alice HTTP/1.1"

    plain = only([line(request=request)])
    kept = only([line(request=request)], ImportOptions(keep_url_query=True))

    assert plain["url"] == "/pricing"
    assert kept["url"] == "/pricing?email=alice%40example.com&name=Alice"


@pytest.mark.parametrize(
    "when",
    [
        "31/Dec/9999:23:59:59 -2359",  # 10000-01-01 in UTC
        "01/Jan/0001:00:00:00 +2359",  # the year 0 in UTC
    ],
)
def test_a_time_outside_the_years_1_to_9999_in_utc_is_a_bad_time(when: str) -> None:
    events, stats = run([line(when=when), line()])

    assert len(events) == 1
    assert stats.dropped == Counter({"bad_time": 1})


def test_every_line_outside_the_scorers_time_bounds_is_counted_as_such() -> None:
    """An archive older than 2000 shows as that, whatever else its lines are."""
    old = "17/May/1999:10:05:03 +0000"
    lines = [
        line(when=old),
        line(when=old, agent="Googlebot/2.1"),
        line(when=old, request="GET /logo.png HTTP/1.1"),
        line(when="17/May/2999:10:05:03 +0000", status=404),
    ]

    events, stats = run(lines)

    assert events == []
    assert stats.dropped == Counter({"invalid_timestamp_out_of_range": 4})


def padded(chars: int, ending: str = "\n") -> str:
    """A good line of `chars` characters before `ending`, by its user agent."""
    short = line(agent="").rstrip("\n")
    return line(agent="M" * (chars - len(short))).rstrip("\n") + ending


def test_a_line_over_the_length_limit_is_dropped_before_it_is_parsed() -> None:
    at_limit = padded(MAX_LINE_CHARS)
    over = padded(MAX_LINE_CHARS + 1)

    events, stats = run([at_limit, over])

    assert len(at_limit.rstrip("\n")) == MAX_LINE_CHARS
    assert len(events) == 1
    assert stats.dropped == Counter({"line_too_long": 1})


@pytest.mark.parametrize("stdin", [False, True])
def test_a_long_line_is_skipped_to_its_end(tmp_path: Path, stdin: bool) -> None:
    text = "".join(
        [
            padded(MAX_LINE_CHARS, "\r\n"),
            padded(MAX_LINE_CHARS + 1),
            padded(MAX_LINE_CHARS * 16 + 7),
            line(),
        ]
    )
    log = tmp_path / "access.log"
    log.write_text(text, newline="")

    result = (
        scorer("import-access-log", "-", stdin=text) if stdin else command(str(log))
    )

    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == 2
    assert "lines_read=4" in result.stderr
    assert "dropped.line_too_long=2" in result.stderr


# Runs the import in a child and prints the child's peak memory in KiB.
# VmHWM, not ru_maxrss: ru_maxrss keeps the peak of the process that forked
# the child, which is the test runner's.
PEAK_MEMORY = """
import re, sys
from pathlib import Path
from scorer import cli
cli.main(["--log-level", "ERROR", "import-access-log", "--salt", "s", sys.argv[1]])
status = Path("/proc/self/status").read_text()
print(re.search(r"VmHWM:\\s+(\\d+) kB", status).group(1), file=sys.stderr)
"""


def peak_memory_kib(log: Path) -> int:
    result = subprocess.run(
        [sys.executable, "-c", PEAK_MEMORY, str(log)],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(result.stderr.splitlines()[-1])


def test_a_long_line_is_never_held_whole(tmp_path: Path) -> None:
    # Without spaces the line pattern gives up cheaply, so only reading the
    # line could cost memory: a 48 MiB line read whole costs at least that.
    short, long = tmp_path / "short.log", tmp_path / "long.log"
    short.write_text(line())
    long.write_text("x" * (48 << 20) + "\n" + line())

    growth_kib = peak_memory_kib(long) - peak_memory_kib(short)

    assert growth_kib < 16 << 10


@pytest.mark.parametrize(
    "when",
    [
        "17/May/2015:10:05:03 +0060",
        "17/May/2015:10:05:03 -0099",
        "17/May/2015:10:05:03 +2400",
        "17/May/2015:10:05:60 +0000",  # second 60 away from a month's end
        "30/Jun/2015:22:59:60 +0000",
        "30/Jun/2015:23:59:60 +0100",  # 22:59:60 in UTC
    ],
)
def test_times_the_json_parser_refuses_are_bad_times(when: str) -> None:
    assert dropped_as(line(when=when)) == "bad_time"


@pytest.mark.parametrize(
    "when",
    [
        "30/Jun/2015:23:59:60 +0000",
        "01/Jul/2015:01:59:60 +0200",  # 23:59:60 in UTC
        "30/Jun/2015:20:29:60 -0330",
    ],
)
def test_a_leap_second_is_read_as_the_json_parser_reads_it(when: str) -> None:
    event = only([line(when=when)])

    assert event["occurred_at"] == "2015-06-30T23:59:59.999Z"
    assert parse_time("2015-06-30T23:59:60Z", "t") == parse_time(
        event["occurred_at"], "t"
    )


def test_the_summary_names_the_first_line_dropped_for_each_reason() -> None:
    lines = [
        line(),
        line(when="32/May/2015:10:05:03 +0000"),
        line(status=404),
        line(when="17/May/2015:10:05:03 +0060"),
    ]

    result = scorer("import-access-log", "-", stdin="".join(lines))

    assert result.returncode == 0, result.stderr
    summary = result.stderr.splitlines()
    assert "dropped=3" in summary
    assert "dropped.bad_time=2 first_line=2" in summary
    assert "dropped.error_status=1 first_line=3" in summary


def scorer_bytes(*args: str, stdin: bytes) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "scorer.cli", "import-access-log", *args],
        capture_output=True,
        input=stdin,
        check=False,
    )


def test_a_gzip_log_is_read_as_its_text(tmp_path: Path) -> None:
    plain = SAMPLE.read_bytes()
    packed = tmp_path / "apache.gz"
    packed.write_bytes(gzip.compress(plain))
    expected = command(str(SAMPLE), "--salt", "s")

    from_file = command(str(packed), "--salt", "s")
    from_stdin = scorer_bytes("-", "--salt", "s", stdin=packed.read_bytes())
    plain_stdin = scorer_bytes("-", "--salt", "s", stdin=plain)

    assert from_file.returncode == from_stdin.returncode == 0, from_file.stderr
    assert "events.page_view=43" in from_file.stderr
    assert from_file.stdout == expected.stdout
    assert from_stdin.stdout.decode() == expected.stdout
    assert plain_stdin.stdout.decode() == expected.stdout
    assert "gzip-compressed or not" in command("--help").stdout


def test_a_byte_order_mark_before_the_first_line_is_ignored() -> None:
    assert ids(["\ufeff" + line(), line()]) == ids([line(), line()])


@pytest.mark.parametrize("ending", ["\r", "\r\n", "\n"])
def test_a_lone_cr_ends_a_line_as_lf_and_cr_lf_do(ending: str) -> None:
    requests = [line(request=f"GET /{name} HTTP/1.1") for name in "abc"]
    text = "\ufeff" + "".join(request.replace("\n", ending) for request in requests)

    result = scorer_bytes("-", stdin=text.encode())

    assert result.returncode == 0, result.stderr
    expected, _ = run(requests)
    assert result.stdout.decode() == "".join(json.dumps(e) + "\n" for e in expected)
    assert b"lines_read=3\n" in result.stderr


def test_two_gzip_members_one_after_the_other_are_read_in_turn() -> None:
    text = "".join([line(request="GET /a HTTP/1.1"), line(request="GET /b HTTP/1.1")])
    halves = text.splitlines(keepends=True)
    packed = b"".join(gzip.compress(half.encode()) for half in halves)

    result = scorer_bytes("-", stdin=packed)

    assert result.returncode == 0, result.stderr
    urls = [json.loads(event)["url"] for event in result.stdout.splitlines()]
    assert urls == ["/a", "/b"]


@pytest.mark.parametrize(
    "damage",
    [
        lambda packed: packed[: len(packed) // 2],  # cut short
        lambda packed: packed[:40] + b"\xff" * 40 + packed[80:],  # corrupt
    ],
)
def test_damaged_gzip_data_is_one_error_line(
    tmp_path: Path, damage: Callable[[bytes], bytes]
) -> None:
    packed = tmp_path / "apache.gz"
    packed.write_bytes(damage(gzip.compress(SAMPLE.read_bytes())))

    result = command(str(packed), "--salt", "s")

    assert result.returncode == 1
    last = result.stderr.splitlines()[-1]
    assert last.startswith(f"error: {packed}: the gzip data is damaged or cut short")
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("magic", "compression"),
    [
        (b"BZh91AY&SY", "bzip2"),
        (b"\xfd7zXZ\x00\x00\x04", "xz"),
        (b"\x28\xb5\x2f\xfd\x24\x00", "zstd"),
    ],
)
@pytest.mark.parametrize("stdin", [False, True])
def test_other_compressions_are_named_and_not_read(
    tmp_path: Path, magic: bytes, compression: str, stdin: bool
) -> None:
    packed = tmp_path / "access.log.x"
    packed.write_bytes(magic + b"\x00" * 64)

    if stdin:
        result = scorer_bytes("-", stdin=packed.read_bytes())
    else:
        result = scorer_bytes(str(packed), stdin=b"")

    name = "<stdin>" if stdin else str(packed)
    assert result.returncode == 1
    assert result.stderr.decode().startswith(
        f"error: {name}: the data is {compression}-compressed; decompress it first: "
    )
    assert (
        result.stderr.decode()
        .rstrip()
        .endswith(f" {'FILE' if stdin else packed} | scorer import-access-log -")
    )
    assert len(result.stderr.splitlines()) == 1
    assert result.stdout == b""


def common(host: str = "192.0.2.7") -> str:
    return line(host=host).rsplit(' "-" ', 1)[0] + "\n"


def test_a_common_format_line_is_counted_as_such() -> None:
    assert common().endswith('" 200 512\n')
    assert dropped_as(common()) == "common_format"


def test_the_virtual_host_of_vhost_combined_is_ignored() -> None:
    plain = only([line()])
    vhost = only(["www.example.com:443 " + line()])

    assert vhost["lead_id"] == plain["lead_id"]
    assert vhost["url"] == plain["url"]
    assert dropped_as("www.example.com:443 " + common()) == "common_format"


@pytest.mark.parametrize(
    ("target", "path"),
    [
        ("/blog/../pricing", "/pricing"),
        ("/a/./b", "/a/b"),
        ("/%2e%2e/%2e%2e/etc/passwd", "/etc/passwd"),
        ("/docs/v1/..", "/docs/"),
        ("/..", "/"),
        ("/a/.hidden/b", "/a/.hidden/b"),
    ],
)
def test_dot_segments_are_removed(target: str, path: str) -> None:
    view = only([line(request=f"GET {target} HTTP/1.1")])

    assert view["url"] == path
    assert "category" not in view or path.startswith("/blog/")


def test_an_ipv6_referrer_keeps_its_brackets() -> None:
    view = only([line(referrer="http://[2001:db8::1]:8080/x?q=1")])

    assert view["referrer"] == "http://[2001:db8::1]:8080/x"


@pytest.mark.parametrize("vhost", ["_default_:443", "[2001:db8::80]:443", "shop"])
def test_other_virtual_host_fields_are_read(vhost: str) -> None:
    assert only([f"{vhost} {line()}"])["url"] == "/blog/post.html"


@pytest.mark.parametrize(
    ("text", "counts"),
    [
        ("".join(line(host="-") for _ in range(2)), "lines_read=2 no_client=2"),
        ("x" * 70_000 + "\n", "lines_read=1 line_too_long=1"),
    ],
)
def test_an_input_with_nothing_usable_fails(text: str, counts: str) -> None:
    result = scorer("import-access-log", "--salt", "s", "-", stdin=text)

    assert result.returncode == 1
    assert result.stderr.splitlines()[-1].endswith(f"({counts})")


def test_a_log_whose_times_are_written_otherwise_fails() -> None:
    """nginx's $time_iso8601 in place of $time_local: no line has a time."""
    text = line(when="2015-05-17T10:05:03+00:00") + line(when="17/May/2015:10:05:03")

    result = scorer("import-access-log", "--salt", "s", "-", stdin=text)

    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == (
        "error: <stdin>: no line has a time as the combined format writes it "
        "([10/Oct/2000:13:55:36 -0700]) (lines_read=2 bad_time=2)"
    )


def test_an_input_with_no_combined_line_fails_naming_the_counts() -> None:
    text = "".join([common(), common(host="198.51.100.1"), "\n", "x\n"])

    result = scorer("import-access-log", "--salt", "s", "-", stdin=text)

    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == (
        "error: <stdin>: no line is in the combined format "
        "(lines_read=4 blank=1 common_format=2 unparseable=1)"
    )
    assert "192.0.2.7" not in result.stderr


@pytest.mark.parametrize(
    "lines",
    [
        [],
        [common(), line()],
        [common(), line(agent="Googlebot/2.1")],
        [line(status=404)],
        [line(when="2015-05-17T10:05:03Z"), line()],
    ],
)
def test_an_input_with_a_combined_line_succeeds(lines: list[str]) -> None:
    result = scorer("import-access-log", "--salt", "s", "-", stdin="".join(lines))

    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("target", "url"),
    [
        ("/%70ricing", "/pricing"),
        ("/%7Euser/a%2dB%5f%2E", "/~user/a-B_."),
        ("/docs%2fpricing%c3%a9", "/docs%2Fpricing%C3%A9"),
        ("https://www.example.com/pricing?plan=pro", "/pricing"),
        ("HTTP://www.example.com:8080", "/"),
        ("http://www.example.com?plan=pro", "/"),
        ("/shop;jsessionid=ABC123?plan=pro", "/shop"),
        ("/a;b/c;d", "/a"),
    ],
)
def test_urls_are_normalised(target: str, url: str) -> None:
    assert only([line(request=f"GET {target} HTTP/1.1")])["url"] == url


@pytest.mark.parametrize(
    ("target", "url"),
    [
        ("/shop;jsessionid=ABC123?plan=pro", "/shop;jsessionid=ABC123?plan=pro"),
        ("/shop;jsessionid=ABC123", "/shop;jsessionid=ABC123"),
        ("https://www.example.com/p%61th?q=%61", "/path?q=%61"),
    ],
)
def test_keep_url_query_keeps_path_parameters_too(target: str, url: str) -> None:
    options = ImportOptions(keep_url_query=True)

    assert only([line(request=f"GET {target} HTTP/1.1")], options)["url"] == url


def test_path_parameters_leave_downloads_and_referrers() -> None:
    referrer = "https://www.example.com/a;jsessionid=XYZ?q=1"
    request = "GET /files/a.pdf;jsessionid=ABC HTTP/1.1"

    download = only([line(request=request)], ImportOptions(keep_url_query=True))
    view = only([line(referrer=referrer)], ImportOptions(keep_url_query=True))
    kept = only([line(referrer=referrer)], ImportOptions(keep_referrer_query=True))

    assert download["asset_id"] == "/files/a.pdf"
    assert download["asset_type"] == "whitepaper"
    assert view["referrer"] == "https://www.example.com/a"
    assert kept["referrer"] == referrer


@pytest.mark.parametrize(
    ("target", "url"),
    [
        ("/unsubscribe/jane.doe@example.com", "/unsubscribe/(e-mail)"),
        ("/npm/lodash@4.17.21", "/npm/lodash@4.17.21"),  # a version pin
        ("/tree/main@v1.2/docs", "/tree/main@v1.2/docs"),
        ("/prefs/jane%40example.co.uk/edit", "/prefs/(e-mail)/edit"),
        ("/u/jane%2540example.com", "/u/(e-mail)"),  # encoded twice
        ("/u/jane%252540example.com/x", "/u/(e-mail)/x"),
        ("/blog/at-sign@home", "/blog/at-sign@home"),  # no domain: no address
        # Whatever follows the address in its segment goes with it.
        ("/unsubscribe/jane.doe@example.com%20", "/unsubscribe/(e-mail)"),
        ("/verify/jane.doe@example.com:tok123", "/verify/(e-mail)"),
        ("/u/jane.doe@example.com,list7/x", "/u/(e-mail)/x"),
        ("/u/jane.doe@example.com-confirm", "/u/(e-mail)"),
        ("/u/jane.doe@example.com%2Fx", "/u/(e-mail)"),
    ],
)
def test_an_email_address_in_the_path_is_left_out(target: str, url: str) -> None:
    assert only([line(request=f"GET {target} HTTP/1.1")])["url"] == url


def test_an_email_address_is_left_out_after_the_request_is_classified() -> None:
    avatar = "GET /avatar/jane@example.com.png HTTP/1.1"
    invoice = only([line(request="GET /files/bill-jane@example.com.pdf HTTP/1.1")])
    unsubscribe = "GET /unsubscribe;email=jane@example.com HTTP/1.1"
    kept = only([line(request=unsubscribe)], ImportOptions(keep_url_query=True))

    assert dropped_as(line(request=avatar)) == "static_asset"
    assert (invoice["type"], invoice["asset_id"]) == (
        "content_download",
        "/files/(e-mail)",
    )
    assert kept["url"] == "/unsubscribe;email=(e-mail)"


@pytest.mark.parametrize(
    "path", ["/u/jane.doe%40example%2Ecom", "/u/jane.doe@example.com:x"]
)
def test_an_email_address_leaves_a_referrer_however_it_is_spelt(path: str) -> None:
    view = only([line(referrer=f"http://t.example.net{path}")])

    assert view["referrer"] == "http://t.example.net/u/(e-mail)"


def test_an_email_address_leaves_downloads_and_referrers_too() -> None:
    referrer = "https://mail.example.com/read/jane@example.com/pricing"
    download = only([line(request="GET /f/jane@example.com/report.pdf HTTP/1.1")])
    view = only([line(referrer=referrer)])

    assert download["asset_id"] == "/f/(e-mail)/report.pdf"
    assert view["referrer"] == "https://mail.example.com/read/(e-mail)/pricing"


def test_the_salt_can_come_from_the_environment() -> None:
    flag = scorer("import-access-log", str(SAMPLE), "--salt", "from-flag")
    variable = scorer(
        "import-access-log",
        str(SAMPLE),
        env={"SCORER_ACCESS_LOG_SALT": "from-variable"},
    )
    both = scorer(
        "import-access-log",
        str(SAMPLE),
        "--salt",
        "from-flag",
        env={"SCORER_ACCESS_LOG_SALT": "from-variable"},
    )
    unsalted = scorer("import-access-log", str(SAMPLE), env={})

    assert flag.returncode == variable.returncode == both.returncode == 0
    assert variable.stdout == command(str(SAMPLE), "--salt", "from-variable").stdout
    assert both.stdout == flag.stdout
    assert variable.stdout != unsalted.stdout
    assert "no salt given" not in variable.stderr
    assert "from-" not in flag.stderr + variable.stderr + both.stderr
    assert "SCORER_ACCESS_LOG_SALT" in command("--help").stdout


def test_gzip_data_cut_before_the_first_line_says_so(tmp_path: Path) -> None:
    packed = tmp_path / "apache.gz"
    packed.write_bytes(gzip.compress(SAMPLE.read_bytes())[:12])

    result = command(str(packed), "--salt", "s")

    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == (
        f"error: {packed}: the gzip data is damaged or cut short before the first line"
    )
