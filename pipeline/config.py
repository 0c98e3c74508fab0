"""Load and validate `trnews.toml`: every problem reported at once, each with its dotted key."""

from __future__ import annotations

import difflib
import functools
import hashlib
import ipaddress
import os
import re
import tomllib
from datetime import UTC, date, datetime, time
from email.utils import getaddresses, parseaddr
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from .colours import DEFAULT_ACCENT, MIN_CONTRAST, contrast_ratio, mix_until_contrast
from .errors import ConfigError, Problem, UsageError
from .sanitize import CONTROL, clean, one_line

DEFAULT_CONFIG = Path("config/trnews.toml")
CONFIG_ENV = "TRNEWS_CONFIG"


# The commonest address, lower-case ASCII with a dot-atom local part, checked here by a pattern
# whose every match email-validator takes unchanged (tests/test_address_fastpath.py holds it to
# that): loading email-validator costs every command tens of milliseconds before its first
# request, and every config load checks the sender. Anything else goes to email-validator.
_PLAIN_ADDRESS = re.compile(
    r"(?=.{1,254}\Z)[a-z0-9_+-]{1,64}(?:\.[a-z0-9_+-]+)*@"
    r"(?:(?!-)(?!.{2}--)[a-z0-9-]{1,63}(?<!-)\.)+[a-z]{2,63}",
    re.ASCII,
)


def _plain(value: str) -> bool:
    return bool(_PLAIN_ADDRESS.fullmatch(value)) and len(value.partition("@")[0]) <= 64


@functools.cache
def _email_validator() -> Any:
    """email-validator's `validate_email`, the module loaded on first use.

    Syntax only, as SPEC.md says: an intranet's `it@corp.local` or a staging setup's
    `nyhetsbrev@trnews.test` is an address like any other here, and whether mail reaches it is
    the relay's business. email-validator refuses the special-use names of RFC 6761 even when
    it is told not to check deliverability; its list is part of its API, for callers to change."""
    import email_validator

    email_validator.SPECIAL_USE_DOMAIN_NAMES.clear()
    return email_validator


def check_address(value: str) -> str:
    """Return the normalised form of a bare e-mail address (its syntax checked, not whether
    its domain takes mail), or raise UsageError saying why."""
    value = value.strip()
    if _plain(value):
        return value
    validator = _email_validator()
    try:
        return str(validator.validate_email(value, check_deliverability=False).normalized)
    except validator.EmailNotValidError as e:
        raise UsageError(f"{value!r} is not a valid e-mail address: {e}") from e


def _address(value: str) -> str:
    try:
        return check_address(value)
    except UsageError as e:
        raise ValueError(str(e)) from e


def _mailbox(value: str) -> str:
    """A From-style mailbox: `Name <addr>` or a bare address; exactly one, on one line."""
    value = _header_line(value)
    found = getaddresses([value])
    if len(found) != 1 or "@" not in found[0][1]:
        raise ValueError(f"{value!r} is not one address like 'Name <name@example.org>'")
    _address(found[0][1])
    return value


def _header_line(value: str) -> str:
    """A value that reaches a mail header: one line, without control characters, made safe.

    Refused rather than repaired: a line break here would smuggle headers (Bcc:) into every
    message sent, and whoever wrote it should hear so."""
    if CONTROL.search(value):
        raise ValueError(f"{value!r} must be one line, without control characters")
    value = clean(value).strip()
    if not value:
        raise ValueError("is empty")
    return value


def _name(value: str) -> str:
    """A name or title from the file, made safe (see pipeline.sanitize) and on one line."""
    value = one_line(value)
    if not value:
        raise ValueError("is empty")
    return value


def _required_text(value: str) -> str:
    value = clean(value)
    if not value.strip():
        raise ValueError("is empty")
    return value


def _http_url(value: str) -> str:
    if CONTROL.search(value):  # urlsplit would quietly drop tabs and line breaks
        raise ValueError(f"{value!r} must be one line, without control characters")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"{value!r} is not an http(s) URL like 'https://nyhetsbrev.example.org'")
    return value.rstrip("/")


