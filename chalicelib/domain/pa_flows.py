"""What crosses the PA port: the Flow Service API's records (AFNOR XP Z12-013),
as our frozen values, checked when made.

Pure: no I/O. The adapter (chalicelib/adapters/pa.py) turns these into the
API's JSON and back; a use case never sees the wire. The value lists are the
issue's researched facts (issue 16, "The Flow Service API"); docs/pa.md says
which were checked against which source.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime
from typing import Literal, get_args

ProcessingRule = Literal["B2B", "B2BInt", "B2C", "OutOfScope", "ArchiveOnly", "NotApplicable"]
FlowSyntax = Literal["CII", "UBL", "Factur-X", "CDAR", "FRR"]
FlowProfile = Literal["Basic", "CIUS", "Extended-CTC-FR"]
AckStatus = Literal["Pending", "Ok", "Error"]
FlowDirection = Literal["In", "Out"]
DocType = Literal["Metadata", "Original", "Converted", "ReadableView"]

PROCESSING_RULES: tuple[str, ...] = get_args(ProcessingRule)
FLOW_SYNTAXES: tuple[str, ...] = get_args(FlowSyntax)
FLOW_PROFILES: tuple[str, ...] = get_args(FlowProfile)
ACK_STATUSES: tuple[str, ...] = get_args(AckStatus)
FLOW_DIRECTIONS: tuple[str, ...] = get_args(FlowDirection)
DOC_TYPES: tuple[str, ...] = get_args(DocType)

# Acknowledgement reason codes the standard names (not a closed list: a PA
# may answer others, kept as given but never as free text of our own).
ALREADY_EXISTING_FLOW = "AlreadyExistingFlow"
KNOWN_ACK_REASONS = frozenset({ALREADY_EXISTING_FLOW, "InvalidSchema", "VirusFound",
                               "ChecksumMismatch"})

MAX_TRACKING_ID = 36
MAX_SEARCH_LIMIT = 100
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
# A code from the other side: short, printable, no spaces (never a sentence).
_CODE = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
_SIREN = re.compile(r"[0-9]{9}")
_SIRET = re.compile(r"[0-9]{14}")


class InvalidPaRecord(ValueError):
    """A record that breaks the API's rules; the message names the field and
    the rule, never the value."""


def _one_of(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise InvalidPaRecord(f"{name}: must be one of {', '.join(allowed)}")


def is_code(value: str) -> bool:
    """A short token (a reason code, an identifier), never free text."""
    return bool(_CODE.fullmatch(value))


@dataclass(frozen=True)
class FlowInfo:
    """The `flowInfo` part of a deposit: `tracking_id` is ours (the invoice's
    id), which makes a repeated deposit recognisable (AlreadyExistingFlow)."""

    tracking_id: str
    name: str
    processing_rule: ProcessingRule
    flow_syntax: FlowSyntax
    flow_profile: FlowProfile
    sha256: str | None = None

    def __post_init__(self) -> None:
        if not 1 <= len(self.tracking_id) <= MAX_TRACKING_ID or not is_code(self.tracking_id):
            raise InvalidPaRecord(f"tracking_id: 1 to {MAX_TRACKING_ID} characters among "
                                  "letters, digits and _.:-")
        if not 1 <= len(self.name) <= 255 or any(ord(c) < 32 for c in self.name):
            raise InvalidPaRecord("name: 1 to 255 printable characters")
        _one_of("processing_rule", self.processing_rule, PROCESSING_RULES)
        _one_of("flow_syntax", self.flow_syntax, FLOW_SYNTAXES)
        _one_of("flow_profile", self.flow_profile, FLOW_PROFILES)
        if self.sha256 is not None and not _SHA256_HEX.fullmatch(self.sha256):
            raise InvalidPaRecord("sha256: 64 lower-case hex digits")


@dataclass(frozen=True)
class Acknowledgement:
    """The PA's answer to a deposit. `Pending` is not acceptance: the
    lifecycle (200.., a late 213) comes later, by polling."""

    flow_id: str
    tracking_id: str
    status: AckStatus
    reason_codes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _one_of("status", self.status, ACK_STATUSES)
        if not all(is_code(code) for code in self.reason_codes):
            raise InvalidPaRecord("reason_codes: short codes only")

    @property
    def already_existing(self) -> bool:
        """The PA holds this trackingId already: for an exactly-once sender, a success."""
        return ALREADY_EXISTING_FLOW in self.reason_codes


@dataclass(frozen=True)
class FlowSummary:
    """One flow as a search lists it."""

    flow_id: str
    tracking_id: str | None
    direction: FlowDirection
    flow_syntax: FlowSyntax
    ack_status: AckStatus
    updated_at: datetime
    reason_codes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not 1 <= len(self.flow_id) <= 255 or not self.flow_id.isprintable():
            raise InvalidPaRecord("flow_id: 1 to 255 printable characters")
        if self.tracking_id is not None and (not isinstance(self.tracking_id, str)
                                             or len(self.tracking_id) > 255):
            raise InvalidPaRecord("tracking_id: text of at most 255 characters")
        _one_of("direction", self.direction, FLOW_DIRECTIONS)
        _one_of("flow_syntax", self.flow_syntax, FLOW_SYNTAXES)
        _one_of("ack_status", self.ack_status, ACK_STATUSES)
        if self.updated_at.tzinfo is None:
            raise InvalidPaRecord("updated_at: must carry its time zone")


@dataclass(frozen=True)
class FlowPage:
    """A page of a search, oldest update first. `next_cursor` is the
    `updatedAfter` to ask with next (the last flow's update time; the one
    asked with when the page is empty); `more` says the page was full, so
    another is probably waiting. Flows updated in the same instant across a
    page boundary: the poller asks again from a little before the cursor and
    drops flows it has seen (by flow id and update time)."""

    flows: tuple[FlowSummary, ...]
    next_cursor: datetime | None
    more: bool = False


@dataclass(frozen=True)
class DirectoryLine:
    """An Annuaire line: where invoices for `addressing_id` must go."""

    addressing_id: str
    siren: str
    siret: str | None
    routing_code: str | None
    platform: str
    valid_from: date
    valid_to: date | None = None

    def __post_init__(self) -> None:
        if not is_code(self.addressing_id):
            raise InvalidPaRecord("addressing_id: a short identifier")
        if not _SIREN.fullmatch(self.siren):
            raise InvalidPaRecord("siren: 9 digits")
        if self.siret is not None and (not _SIRET.fullmatch(self.siret)
                                       or not self.siret.startswith(self.siren)):
            raise InvalidPaRecord("siret: 14 digits starting with the siren")
        if self.routing_code is not None and not is_code(self.routing_code):
            raise InvalidPaRecord("routing_code: a short code")
        if not is_code(self.platform):
            raise InvalidPaRecord("platform: a short identifier")
        if self.valid_to is not None and self.valid_to < self.valid_from:
            raise InvalidPaRecord("valid_to: not before valid_from")

    def valid_on(self, day: date) -> bool:
        return self.valid_from <= day and (self.valid_to is None or day <= self.valid_to)


@dataclass(frozen=True)
class SearchQuery:
    """A search: flows updated after the cursor (exclusive), at most `limit`."""

    updated_after: datetime | None = None
    direction: FlowDirection | None = None
    limit: int = MAX_SEARCH_LIMIT
    tracking_id: str | None = None
    flow_syntax: FlowSyntax | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.limit <= MAX_SEARCH_LIMIT:
            raise InvalidPaRecord(f"limit: 1 to {MAX_SEARCH_LIMIT}")
        if self.direction is not None:
            _one_of("direction", self.direction, FLOW_DIRECTIONS)
        if self.updated_after is not None and self.updated_after.tzinfo is None:
            raise InvalidPaRecord("updated_after: must carry its time zone")
