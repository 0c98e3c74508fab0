"""The fast path for plain addresses takes exactly what email-validator takes, unchanged.

`config.check_address` answers lower-case ASCII addresses with a pattern and leaves every other
one to email-validator, so that a command does not load email-validator to read its sender.
Nobody may notice the difference: an address the pattern takes must be one email-validator takes
and writes back as it is; everything else still gets email-validator's answer and its words.
These tests hold the pattern to email-validator over many addresses, ordinary and hostile: a
change of either that parts them fails here, not in a config that suddenly loads or a subscriber
list that suddenly holds an address the relay refuses.
"""

from __future__ import annotations

import random

import email_validator
import pytest

from pipeline.config import _plain, check_address
from pipeline.errors import UsageError

ORDINARY = [
    "kari@example.org",
    "kari.nordmann@example.org",
    "kari+nyhetsbrev@example.org",
    "k_n-1@mail.trondheim.kommune.no",
    "nyhetsbrev@trnews.test",
    "it@corp.local",
    "postmaster@example.org",
    "a@b.co",
    "a--b@a--b.org",
    "0@0.no",
    "x@1.2.3.example.com",
]
# Each near an edge of the syntax: where a pattern is most easily wrong.
EDGES = [
    "a" * 64 + "@example.org",
    "a" * 65 + "@example.org",
    "a." * 32 + "a@example.org",
    "b@" + "c" * 63 + ".org",
    "b@" + "c" * 64 + ".org",
    "b@" + ".".join(["c" * 63] * 3) + ".org",
    "b@" + ".".join(["c" * 63] * 4) + ".org",
    "b@" + ".".join(["c" * 61] * 4) + ".or",
    "a" * 64 + "@" + ".".join(["c" * 60] * 3) + ".org",
    "a@xn--bcher-kva.example",
    "a@ab--cd.org",
    "a@xn--.org",
    "a@example.o",
    "a@example.123",
    "a@example.o1",
    "a@-example.org",
    "a@example-.org",
    "a@example..org",
    "a@.example.org",
    "a@example.org.",
    ".a@example.org",
    "a.@example.org",
    "a..b@example.org",
    "a@localhost",
    "a@example",
    "Postmaster@example.org",
    "ABUSE@example.org",
    "Kari@Example.ORG",
    "kari@EXAMPLE.org",
    "kari@ex_ample.org",
    "kari@[127.0.0.1]",
    '"kari"@example.org',
    "kari@example.org\n",
    " kari@example.org ",
    "kari@example.org\nBcc: all@example.org",
    "kari@example.org>",
    "<kari@example.org>",
    "kari@@example.org",
    "kari@example@org",
    "",
    "@",
    "@example.org",
    "kari@",
    "kåri@example.org",
    "kari@eksempel.nå",
    "kari@ｅxample.org",
    "kari\u200b@example.org",
    "kari@example.org\u200b",
    "kari@example.\u0578rg",
    "ka ri@example.org",
    "kari@exa mple.org",
    "kari#1@example.org",
    "kari=1@example.org",
    "kari/1@example.org",
    "kari%example.org@example.org",
]
# Characters a hostile or mistyped address might carry, mixed into the addresses above.
SPICE = [
    *'.-_+@"<>()[],;:\\ \t\n\r\x00\x7fÅåéßı\u0130\u00ad\u200b\u2024\ufe52\uff0eAZaz09',
    "--",
    "..",
    "xn--",
]


def mutations(seed: int, count: int) -> list[str]:
    rng = random.Random(seed)
    base = ORDINARY + EDGES
    out = []
    for _ in range(count):
        text = rng.choice(base)
        for _ in range(rng.randint(1, 3)):
            at = rng.randint(0, len(text))
            op = rng.random()
            if op < 0.5:
                text = text[:at] + rng.choice(SPICE) + text[at:]
            elif op < 0.75:
                text = text[:at] + text[at + 1 :]
            else:
                text = text[:at] + text[at:].upper()
        out.append(text)
    return out


def validator_says(value: str) -> str | None:
    """email-validator's normalised form of `value` as check_address asks for it, or None."""
    email_validator.SPECIAL_USE_DOMAIN_NAMES.clear()  # as config._email_validator does
    try:
        return str(
            email_validator.validate_email(value.strip(), check_deliverability=False).normalized
        )
    except email_validator.EmailNotValidError:
        return None


ALL = ORDINARY + EDGES + mutations(17, 30000)


def test_every_address_the_fast_path_takes_email_validator_takes_unchanged() -> None:
    taken = [a for a in ALL if _plain(a.strip())]
    parted = [(a, validator_says(a)) for a in taken if validator_says(a) != a.strip()]
    assert parted == []
    # Not a vacuous pass: the pattern takes the commonest addresses and many mutations.
    assert set(ORDINARY) <= set(taken)
    assert len(taken) > 1000


@pytest.mark.parametrize("value", ALL[: len(ORDINARY) + len(EDGES) + 1500])
def test_check_address_answers_as_email_validator(value: str) -> None:
    expected = validator_says(value)
    if expected is None:
        with pytest.raises(UsageError, match="is not a valid e-mail address"):
            check_address(value)
    else:
        assert check_address(value) == expected


def test_a_refused_address_keeps_email_validators_reason() -> None:
    with pytest.raises(UsageError) as e:
        check_address("kari..nordmann@example.org")
    assert "period" in str(e.value)
