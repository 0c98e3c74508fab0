"""The one Jinja environment, the words in the newsletter's language, and the colours: what the
edition (pipeline/render.py), the open report (pipeline/report.py) and the web pages
(pipeline/web.py) render with.

Templates are looked up in the admin's folder (`newsletter.templates`) first, then in the
built-in `templates/`: a file there replaces the built-in one of the same name, and
`builtin/NAME` always names the built-in one, so an override can wrap it rather than copy it.
A folder that is set but missing is an error that names it, never a silent fall-back.

Words come from gettext catalogues, `pipeline/locale/<lang>/LC_MESSAGES/trnews.po`, used in the
templates through Jinja's i18n extension (`{% trans %}`, `_()`, `ngettext`) and in the code
through `translations`. The catalogues are compiled from the .po files in memory when first
used, so there is no .mo file to build, ship or let go stale; `make messages` extracts the
messages from the code and templates and updates the catalogues.

Each kind of output escapes as it did before there was one environment (`Escaping`): the
edition's MJML and HTML (and strings), the web side's HTML only (its .txt and .css are not
HTML), and every file of the report page.
"""

from __future__ import annotations

import enum
import functools
import gettext
import io
import textwrap
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import jinja2
from babel.dates import format_date
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import format_decimal

from .colours import MIN_CONTRAST, mix_until_contrast
from .config import Config
from .errors import RenderError

LOCALE_DIR = Path(__file__).resolve().parent / "locale"
DOMAIN = "trnews"
TEXT_WIDTH = 72
"""The width of the plain-text parts, in columns."""
NBSP = "\u00a0"

LIGHT = {
    "page": "#eef1f4",
    "card": "#ffffff",
    "text": "#1d1d1b",
    "muted": "#4a4a4a",
    "rule": "#d9dee3",
    "on_accent": "#ffffff",
}
"""The colours of the design around the accent, every one stated explicitly on the element it
colours, so a mail client's dark mode inverts text and background together."""
DARK = {
    "page": "#111315",
    "card": "#1c1f22",
    "text": "#e6e8ea",
    "muted": "#b4bac0",
    "rule": "#3a4046",
}
"""The same for readers in dark mode (Apple Mail, iOS, Outlook for Mac honour it)."""


def builtin_templates() -> Path:
    """The built-in templates: inside the installed package, or `templates/` of a checkout."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "templates", here.parent / "templates"):
        if (candidate / "edition.mjml").is_file():
            return candidate
    raise RenderError(f"the built-in templates are missing (looked in {here / 'templates'})")


@functools.cache
def translations(language: str) -> gettext.GNUTranslations:
    """The message catalogue of `language`, compiled in memory from its .po file."""
    po = LOCALE_DIR / language / "LC_MESSAGES" / f"{DOMAIN}.po"
    try:
        with po.open("rb") as f:
            catalog = read_po(f, locale=language, domain=DOMAIN)
    except OSError as e:
        raise RenderError(f"the message catalogue for {language!r} is missing: {po}") from e
    buffer = io.BytesIO()
    write_mo(buffer, catalog)
    buffer.seek(0)
    return gettext.GNUTranslations(buffer)


# -- filters -----------------------------------------------------------------------------------


def wrap(text: str, width: int = TEXT_WIDTH, indent: str = "") -> str:
    """`text` filled to `width` columns. A no-break space holds the words on either side on one
    line (see `together`); in the result it is a plain space."""
    return textwrap.fill(
        text,
        width=width,
        initial_indent=indent,
        subsequent_indent=indent,
        break_long_words=False,
        break_on_hyphens=False,
    ).replace(NBSP, " ")


def together(text: str) -> str:
    """`text` with no-break spaces, so that `wrap` never breaks a line inside it (a date, the
    "·" before it): "16." at the end of one line and "februar 2026" on the next reads wrong."""
    return text.replace(" ", NBSP)


def long_date(value: datetime, language: str) -> str:
    """`17. februar 2012` / `February 17, 2012`: a date as the newsletter writes it."""
    return format_date(value, "long", locale=language)


def decimal(value: float, language: str) -> str:
    """A number with one decimal in `language`: "0,4" in Norwegian, "0.4" in English."""
    return format_decimal(value, format="0.0", locale=language)


# -- colours -----------------------------------------------------------------------------------


def palette(accent: str) -> dict[str, str]:
    """Every colour the templates use: the light design, its dark-mode twin (`dark_*`), and the
    accent for links and the header, lightened in dark mode until it reads on the dark card."""
    colours = {**LIGHT, "accent": accent, **{f"dark_{k}": v for k, v in DARK.items()}}
    colours["dark_accent"] = mix_until_contrast(accent, "#ffffff", DARK["card"], MIN_CONTRAST)
    return colours


# -- the environment ---------------------------------------------------------------------------


class Escaping(enum.Enum):
    """Which templates escape HTML: each kind of output keeps the rule it was written for."""

    EDITION = "edition"
    """.mjml and .html files and strings: the message's HTML part (its .txt files are text)."""
    WEB = "web"
    """.html files only: the pages and the confirmation's HTML; its .txt and .css are not HTML."""
    EVERYTHING = "everything"
    """Every file: the report page, and the CSS it includes inside its <style>."""

    def rule(self) -> bool | Callable[[str | None], bool]:
        if self is Escaping.EDITION:
            return jinja2.select_autoescape(
                enabled_extensions=("mjml", "html"), default_for_string=True
            )
        if self is Escaping.WEB:
            return jinja2.select_autoescape(enabled_extensions=("html",))
        return True


def loader(config: Config) -> jinja2.BaseLoader:
    """The admin's folder (newsletter.templates) before the built-in templates, and
    `builtin/NAME` for the built-in file of that name."""
    builtin = jinja2.FileSystemLoader(builtin_templates())
    loaders: list[jinja2.BaseLoader] = []
    custom = config.templates_path
    if custom is not None:
        if not custom.is_dir():
            raise RenderError(f"newsletter.templates: {custom} is not a folder")
        loaders.append(jinja2.FileSystemLoader(custom))
    loaders += [builtin, jinja2.PrefixLoader({"builtin": builtin})]
    return jinja2.ChoiceLoader(loaders)


def environment(
    config: Config, escaping: Escaping, *, keep_trailing_newline: bool = False
) -> jinja2.Environment:
    """The templates of `config`, in its language, escaping as `escaping` says.

    `keep_trailing_newline` keeps a template's last line break (the message's parts end in
    one); the web pages and the report are written without it."""
    language = config.newsletter.language
    env = jinja2.Environment(
        loader=loader(config),
        autoescape=escaping.rule(),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=keep_trailing_newline,
        extensions=["jinja2.ext.i18n"],
    )
    # `{% trans %}` blocks are read with their line breaks and indentation folded, as
    # `make messages` extracts them (babel.cfg says the same).
    env.policies["ext.i18n.trimmed"] = True
    env.install_gettext_translations(translations(language), newstyle=True)  # type: ignore[attr-defined]
    env.filters["wrap"] = wrap
    env.filters["together"] = together
    env.filters["date"] = functools.partial(long_date, language=language)
    env.filters["decimal"] = functools.partial(decimal, language=language)
    return env