def _timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as e:
        raise ValueError(f"unknown time zone {value!r}; use an IANA name like 'Europe/Oslo'") from e
    return value


def _cron(value: str) -> str:
    from .cron import triggers

    triggers(value, UTC)  # ValueError says what is wrong
    return value


def _env_name(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", value):
        raise ValueError(f"{value!r} is not an environment variable name")
    return value


def _accent(value: str) -> str:
    if not re.fullmatch(r"#(?:[0-9a-fA-F]{3}){1,2}", value):
        raise ValueError(f"{value!r} is not a hex colour like '{DEFAULT_ACCENT}'")
    colour = value.lower()
    if len(colour) == 4:
        colour = "#" + "".join(c * 2 for c in colour[1:])
    ratio = contrast_ratio(colour, "#ffffff")
    if ratio < MIN_CONTRAST:
        darker = mix_until_contrast(colour, "#000000", "#ffffff", MIN_CONTRAST)
        raise ValueError(
            f"{value!r} has a contrast of {ratio:.1f}:1 against white; links and the header's "
            f"white text need at least {MIN_CONTRAST}:1 (WCAG AA) to be read. "
            f"A darker shade such as '{darker}' would do"
        )
    return colour


def _logo_url(value: str) -> str:
    if CONTROL.search(value):
        raise ValueError(f"{value!r} must be one line, without control characters")
    parts = urlsplit(value)
    if parts.scheme != "https" or not parts.netloc:
        raise ValueError(
            f"{value!r} is not an https URL; mail clients fetch the logo from the web, "
            "and many refuse plain http"
        )
    if parts.path.lower().endswith(".svg"):
        raise ValueError(f"{value!r} is an SVG, which Gmail and Outlook do not show: use a PNG")
    return value


def _one_line(value: str) -> str:
    if CONTROL.search(value):
        raise ValueError(f"{value!r} must be one line, without control characters")
    return clean(value).strip()


Address = Annotated[str, AfterValidator(_address)]
Mailbox = Annotated[str, AfterValidator(_mailbox)]
HttpUrl = Annotated[str, AfterValidator(_http_url)]
Timezone = Annotated[str, AfterValidator(_timezone)]
Cron = Annotated[str, AfterValidator(_cron)]
EnvName = Annotated[str, AfterValidator(_env_name)]
Accent = Annotated[str, AfterValidator(_accent)]
LogoUrl = Annotated[str, AfterValidator(_logo_url)]
OneLine = Annotated[str, AfterValidator(_one_line)]
"""One line of text for a page or the newsletter: a line break is refused, the rest made safe."""
HeaderLine = Annotated[str, Field(min_length=1), AfterValidator(_header_line)]
"""A value that reaches a mail header: refused with a line break or control character."""
Name = Annotated[str, Field(min_length=1), AfterValidator(_name)]
"""A name or title: made safe (see pipeline.sanitize), on one line, not empty."""
Line = Annotated[str, AfterValidator(one_line)]
"""Text shown on one line, made safe."""
Text = Annotated[str, AfterValidator(clean)]
"""Free text, lines and all, made safe."""
RequiredText = Annotated[str, Field(min_length=1), AfterValidator(_required_text)]
NonEmpty = Annotated[str, Field(min_length=1)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NewsletterConfig(_Section):
    title: HeaderLine
    """In the Subject and List-Id of every message."""
    sender: Mailbox
    public_url: HttpUrl
    reply_to: Address | None = None
    language: Literal["nb", "nn", "en"] = "nb"
    """The newsletter's words, dates and times: bokmål, nynorsk or English."""
    timezone: Timezone = "Europe/Oslo"
    intro: Text = ""
    templates: Path | None = None
    """Folder whose files override the built-in templates of the same name."""
    max_items: int = Field(40, ge=1, le=10_000)
    meetings_ahead_days: int = Field(30, ge=0, le=366)
    lookback_days: int = Field(30, ge=1, le=36_500)
    secret_env: EnvName = "TRNEWS_SECRET"
    accent: Accent = DEFAULT_ACCENT
    """`#rrggbb` of the header, headings and links; refused if too light to read on white."""
    logo: LogoUrl | None = None
    """https URL of an image shown at the top of the header (PNG or JPEG, on the accent)."""
    logo_alt: OneLine | None = None
    """The logo's text for readers who do not load images; required with `logo` (checked in
    `_cross_check`, so that it is reported even when `logo` itself has a problem)."""
    logo_width: int = Field(160, ge=16, le=552)
    """The logo's width in pixels (552: the full width inside the margins)."""
    postal_address: OneLine = ""
    """The sender's postal address, shown in the footer (bulk-mail rules ask for one)."""

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @functools.cached_property
    def sender_address(self) -> str:
        """Read once: each message's Message-ID and envelope use it."""
        return parseaddr(self.sender)[1]

    @property
    def sender_name(self) -> str:
        """The From header's display name, else its address."""
        name, address = parseaddr(self.sender)
        return name or address


class ScheduleConfig(_Section):
    collect: Cron = "*/30 * * * *"
    send: Cron = "0 8 * * mon"
    send_when_empty: bool = False


class CollectConfig(_Section):
    """How feeds are fetched: politely, and never long or large enough to stall a run."""

    timeout: float = Field(30, gt=0, le=600)
    """Seconds one feed may take in all (connects, redirects, retries and waits included),
    however slowly its server drips bytes."""
    max_size_mb: float = Field(5, gt=0, le=1024)
    """A feed larger than this, decompressed, is refused while it streams in."""
    concurrency: int = Field(100, ge=1, le=1000)
    """Feeds fetched at once (at most `per_host` of them from one host): bounds our own
    sockets; `per_host` is what keeps each feed host's load polite."""
    per_host: int = Field(6, ge=1, le=100)
    """Feeds fetched at once from one host:port (many feeds share wordpress.com or medium.com)."""
    retries: int = Field(2, ge=0, le=5)
    """Retries within a run, with backoff (0.5 s, 1 s, …), after a connection error or a 408,
    429, 500, 502, 503 or 504 answer; a short Retry-After is waited out instead."""

    @property
    def max_bytes(self) -> int:
        return int(self.max_size_mb * 1024 * 1024)


class StorageConfig(_Section):
    database: Path = Path("var/trnews.db")


class AlertsConfig(_Section):
    """Messages to the admins when something needs a person: never one per run."""

    to: list[Address] = []
    """Who gets the alerts (none: alerts are only logged)."""
    feed_failures: int = Field(3, ge=1, le=1000)
    """A feed failing this many runs in a row is reported once; once more when it recovers."""


class SmtpConfig(_Section):
    host: NonEmpty = "localhost"
    port: int = Field(587, ge=1, le=65535)
    security: Literal["starttls", "tls", "none"] = "starttls"
    username: str = ""
    password_env: EnvName = "TRNEWS_SMTP_PASSWORD"
    connections: int = Field(4, ge=1, le=64)
    max_per_second: float = Field(0, ge=0)
    timeout: float = Field(30, gt=0, le=600)
    """Seconds to wait for the server on connect and on each reply."""
    ca_file: Path | None = None
    """PEM file of the CA to trust for TLS (an internal relay); default: the system's CAs."""

    @property
    def password(self) -> str:
        return os.environ.get(self.password_env, "")

    @field_validator("username")
    @classmethod
    def _no_password_in_clear(cls, value: str, info: ValidationInfo) -> str:
        host, security = info.data.get("host"), info.data.get("security")
        if value and security == "none" and isinstance(host, str) and not is_loopback(host):
            raise ValueError(
                f'a login over delivery.smtp.security = "none" would send the password in clear '
                f'to {host}: set delivery.smtp.security = "starttls" (or "tls" for port 465), '
                "or leave username empty for a relay that needs no login"
            )
        return value


class ImapConfig(_Section):
    host: NonEmpty
    port: int = Field(993, ge=1, le=65535)
    username: NonEmpty
    password_env: EnvName = "TRNEWS_IMAP_PASSWORD"
    folder: NonEmpty = "INBOX"
    ca_file: Path | None = None
    """PEM file of the CA to trust for TLS (an internal server); default: the system's CAs."""

    @property
    def password(self) -> str:
        return os.environ.get(self.password_env, "")


class BouncesConfig(_Section):
    """Where mail to the return path lands: a Maildir or an IMAP folder (over TLS)."""

    maildir: Path | None = None
    imap: ImapConfig | None = None

    @model_validator(mode="after")
    def _one_mailbox(self) -> BouncesConfig:
        if (self.maildir is None) == (self.imap is None):
            raise ValueError("give exactly one of bounces.maildir and bounces.imap")
        return self


def is_loopback(host: str) -> bool:
    """True for a host name that can only mean this machine: `localhost` (RFC 6761) or a
    loopback address (127.0.0.0/8, ::1); no name is looked up."""
    name = host.strip("[]").rstrip(".").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


class DkimConfig(_Section):
    """DKIM signing of every message (optional): the private key signs, the public one is
    published in DNS as the TXT record `{selector}._domainkey.{domain}`."""

    domain: HeaderLine
    """The signing domain (d=), normally the sender's domain, so DMARC finds it aligned."""
    selector: HeaderLine
    key_file: Path
    """PEM file of the RSA private key; relative to the config file's folder."""


class DeliveryConfig(_Section):
    transport: Literal["maildir", "smtp"] = "maildir"
    maildir: Path = Path("var/outbox")
    retry_hours: float = Field(48, gt=0, le=24 * 30)
    """A reader the server asked to wait (4xx) is tried again by later runs for this long after
    the edition was built; then they count as failed."""
    bounce_limit: int = Field(3, ge=1, le=100)
    """A reader refused for good (5xx) in this many editions in a row becomes `bounced`."""
    smtp: SmtpConfig = SmtpConfig()
    dkim: DkimConfig | None = None
    return_path: Address | None = None
    """The envelope sender; each message goes from `local+TOKEN@domain` (VERP), TOKEN naming the
    edition and the reader, so a bounce that comes back later finds them (pipeline.bounces)."""

    @field_validator("return_path")
    @classmethod
    def _no_plus(cls, value: str | None) -> str | None:
        if value is not None and "+" in value.rpartition("@")[0]:
            raise ValueError(f"{value!r}: the part before the @ must have no '+': trnews adds one")
        return value


class FeedConfig(_Section):
    url: NonEmpty
    """An http(s) URL, or a local file path (relative to the config file)."""
    kind: Literal["blog", "chronicle", "video"]
    author: Name | None = None
    """Keep only entries whose author field names this person (a newspaper's shared feed)."""

    @field_validator("url")
    @classmethod
    def _url_or_path(cls, value: str) -> str:
        scheme = urlsplit(value).scheme
        if scheme in ("http", "https"):
            _http_url(value)
            return value
        if scheme == "file":
            raise ValueError("write a local feed as a plain path, not a file: URL")
        if len(scheme) > 1:  # "c:" is a Windows drive, anything longer a scheme
            raise ValueError(f"{value!r}: only http(s) URLs and local file paths are supported")
        return value

    @property
    def is_local(self) -> bool:
        return urlsplit(self.url).scheme not in ("http", "https")


# -- the ambassador plan, calendars, the message bank and the open report ------------------


def _location(value: str) -> str:
    """An http(s) URL, or a local file path (relative to the config file)."""
    scheme = urlsplit(value).scheme
    if scheme in ("http", "https"):
        return _http_url(value)
    if scheme == "file":
        raise ValueError("write a local file as a plain path, not a file: URL")
    if len(scheme) > 1:  # "c:" is a Windows drive, anything longer a scheme
        raise ValueError(f"{value!r}: only http(s) URLs and local file paths are supported")
    return value


def _slug(value: str) -> str:
    if not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,63}", value):
        raise ValueError(
            f"{value!r} is not a slug: use lowercase letters, digits and '-', like 'naering'"
        )
    return value


Location = Annotated[str, Field(min_length=1), AfterValidator(_location)]


def _keyword(value: str) -> str:
    value = one_line(value)
    if not value or value == "*":
        raise ValueError("is empty: write a word or a phrase, like 'næringsliv'")
    return value


Keyword = Annotated[str, AfterValidator(_keyword)]


class PlanConfig(_Section):
    """An ambassador's targets for one calendar year; a kind left out is a target of 0."""

    chronicles: int = Field(0, ge=0, le=10_000)
    blog_posts: int = Field(0, ge=0, le=10_000)
    meetings: int = Field(0, ge=0, le=10_000)
    videos: int = Field(0, ge=0, le=10_000)


class CalendarConfig(_Section):
    urls: list[Location] = []
    """iCalendar files or URLs whose events join the [[meeting]] tables."""


class MessageConfig(_Section):
    """One message of the common message bank (HP 8.3)."""

    id: Annotated[str, AfterValidator(_slug)]
    title: Name
    summary: OneLine = ""
    """The main message in one sentence."""
    arguments: list[Name] = []
    """The arguments that carry it, one sentence each, in the order they are best made."""
    keywords: list[Keyword] = Field(min_length=1)
    """An item carries the message when one of these appears in its title or excerpt as a
    whole word (any case); a keyword ending in `*` also matches longer words it begins. The
    items that carry it are its examples (pipeline.library)."""


class IndicatorConfig(_Section):
    """One of the region's indicators (HP 6.5): a published statistic, its direction of
    progress and, optionally, its goal."""

    id: Annotated[str, AfterValidator(_slug)]
    title: Name
    source: Location
    """A JSON-stat 2.0 dataset (SSB's API and most statistics offices') or a CSV with the
    header `period,value`: an http(s) URL or a local path."""
    better: Literal["higher", "lower"]
    """Which way is progress."""
    unit: OneLine | None = None
    """Shown after each value ("%" without a space); default: the dataset's unit, if any."""
    decimals: int | None = Field(None, ge=0, le=6)
    """Decimals shown; default: the dataset's, else 0."""
    target: float | None = None
    target_year: int | None = Field(None, ge=1900, le=2200)
    """The target is to be reached by the end of this year."""
    sum: OneLine | None = None
    """A JSON-stat dimension whose categories are added up (municipalities into a region)."""

    @property
    def is_local(self) -> bool:
        return urlsplit(self.source).scheme not in ("http", "https")


class ReportConfig(_Section):
    in_newsletter: bool = False
    """Close each edition with a compact table of the ambassador plan."""


def _network(value: str) -> str:
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError as e:
        raise ValueError(
            f"{value!r} is not an IP address or network like '127.0.0.1' or '10.0.0.0/8'"
        ) from e
    return value


Network = Annotated[str, AfterValidator(_network)]


class WebConfig(_Section):
    """`trnews serve`: the subscribe form, unsubscribe links, the archive (SPEC.md "The web
    side")."""

    consent_text: OneLine = ""
    """What the subscribe form's checkbox says a reader agrees to; empty: the built-in text in
    the newsletter's language. Each sign-up records this text, its hash and `consent_version`."""
    consent_version: NonEmpty = "1"
    """Names the consent text; change it whenever the text changes."""
    trusted_proxies: list[Network] = []
    """Reverse proxies whose X-Forwarded-For names the client (for the per-client limit);
    from any other peer the header is ignored, since a client could write it itself."""
    client_limit: int = Field(5, ge=1, le=10_000)
    """Sign-ups accepted from one client (IP address) per `client_window_minutes`."""
    client_window_minutes: float = Field(10, gt=0, le=24 * 60)
    purge_pending_days: float = Field(7, gt=0, le=365)
    """Unconfirmed sign-ups older than this are deleted (at start and on each sign-up)."""
    report_cache_minutes: float = Field(5, ge=0, le=24 * 60)
    """The open report at /report is rebuilt (its calendars fetched again) when it is older
    than this; meanwhile the last one is served, and one rebuild runs at a time."""


def _plan_cross_check(raw: dict[str, Any]) -> list[Problem]:
    """Unique message ids, and ambassador e-mails that tell calendar attendees apart."""
    problems: list[Problem] = []
    _unique_ids(raw, "message", problems)
    emails: dict[str, int] = {}
    for i, amb in _tables(raw.get("ambassador")):
        address = amb.get("email")
        if isinstance(address, str) and address.strip():
            folded = address.strip().casefold()
            if folded in emails:
                problems.append(
                    Problem(
                        f"ambassador[{i}].email",
                        f"{address!r} is already the e-mail of ambassador[{emails[folded]}]: "
                        "a calendar attendee with it could not be told apart",
                    )
                )
            emails.setdefault(folded, i)
    return problems


class AmbassadorConfig(_Section):
    id: NonEmpty
    """Stable, unique slug; items and meetings are credited by it."""
    name: Name
    role: Line = ""
    feeds: list[FeedConfig] = []
    email: Address | None = None  # matches calendar attendees
    plan: PlanConfig = PlanConfig()  # targets per calendar year

    @field_validator("id")
    @classmethod
    def _slug(cls, value: str) -> str:
        if not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,63}", value):
            raise ValueError(
                f"{value!r} is not a slug: use lowercase letters, digits and '-', "
                "like 'kari-nordmann'"
            )
        return value


