"""What a command costs before it does anything: the modules it imports and the processes it
starts, read from the real CLI run as a process (how long that takes is bench/'s business)."""

from __future__ import annotations

import json
import subprocess
import sys

from support.servers import FeedServer
from support.site import Site

# The CLI's own main, run as `python -c`, then what the process had imported and started.
PROBE = """
import multiprocessing, sys, threading
from pipeline.cli import main
try:
    main()
except SystemExit as e:
    code = e.code
print("MODULES", " ".join(sorted(sys.modules)), file=sys.stderr)
for t in threading.enumerate():
    if t.name == "trnews-parse-workers":
        t.join()
pool = getattr(sys.modules.get("pipeline.parse"), "_pool", None)
print("WORKERS", pool is not None, len(multiprocessing.active_children()), file=sys.stderr)
sys.exit(code)
"""

NOT_FOR_COLLECT = (
    "jinja2",
    "mjml",
    "icalendar",
    "recurring_ical_events",
    "babel",
    "dkim",
    "starlette",
    "uvicorn",
    "pipeline.templates",
    "pipeline.render",
    "pipeline.deliver",
    "pipeline.calendars",
    "pipeline.edition",
    "email_validator",
)
"""What `trnews collect` never uses: the edition's templates, e-mail, calendars, the web, and
e-mail-validator for a sender that is a plain address (config.check_address)."""


def probe(site: Site, *args: str) -> tuple[subprocess.CompletedProcess[str], set[str], str]:
    """`trnews -c trnews.toml ARGS` through the CLI's main; its output, its modules, and
    whether it started parse workers ("True 2") or not ("False 0")."""
    site.write()
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, "-c", str(site.config), *args],
        cwd=site.root,
        capture_output=True,
        text=True,
        env=site.process_env(),
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    modules = set(next(x for x in lines if x.startswith("MODULES ")).split()[1:])
    workers = next(x for x in lines if x.startswith("WORKERS ")).removeprefix("WORKERS ")
    return proc, modules, workers


def heavy(modules: set[str], names: tuple[str, ...]) -> list[str]:
    return sorted(n for n in names if n in modules or any(m.startswith(n + ".") for m in modules))


def with_feeds(site: Site, feeds: FeedServer, n: int) -> list[str]:
    urls = [
        feeds.add_file(f"/start/{i}.xml", "blog_wordpress.xml", etag=f'"v{i}"') for i in range(n)
    ]
    site.ambassador("kari", "Kari Nordmann", feeds=[{"url": u, "kind": "blog"} for u in urls])
    return urls


def test_collect_imports_nothing_of_the_edition_the_mail_or_the_web(
    site: Site, feeds: FeedServer
) -> None:
    with_feeds(site, feeds, 3)
    proc, modules, _ = probe(site, "collect")
    assert "3 ok" in proc.stdout
    assert "httpx" in modules and "feedparser" in modules  # the probe sees what is imported
    assert heavy(modules, NOT_FOR_COLLECT) == []
    # nor the other commands' definitions
    assert heavy(modules, ("pipeline.cli.admin", "pipeline.cli.subscribers")) == []
    assert "pipeline.cli.jobs" in modules


def test_status_and_the_subscriber_commands_import_no_delivery_nor_web(site: Site) -> None:
    site.run("subscribers", "add", "kari@example.org", "--name", "Kari Nordmann")
    _, status, _ = probe(site, "status")
    _, export, _ = probe(site, "subscribers", "export", "--json")
    mail_and_web = ("mjml", "icalendar", "dkim", "starlette", "uvicorn", "pipeline.deliver")
    assert heavy(status, (*mail_and_web, "pipeline.render", "pipeline.calendars")) == []
    # (apscheduler is there: the config's schedule lines are read with it; and Babel, for
    # the spreadsheet dialects)
    not_for_export = tuple(n for n in NOT_FOR_COLLECT if n != "babel")
    assert heavy(export, (*not_for_export, "httpx", "feedparser")) == []


def test_a_run_of_304s_starts_no_parse_worker(site: Site, feeds: FeedServer) -> None:
    with_feeds(site, feeds, 20)  # more than parse.WORKERS_AFTER: a run with bodies starts them
    first, _, started = probe(site, "collect")
    assert "20 ok" in first.stdout
    assert started.startswith("True ")  # the probe sees workers when they start
    again, modules, started = probe(site, "collect")
    assert "20 not modified" in again.stdout
    assert started == "False 0"
    assert heavy(modules, ("feedparser", "pipeline.parse")) == []  # nothing to parse, no parser


def test_export_json_is_the_one_json_list_it_always_was(site: Site) -> None:
    empty = site.run("subscribers", "export", "--json")
    assert empty.stdout == "[]\n"
    readers = {
        "kare@example.org": "Kåre Ødegård-Æsøy",
        "bobby@example.org": 'Robert "); DROP TABLE subscribers;-- \\ </script>',
        "zoe@example.org": 'Zoë 🙂 {"name": 1}',
        "anon@example.org": "",
    }
    for email, name in readers.items():
        site.run("subscribers", "add", email, "--name", name)
    out = site.run("subscribers", "export", "--json").stdout
    rows = json.loads(out)
    assert out == json.dumps(rows, indent=2, ensure_ascii=False) + "\n"
    assert [r["email"] for r in rows] == sorted(readers)
    assert {r["email"]: r["name"] for r in rows} == readers
    assert {r["state"] for r in rows} == {"active"}
