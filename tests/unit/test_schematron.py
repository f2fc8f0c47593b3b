"""The schematron checker: a valid EN 16931 invoice passes, each broken rule is
named by its id, and the saxonche worker behind it survives threads, crashes,
hangs, forks and the death of its parent without leaving a process behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from lxml import etree

from chalicelib.documents import schematron
from chalicelib.documents.schematron import (
    EN16931,
    EVALUATION_ERROR,
    FR_CTC,
    NotXml,
    RuleFailure,
    SchematronChecker,
    SchematronUnavailable,
    en16931_failures,
    invoice_failures,
)

SAMPLE = (Path(__file__).parent / "samples" / "valid_en16931.xml").read_bytes()
REPO = Path(__file__).resolve().parents[2]
NS = {
    "rsm": "urn:un:unece:uncefact:data:standard:CrossIndustryInvoice:100",
    "ram": "urn:un:unece:uncefact:data:standard:ReusableAggregateBusinessInformationEntity:100",
}
SETTLEMENT = "//ram:ApplicableHeaderTradeSettlement"
TOTALS = SETTLEMENT + "/ram:SpecifiedTradeSettlementHeaderMonetarySummation"

Mutation = Callable[[etree._Element], None]


def mutated(*mutations: Mutation) -> bytes:
    root = etree.fromstring(SAMPLE)
    for mutate in mutations:
        mutate(root)
    return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8"))


def set_text(path: str, value: str) -> Mutation:
    def mutate(root: etree._Element) -> None:
        (element,) = root.xpath(path, namespaces=NS)
        element.text = value

    return mutate


def remove(path: str) -> Mutation:
    def mutate(root: etree._Element) -> None:
        elements = root.xpath(path, namespaces=NS)
        assert elements, path
        for element in elements:
            element.getparent().remove(element)

    return mutate


def fatal_rules(failures: list[RuleFailure]) -> set[str]:
    return {f.rule for f in failures if f.fatal}


def alive(pid: int) -> bool:
    """A zombie counts as gone: it no longer runs, only waits to be reaped."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def wait_gone(pid: int, seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def pid_of(checker: SchematronChecker) -> int:
    pid = checker.worker_pid
    assert pid is not None
    return pid


@pytest.fixture(scope="module")
def checker() -> Iterator[SchematronChecker]:
    with SchematronChecker(EN16931) as one:
        yield one


@pytest.fixture(scope="module")
def fr_checker() -> Iterator[SchematronChecker]:
    with SchematronChecker(FR_CTC) as one:
        yield one


def test_the_valid_sample_fails_no_rule(checker: SchematronChecker) -> None:
    assert checker.check(SAMPLE) == []
    assert en16931_failures(SAMPLE) == []


BROKEN: dict[str, tuple[list[Mutation], str]] = {
    "BT-112 is not BT-109 + BT-110": (
        [set_text(TOTALS + "/ram:GrandTotalAmount", "1359.25")], "BR-CO-15"),
    "BT-106 is not the sum of the line net amounts": (
        [set_text(TOTALS + "/ram:LineTotalAmount", "1100.00")], "BR-CO-10"),
    "VAT category S without the seller VAT id": (
        [remove("//ram:SellerTradeParty/ram:SpecifiedTaxRegistration")], "BR-S-02"),
    "a breakdown tax amount is not basis × rate": (
        [set_text(f"({SETTLEMENT}/ram:ApplicableTradeTax/ram:CalculatedAmount)[1]", "201.00"),
         set_text(TOTALS + "/ram:TaxTotalAmount", "209.25"),
         set_text(TOTALS + "/ram:GrandTotalAmount", "1359.25"),
         set_text(TOTALS + "/ram:DuePayableAmount", "1359.25")], "BR-S-09"),
    "BT-110 is not the sum of the breakdown tax amounts": (
        [set_text(TOTALS + "/ram:TaxTotalAmount", "209.25"),
         set_text(TOTALS + "/ram:GrandTotalAmount", "1359.25"),
         set_text(TOTALS + "/ram:DuePayableAmount", "1359.25")], "BR-CO-14"),
    "no invoice number": ([remove("/rsm:CrossIndustryInvoice/rsm:ExchangedDocument/ram:ID")],
                          "BR-02"),
    "no invoice currency": ([remove(SETTLEMENT + "/ram:InvoiceCurrencyCode")], "BR-05"),
    "no buyer name": ([remove("//ram:BuyerTradeParty/ram:Name")], "BR-07"),
    "no seller country": (
        [remove("//ram:SellerTradeParty/ram:PostalTradeAddress/ram:CountryID")], "BR-09"),
    "no invoice line": ([remove("//ram:IncludedSupplyChainTradeLineItem")], "BR-16"),
    "BT-115 is not BT-112 - BT-113 + BT-114": (
        [set_text(TOTALS + "/ram:DuePayableAmount", "1000.00")], "BR-CO-16"),
}