class MeetingConfig(_Section):
    title: RequiredText
    """Made safe but not folded: the meeting's key is made from it, as written."""
    start: datetime
    end: datetime | None = None
    location: Text = ""
    ambassadors: list[str] = []
    url: HttpUrl | None = None
    description: Text = ""

    @field_validator("start", "end", mode="before")
    @classmethod
    def _whole_day(cls, value: Any) -> Any:
        # A bare TOML date (2026-12-03) is a meeting that lasts the day: start at midnight.
        if isinstance(value, date) and not isinstance(value, datetime):
            return datetime.combine(value, time())
        return value

    @property
    def key(self) -> str:
        """Stable identity: the same title and start are the same meeting across runs."""
        raw = f"{self.title}\x00{self.start.isoformat()}".encode()
        return hashlib.sha256(raw).hexdigest()[:16]


class EditorialConfig(_Section):
    """The editorial desk: who sees the edition before the subscribers, and what they decide."""

    mode: Literal["auto", "review", "approve"] = "auto"
    """"auto": no desk; "review": the editors get a draft and the send goes ahead unless they
    hold it; "approve": the send waits until an editor approves."""
    editors: list[Address] = []
    """Who gets the draft and its desk link; required for "review" and "approve"."""
    draft_hours: float = Field(4, gt=0, le=24 * 7)
    """How long before each scheduled send the scheduler makes the draft."""

    @property
    def active(self) -> bool:
        return self.mode != "auto"


