"""Editions built by hand with fixed dates, and rendered in-process with a config file."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from pipeline.config import Config, load_config
from pipeline.models import Credit, EditionPlan, Item, Kind, Meeting, Rendered
from pipeline.render import Renderer

PUBLIC_URL = "https://nyhetsbrev.example.org"

CREATED = datetime(2026, 2, 17, 7, 0, tzinfo=UTC)  # 08:00 in Oslo

INTRO = {
    "nb": "Velkommen til februarutgaven: to kronikker, tre blogginnlegg og to møter.",
    "nn": "Velkomen til februarutgåva: to kronikkar, tre blogginnlegg og to møte.",
    "en": "Welcome to the February edition: two chronicles, three blog posts and two meetings.",
}

KARI = Credit("kari-nordmann", "Kari Nordmann", "Prorektor, NTNU")

OLA = Credit("ola-hansen", "Ola Hansen", "Ordfører i Melhus")

SIRI = Credit("siri-berg", "Siri Berg")


def write_config(folder: Path, language: str = "nb", extra: str = "") -> Config:
    """A config file in `folder` for this language, read back the way trnews reads it."""
    path = folder / "trnews.toml"
    path.write_text(
        f"""\
[newsletter]
title = "Ambassadørnytt"
sender = "Trondheimsregionen <nyhetsbrev@example.org>"
reply_to = "post@example.org"
public_url = "{PUBLIC_URL}"
language = "{language}"
timezone = "Europe/Oslo"
intro = "{INTRO[language]}"
{extra}
""",
        encoding="utf-8",
    )
    return load_config(path)


def item(
    n: int,
    title: str,
    kind: Kind = Kind.BLOG,
    *,
    date: datetime,
    credits: tuple[Credit, ...] = (KARI,),
    excerpt: str = "",
    link: str | None = None,
) -> Item:
    return Item(
        id=n,
        key=f"https://blogg.example.org/{n}",
        link=f"https://blogg.example.org/{n}" if link is None else link,
        title=title,
        excerpt=excerpt,
        kind=kind,
        date=date,
        first_seen=date,
        credits=credits,
    )


def meeting(title: str, start: datetime, **kw: object) -> Meeting:
    return Meeting(key=title, title=title, start=start, **kw)  # type: ignore[arg-type]


def plan(
    items: tuple[Item, ...] = (),
    meetings: tuple[Meeting, ...] = (),
    overflow: tuple[Item, ...] = (),
) -> EditionPlan:
    return EditionPlan(
        created=CREATED,
        items=items,
        overflow=overflow,
        meetings=meetings,
        new_meetings=tuple(m.key for m in meetings),
    )


def render(config: Config, edition: EditionPlan) -> Rendered:
    return Renderer(config).render(edition)


def bylines_around_the_edge() -> EditionPlan:
    """Items whose byline ends anywhere from 15 columns before to past the 72-column edge of
    the text part, so that "byline · date" meets the edge at every point of the date."""
    role = "Ordfører i Melhus og leder av regionrådet i Trondheimsregionen"
    return plan(
        items=tuple(
            item(
                n,
                f"Innlegg {n}",
                date=datetime(2026, 11, 23, 9, 0, tzinfo=UTC) - timedelta(days=n),
                credits=(Credit(f"a{n}", "Kari Nordmann", role[: n - 15].rstrip()),),
                excerpt="Tekst.",
            )
            for n in range(40, 75)
        )
    )