@pytest.mark.parametrize(("mutations", "rule"), BROKEN.values(), ids=BROKEN.keys())
def test_each_broken_rule_is_named(
    checker: SchematronChecker, mutations: list[Mutation], rule: str
) -> None:
    failures = checker.check(mutated(*mutations))
    assert rule in fatal_rules(failures)
    (failure,) = [f for f in failures if f.rule == rule][:1]
    assert failure.text.startswith(f"[{rule}]-") and failure.location.startswith("/")
    assert "  " not in failure.text and "\n" not in failure.text


def test_a_warning_is_not_fatal(checker: SchematronChecker) -> None:
    failures = checker.check(mutated(set_text("//ram:BuyerReference", "")))
    assert [(f.rule, f.flag, f.fatal) for f in failures] == [
        ("PEPPOL-EN16931-R008", "warning", False)
    ]


def test_an_amount_that_is_no_number_fails_the_check(checker: SchematronChecker) -> None:
    # The stylesheet stops on xs:decimal("abc"): that must not pass as valid.
    failures = checker.check(mutated(set_text(TOTALS + "/ram:GrandTotalAmount", "abc")))
    assert [(f.rule, f.flag) for f in failures] == [(EVALUATION_ERROR, "fatal")]
    assert '"abc"' in failures[0].text


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "not well-formed"),
        (b"<rsm:CrossIndustryInvoice", "not well-formed"),
        (SAMPLE[: len(SAMPLE) // 2], "not well-formed"),
        (b"<Invoice xmlns='urn:oasis:names:specification:ubl:schema:xsd:Invoice-2'/>",
         "root element"),
        (b'<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><x>&e;</x>', "DOCTYPE"),
    ],
)
def test_what_is_no_cii_xml_raises_not_xml_and_the_worker_stays(
    checker: SchematronChecker, data: bytes, reason: str
) -> None:
    checker.check(SAMPLE)
    before = checker.worker_pid
    with pytest.raises(NotXml, match=reason):
        checker.check(data)
    assert checker.check(SAMPLE) == []
    assert checker.worker_pid == before


def test_bytes_only(checker: SchematronChecker) -> None:
    with pytest.raises(TypeError):
        checker.check(SAMPLE.decode())  # type: ignore[arg-type]


def test_eight_threads_share_one_worker_and_get_their_own_answers() -> None:
    broken = mutated(set_text(TOTALS + "/ram:GrandTotalAmount", "1359.25"),
                     remove("//ram:BuyerTradeParty/ram:URIUniversalCommunication"))
    invoice_failures(SAMPLE)
    worker = schematron._shared_checker().worker_pid
    start = threading.Barrier(8)
    wrong: list[tuple[int, int, set[str]]] = []
    errors: list[BaseException] = []

    def run(thread: int) -> None:
        start.wait()
        for n in range(5):
            is_broken = (thread + n) % 2 == 1
            try:
                rules = fatal_rules(invoice_failures(broken if is_broken else SAMPLE))
            except BaseException as error:
                errors.append(error)
                continue
            if rules != ({"BR-CO-15", "BR-CO-16", "BR-FR-12_BT-49"} if is_broken else set()):
                wrong.append((thread, n, rules))

    threads = [threading.Thread(target=run, args=(k,)) for k in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors and not wrong
    assert schematron._shared_checker().worker_pid == worker


def test_a_killed_worker_is_restarted_and_the_check_answered() -> None:
    with SchematronChecker() as checker:
        assert checker.check(SAMPLE) == []
        first = pid_of(checker)
        os.kill(first, signal.SIGKILL)
        assert checker.check(SAMPLE) == []
        assert pid_of(checker) != first
        assert not alive(first)  # reaped, not left a zombie
        # Killed while a request waits for its answer: same outcome.
        second = pid_of(checker)
        os.kill(second, signal.SIGSTOP)
        answers: list[set[str]] = []
        broken = mutated(remove("//ram:BuyerTradeParty/ram:Name"))
        asking = threading.Thread(target=lambda: answers.append(fatal_rules(checker.check(broken))))
        asking.start()
        time.sleep(0.2)
        assert answers == []  # still waiting on the stopped worker
        os.kill(second, signal.SIGKILL)
        asking.join(30)
        assert answers == [{"BR-07", "FX-SCH-A-000030"}]
        assert pid_of(checker) != second and not alive(second)


def test_a_hung_worker_times_out_is_killed_and_replaced() -> None:
    with SchematronChecker() as checker:
        checker.start()
        stopped = pid_of(checker)
        os.kill(stopped, signal.SIGSTOP)
        try:
            began = time.monotonic()
            with pytest.raises(SchematronUnavailable, match=r"within 0\.5 s"):
                checker.check(SAMPLE, timeout=0.5)
            assert 0.5 <= time.monotonic() - began < 1.5
            assert checker.worker_pid is None
            assert wait_gone(stopped)
        finally:
            if alive(stopped):
                os.kill(stopped, signal.SIGCONT)
        assert checker.check(SAMPLE) == []
        assert pid_of(checker) != stopped


def test_close_leaves_no_process_and_refuses_further_checks() -> None:
    checker = SchematronChecker()
    checker.check(SAMPLE)
    pid = pid_of(checker)
    checker.close()
    assert not alive(pid)
    assert checker.worker_pid is None
    checker.close()  # twice is fine
    with pytest.raises(SchematronUnavailable, match="closed"):
        checker.check(SAMPLE)


def test_the_worker_exits_when_its_parent_dies() -> None:
    parent = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent("""
            import sys, time
            from chalicelib.documents.schematron import SchematronChecker
            checker = SchematronChecker()
            checker.start()
            print(checker.worker_pid, flush=True)
            time.sleep(60)
        """)],
        stdout=subprocess.PIPE, cwd=REPO, text=True,
    )
    try:
        assert parent.stdout is not None
        worker = int(parent.stdout.readline())
        assert alive(worker)
    finally:
        parent.kill()
        parent.wait()
    assert wait_gone(worker)


