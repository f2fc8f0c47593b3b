"""The one idempotent-retry rule invoices and quotes share, without a database."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from chalicelib.domain.errors import Conflict, DuplicateIdempotencyKey
from chalicelib.usecases.idempotency import KeyedRequest


@dataclass(frozen=True)
class Record:
    name: str
    request_sha256: bytes


ASKED = b"a" * 32
SAME = Record("made first", ASKED)
OTHER = Record("made for another request", b"b" * 32)


def test_no_earlier_request_means_nothing_to_answer() -> None:
    assert KeyedRequest(ASKED, lambda: None, "quote").earlier() is None


def test_the_same_request_gets_the_record_made_first() -> None:
    assert KeyedRequest(ASKED, lambda: SAME, "quote").earlier() is SAME


def test_the_key_with_another_request_is_a_conflict_naming_what_it_makes() -> None:
    with pytest.raises(Conflict) as refused:
        KeyedRequest(ASKED, lambda: OTHER, "invoice").earlier()
    [violation] = refused.value.violations
    assert violation.field == "Idempotency-Key"
    assert violation.rule == ("already used for another request: use a new key for a new "
                              "invoice")


def test_made_once_makes_when_nobody_raced() -> None:
    request: KeyedRequest[Record] = KeyedRequest(ASKED, lambda: pytest.fail("no lookup"),
                                                 "quote")
    assert request.made_once(lambda: "made", lambda found: f"retried {found.name}") == "made"


def duplicate() -> str:
    raise DuplicateIdempotencyKey()


def test_a_race_lost_answers_with_the_winners_record() -> None:
    request = KeyedRequest(ASKED, lambda: SAME, "quote")
    assert request.made_once(duplicate, lambda found: f"retried {found.name}") == \
        "retried made first"


def test_a_race_lost_to_another_request_is_a_conflict() -> None:
    with pytest.raises(Conflict):
        KeyedRequest(ASKED, lambda: OTHER, "quote").made_once(duplicate, lambda f: f.name)


def test_a_duplicate_with_no_record_to_find_is_not_hidden() -> None:
    with pytest.raises(DuplicateIdempotencyKey):
        KeyedRequest(ASKED, lambda: None, "quote").made_once(duplicate, lambda f: f.name)