class Config(_Section):
    """The whole config file, with relative paths resolved against its folder."""

    newsletter: NewsletterConfig
    schedule: ScheduleConfig = ScheduleConfig()
    collect: CollectConfig = CollectConfig()
    storage: StorageConfig = StorageConfig()
    delivery: DeliveryConfig = DeliveryConfig()
    alerts: AlertsConfig = AlertsConfig()
    ambassador: list[AmbassadorConfig] = []
    meeting: list[MeetingConfig] = []
    calendar: CalendarConfig = CalendarConfig()
    message: list[MessageConfig] = []
    indicator: list[IndicatorConfig] = []
    report: ReportConfig = ReportConfig()
    web: WebConfig = WebConfig()
    editorial: EditorialConfig = EditorialConfig()
    bounces: BouncesConfig | None = None

    path: Path = Path("trnews.toml")
    """The file this was read from (not a key in the file)."""

    @property
    def base_dir(self) -> Path:
        return self.path.parent

    def resolve(self, value: Path | str) -> Path:
        """A path from the file, resolved against the file's folder."""
        p = Path(value).expanduser()
        return p if p.is_absolute() else Path(os.path.normpath(self.base_dir / p))

    @property
    def database_path(self) -> Path:
        return self.resolve(self.storage.database)

    @property
    def maildir_path(self) -> Path:
        return self.resolve(self.delivery.maildir)

    @property
    def templates_path(self) -> Path | None:
        t = self.newsletter.templates
        return self.resolve(t) if t is not None else None

    def indicator_location(self, indicator: IndicatorConfig) -> str:
        """What to fetch: the URL, or the local path resolved against the config's folder."""
        return str(self.resolve(indicator.source)) if indicator.is_local else indicator.source

    def feed_location(self, feed: FeedConfig) -> str:
        """What to fetch: the URL, or the local path resolved against the config's folder."""
        return str(self.resolve(feed.url)) if feed.is_local else feed.url

    def ambassador_by_id(self) -> dict[str, AmbassadorConfig]:
        return {a.id: a for a in self.ambassador}

    @property
    def feed_count(self) -> int:
        return len({self.feed_location(f) for a in self.ambassador for f in a.feeds})