def test_a_forked_child_gets_its_own_worker(checker: SchematronChecker) -> None:
    checker.check(SAMPLE)
    parent_worker = pid_of(checker)
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child
        code = 1
        try:
            os.close(read)
            rules = fatal_rules(checker.check(mutated(remove("//ram:BuyerTradeParty/ram:Name"))))
            own = checker.worker_pid
            checker.close()
            os.write(write, f"{sorted(rules)} {own != parent_worker}".encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write)
    with os.fdopen(read) as answer:
        said = answer.read()
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert said == "['BR-07', 'FX-SCH-A-000030'] True"
    assert checker.worker_pid == parent_worker and checker.check(SAMPLE) == []


def test_the_french_ctc_rules_compile_and_pass_the_sample(fr_checker: SchematronChecker) -> None:
    assert fr_checker.check(SAMPLE) == []


FRENCH: dict[str, tuple[list[Mutation], set[str]]] = {
    # What an EN 16931 invoice misses when nobody thought of the French rules.
    "no business process (BT-23), no seller SIREN (BT-30)": (
        [remove("//ram:BusinessProcessSpecifiedDocumentContextParameter"),
         remove("//ram:SellerTradeParty/ram:SpecifiedLegalOrganization")],
        {"BR-FR-08_BT-23", "BR-FR-10_BT-30"}),
    "a VAT rate France does not have": (
        [set_text("(//ram:IncludedSupplyChainTradeLineItem//ram:RateApplicablePercent)[1]",
                  "19")],
        {"BR-FR-16_BT-152"}),
    "an amount with a decimal comma": (
        [set_text(TOTALS + "/ram:GrandTotalAmount", "1358,25")], {"BR-FR-DEC-01_BT-112"}),
}


@pytest.mark.parametrize(("mutations", "rules"), FRENCH.values(), ids=FRENCH.keys())
def test_french_ctc_rules_are_named(
    fr_checker: SchematronChecker, mutations: list[Mutation], rules: set[str]
) -> None:
    failures = fr_checker.check(mutated(*mutations))
    assert {f.rule for f in failures} == rules
    assert all(f.fatal and f.text.startswith("BR-FR-") for f in failures)


def test_one_worker_checks_both_rule_sets() -> None:
    broken = mutated(set_text(TOTALS + "/ram:GrandTotalAmount", "1359.25"),
                     remove("//ram:BusinessProcessSpecifiedDocumentContextParameter"))
    with SchematronChecker((EN16931, FR_CTC)) as both:
        assert both.check(SAMPLE) == []
        assert fatal_rules(both.check(broken)) == {"BR-CO-15", "BR-CO-16", "BR-FR-08_BT-23"}


def test_issuing_checks_both_rule_sets_in_one_shared_worker() -> None:
    """invoice_failures (what FacturXDocuments.problems runs) holds EN 16931
    and BR-FR in one worker; en16931_failures keeps EN 16931 alone."""
    no_buyer_address = mutated(remove("//ram:BuyerTradeParty/ram:URIUniversalCommunication"))

    assert invoice_failures(SAMPLE) == []
    assert fatal_rules(invoice_failures(no_buyer_address)) == {"BR-FR-12_BT-49"}
    assert fatal_rules(en16931_failures(no_buyer_address)) == set()
    shared = schematron._shared_checker()
    assert shared.stylesheets == (EN16931, FR_CTC) == schematron.INVOICE_RULES
    assert shared is schematron._shared_checker((EN16931, FR_CTC))
    assert schematron._shared_checker((EN16931,)).worker_pid not in (None, shared.worker_pid)
