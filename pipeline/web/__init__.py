"""The subscriber's side on the web (`trnews serve`): SPEC.md "The web side".

Routes, relative to newsletter.public_url:

    GET  /                     the subscribe form (e-mail, optional name, consent checkbox)
    POST /subscribe            a sign-up: the same answer whatever the address
    GET  /confirm/{token}      follows the confirmation message's link: the reader is active
    GET  /unsubscribe/{token}  a page with a button; a GET never unsubscribes
    POST /unsubscribe/{token}  unsubscribes at once (RFC 8058 one-click too): 200, no redirect
    GET  /unsubscribe          "use the link in your message" (an admin's template may put
                               the unsubscribe link outside the footer an archived copy drops)
    GET  /archive              the editions readers have, newest first
    GET  /archive/{id}         one edition as sent, with nothing personal in it: the site's
                               navigation on top, a visitor's footer in place of the reader's
    GET  /archive.atom         the same as an Atom feed
    GET  /report               the open report (pipeline/report.py's HTML page), with the
                               site's navigation as on every public page (web/nav.html)
    GET  /desk/{token}         an editor's desk: the draft of the next edition, a button for
                               each of the desk's actions, every action taken
    POST /desk/{token}         one action (drop, keep, lead, note, approve, hold), then a 303
                               back to the page
    GET  /desk/{token}/preview the draft as subscribers will get it
    GET  /healthz              200 and a small JSON body while the database answers, else 503

How it keeps people safe:
- Double opt-in: a sign-up is `pending` until its link is followed; the link is signed with
  the secret and a nonce of that sign-up, so it confirms that sign-up (its name, its consent)
  and nothing a later one said. At most one confirmation message per mailbox per hour (however
  the address is spelt: store.mailbox), and at most `[web] client_limit` sign-ups per client
  (an IPv4 address or an IPv6 /64) per `client_window_minutes`, so the form cannot be used to
  flood someone's inbox. The message is sent after the answer, which never waits for the mail
  server, and the answer's words are the same for every address: it does not tell whether an
  address is subscribed. A message the server does not take stays owed in the database and
  is tried again (CONFIRM_RETRY_DELAYS, then at each start and by the scheduler); the admins
  hear of an outage once (alerts.confirmations_unsent).
- A token that is malformed, forged, names no one or is spelt otherwise than it was made gets
  404 and changes nothing; so does an id of more than 18 digits.
- Every answer carries a strict Content-Security-Policy (`default-src 'none'`, styles only by
  the hash of each style the page holds, `form-action 'self'`, `frame-ancestors 'none'`,
  `base-uri 'none'`), `X-Content-Type-Options: nosniff`, `Referrer-Policy: no-referrer` and
  `X-Frame-Options: DENY`. No page has a script; no answer sets a cookie.
- A desk link names one editor and one draft, signed; it gets 404 when forged or once its
  edition is sent. Desk pages are never kept (no-store), indexed, or sent on as a Referer.
- POST /subscribe and POST /desk/{token} refuse a browser's cross-site post (its Origin names
  another site, or its Sec-Fetch-Site says cross-site); a post that says neither is accepted,
  and the one-click unsubscribe never asks for either (mail providers send none).

What it computes on demand (the open report, the archive's list, Atom feed and editions) is
built by one request at a time and kept (`OnDemand`): the others wait for that build, or get
the last page built while it runs, and builds run on threads of their own (`BUILDERS`), so a
report waiting on a slow calendar never holds up the other routes. The archive's list and
feed, and the report, are kept until the database changes what they show (`Changes`: another
process's send or collect is noticed within CHANGES_EVERY, with no thread and no query on each
request); the unsubscribe pages are rendered once, at start. A client that leaves in the
middle of its request is one INFO line.

Each worker thread keeps its own database connection (SQLite connections are not shared
between threads); the config is read once, at start.

The package: app.py (what every request needs: headers, CSP, limits, on-demand builds, page
rendering), then one module per area (subscribe.py, unsubscribe.py, archive.py, report.py, desk.py),
put together with the routes in server.py.
"""

from .app import (
    SECURITY_HEADERS,
    ClientLimit,
    Core,
    OnDemand,
    client_address,
    client_network,
    content_security_policy,
)
from .server import Web, make_app, serve
from .subscribe import send_owed_confirmations

__all__ = [
    "SECURITY_HEADERS",
    "ClientLimit",
    "Core",
    "OnDemand",
    "Web",
    "client_address",
    "client_network",
    "content_security_policy",
    "make_app",
    "send_owed_confirmations",
    "serve",
]