def config_path(cli_value: str | Path | None) -> Path:
    """The config file to use: the -c option, else $TRNEWS_CONFIG, else config/trnews.toml."""
    if cli_value:
        return Path(cli_value)
    env = os.environ.get(CONFIG_ENV)
    return Path(env) if env else DEFAULT_CONFIG


def dotted(loc: tuple[int | str, ...]) -> str:
    """('ambassador', 3, 'feeds', 0, 'url') → 'ambassador[3].feeds[0].url'."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _problem(err: Any) -> Problem:
    loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
    key = dotted(loc)
    kind = err["type"]
    if kind == "extra_forbidden":
        return Problem(key, _unknown_key(loc))
    if kind == "missing":
        return Problem(key, "required key is missing")
    msg = err["msg"]
    if kind == "value_error":
        msg = msg.removeprefix("Value error, ")
    return Problem(key, msg)


def _unknown_key(loc: tuple[int | str, ...]) -> str:
    """Say a key is unknown, and which known key it most looks like."""
    model: Any = Config
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part)
        annotation = getattr(field, "annotation", None)
        args = getattr(annotation, "__args__", ())
        model = next(
            (a for a in (annotation, *args) if isinstance(a, type) and issubclass(a, BaseModel)),
            None,
        )
        if model is None:
            return "unknown key"
    known = [k for k in model.model_fields if k != "path"]
    close = difflib.get_close_matches(str(loc[-1]), known, n=1)
    hint = f"did you mean {close[0]!r}?" if close else f"known keys here: {', '.join(known)}"
    return f"unknown key; {hint}"


def _cross_check(raw: dict[str, Any]) -> list[Problem]:
    """Rules that span keys: unique ids, meetings naming known ambassadors, sane times.

    Reads the raw TOML, tolerating values of the wrong type (those are reported per key), so
    these problems are listed together with every other one, not only once the rest is fixed.
    """
    problems: list[Problem] = []
    seen = _unique_ids(raw, "ambassador", problems)
    for i, amb in _tables(raw.get("ambassador")):
        urls: set[str] = set()
        for j, feed in _tables(amb.get("feeds")):
            url = feed.get("url")
            if not isinstance(url, str):
                continue
            if url in urls:
                problems.append(
                    Problem(f"ambassador[{i}].feeds[{j}].url", "listed twice for this ambassador")
                )
            urls.add(url)
    newsletter = raw.get("newsletter")
    if isinstance(newsletter, dict) and newsletter.get("logo") and not newsletter.get("logo_alt"):
        problems.append(
            Problem(
                "newsletter.logo_alt",
                "required when newsletter.logo is set: the words readers see instead of the "
                "image when it is blocked or not loaded, like 'Trondheimsregionen'",
            )
        )
    tz_name = newsletter.get("timezone") if isinstance(newsletter, dict) else None
    try:
        tz = ZoneInfo(tz_name) if isinstance(tz_name, str) else ZoneInfo("Europe/Oslo")
    except (ZoneInfoNotFoundError, ValueError):
        tz = ZoneInfo("Europe/Oslo")  # reported as newsletter.timezone already
    for i, meeting in _tables(raw.get("meeting")):
        refs = meeting.get("ambassadors")
        for j, ref in enumerate(refs if isinstance(refs, list) else []):
            if isinstance(ref, str) and ref not in seen:
                problems.append(
                    Problem(f"meeting[{i}].ambassadors[{j}]", f"no ambassador has the id {ref!r}")
                )
        start, end = _raw_moment(meeting.get("start"), tz), _raw_moment(meeting.get("end"), tz)
        if start is not None and end is not None and end < start:
            problems.append(Problem(f"meeting[{i}].end", "is before start"))
    problems += _plan_cross_check(raw)
    _unique_ids(raw, "indicator", problems)
    for i, ind in _tables(raw.get("indicator")):
        if ("target" in ind) != ("target_year" in ind):
            given, missing = (
                ("target", "target_year")
                if "target" in ind
                else (
                    "target_year",
                    "target",
                )
            )
            problems.append(
                Problem(
                    f"indicator[{i}].{missing}",
                    f"required with {given}: a target is a value to reach by the end of a "
                    "year, like target = 160000 and target_year = 2030",
                )
            )
    editorial = raw.get("editorial")
    if (
        isinstance(editorial, dict)
        and editorial.get("mode") in ("review", "approve")
        and not editorial.get("editors")
    ):
        problems.append(
            Problem(
                "editorial.editors",
                f"required when editorial.mode is {editorial['mode']!r}: the addresses that get "
                'the draft and its desk link, like ["redaksjon@example.org"]',
            )
        )
    return problems


def _unique_ids(raw: dict[str, Any], table: str, problems: list[Problem]) -> dict[str, int]:
    """Each id of the `[[table]]` array and where it first stands; a repeated id is a
    problem naming both places."""
    seen: dict[str, int] = {}
    for i, entry in _tables(raw.get(table)):
        entry_id = entry.get("id")
        if not isinstance(entry_id, str):
            continue
        if entry_id in seen:
            problems.append(
                Problem(
                    f"{table}[{i}].id", f"{entry_id!r} is already used by {table}[{seen[entry_id]}]"
                )
            )
        seen.setdefault(entry_id, i)
    return seen


def _tables(value: Any) -> list[tuple[int, dict[str, Any]]]:
    """The tables of a raw array of tables, with their indexes; anything else is skipped."""
    if not isinstance(value, list):
        return []
    return [(i, t) for i, t in enumerate(value) if isinstance(t, dict)]


def _raw_moment(value: Any, tz: ZoneInfo) -> datetime | None:
    """A raw TOML date or datetime as an aware datetime (local ones in `tz`), else None."""
    if isinstance(value, date) and not isinstance(value, datetime):
        value = datetime.combine(value, time())
    if not isinstance(value, datetime):
        return None
    return value if value.tzinfo else value.replace(tzinfo=tz)


def _aware(value: datetime, cfg: Config) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=cfg.newsletter.tz)


def meeting_start(meeting: MeetingConfig, cfg: Config) -> datetime:
    """The meeting's start as an aware datetime; a local time is in newsletter.timezone."""
    return _aware(meeting.start, cfg)


def meeting_end(meeting: MeetingConfig, cfg: Config) -> datetime | None:
    return _aware(meeting.end, cfg) if meeting.end else None


def read_toml(path: Path) -> dict[str, Any]:
    """The raw TOML of `path`, or ConfigError naming the file and the line."""
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError as e:
        hint = (
            "name your config file with -c PATH or $TRNEWS_CONFIG, or start one from the "
            "example config/trnews.toml in the trnews sources"
        )
        raise ConfigError(path, [Problem("", f"no such file; {hint}")]) from e
    except OSError as e:
        raise ConfigError(path, [Problem("", f"cannot read: {e.strerror}")]) from e
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(path, [Problem("", f"not valid TOML: {e}")]) from e
    except UnicodeDecodeError as e:
        raise ConfigError(path, [Problem("", f"not UTF-8 text: {e}")]) from e


def load_config(path: Path | str) -> Config:
    """Read and validate the config file; ConfigError lists every problem found."""
    path = Path(path)
    raw = read_toml(path)
    problems: list[Problem] = []
    if "path" in raw:
        problems.append(Problem("path", _unknown_key(("path",))))
        raw = {k: v for k, v in raw.items() if k != "path"}
    cfg: Config | None = None
    cause: ValidationError | None = None
    try:
        cfg = Config.model_validate({**raw, "path": path.absolute()})
    except ValidationError as e:
        cause = e
        problems += [_problem(err) for err in e.errors()]
    problems += _cross_check(raw)
    if problems or cfg is None:
        raise ConfigError(path, problems) from cause
    return cfg
