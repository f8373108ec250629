"""What a cycle counts as operator-facing (``CycleReport.problems``), against the fakes:
what ``run --run-once`` exits 1 for, and what the daemon alerts on and ``/healthz`` shows."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import httpx
import pytest

from poller.core.backoff import RetrySchedule
from poller.core.decide import RewardRule
from poller.daemon.alerts import cycle_problems, problem_line
from poller.domain.errors import (
    ConfigFixable,
    OperatorFacingError,
    SourceAuthError,
    SourceBlocked,
    TransientVendorError,
    VendorUnreachable,
)
from poller.domain.states import State
from poller.ledger.memory import MemoryLedger
from poller.sources.influitive.fake import FakeInfluitive
from poller.transport import RetryPolicy
from poller.vendors.base import call
from poller.vendors.fake import FakeVendor
from poller.worker.cycle import CycleReport, Worker, WorkerPolicy

RULES = [RewardRule(reward_id="37", vendor="fake", product="CARD25", amount=Decimal("25"),
                    currency="USD")]


def rig(*ids: int) -> tuple[Worker, FakeInfluitive, FakeVendor, MemoryLedger]:
    source, vendor, ledger = FakeInfluitive(), FakeVendor("fake"), MemoryLedger()
    source.seed(*({"id": i, "reward_id": 37, "reward_name": "$25 gift card",
                   "contact": {"id": i, "email": f"a{i}@example.com"}} for i in ids))
    worker = Worker(
        source=source, ledger=ledger, vendors=lambda name: vendor, vendor_names={"fake"},
        rules=RULES, owner="w1", clock=lambda: datetime(2026, 5, 2, 12, tzinfo=UTC),
        policy=WorkerPolicy(namespace="org", schedule=RetrySchedule(max_attempts=5)),
    )
    return worker, source, vendor, ledger


def test_vendor_errors_are_counted_by_cause_and_nothing_is_refused() -> None:
    worker, _, vendor, ledger = rig(1, 2, 3)
    vendor.fail(OperatorFacingError("key rejected", vendor="fake", status=401), times=2)
    vendor.fail(OperatorFacingError("insufficient funds in balance", vendor="fake",
                                    status=400), times=1)
    report = worker.run_cycle()
    assert report.ok  # the poll worked: the daemon's cycle did its job
    assert {c: p.redemptions for c, p in report.problems.items()} == {
        "fake.credentials": 2, "fake.funds": 1}
    assert {e.state for e in ledger.list()} == {State.WAITING}
    assert report.reasons == {
        "waiting: key rejected": 2, "waiting: insufficient funds in balance": 1,
    }


def test_a_configuration_the_vendor_refuses_and_a_transient_error() -> None:
    worker, _, vendor, _ = rig(1, 2)
    vendor.fail(ConfigFixable("unknown product CARD25", vendor="fake", status=422), times=1)
    vendor.fail(TransientVendorError("503", vendor="fake", status=503), times=1)
    report = worker.run_cycle()
    assert list(report.problems) == ["fake.configuration"]  # a 503 is nobody's to fix


def test_a_vendor_that_cannot_be_reached_is_named_and_the_redemption_waits() -> None:
    worker, _, vendor, ledger = rig(1, 2)
    vendor.fail(VendorUnreachable("fake POST /orders: could not reach the server "
                                  "(ConnectError (POST fake.invalid/orders))", vendor="fake"),
                times=None)
    report = worker.run_cycle()
    assert report.ok
    assert {c: p.redemptions for c, p in report.problems.items()} == {"fake.unreachable": 2}
    assert {e.state for e in ledger.list()} == {State.WAITING}  # retried later, not held
    line = problem_line(report.problems["fake.unreachable"])
    assert line.startswith("vendor fake could not be reached (")
    assert "check the address in [vendors.fake]" in line


def test_the_vendor_transport_tells_unreachable_from_other_failures() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno 111] Connection refused", request=request)

    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    policy = RetryPolicy(attempts=2, initial_wait=0.001, max_wait=0.001)
    for handler, kind in ((refuse, VendorUnreachable), (slow, TransientVendorError)):
        with httpx.Client(transport=httpx.MockTransport(handler),
                          base_url="http://vendor.test") as client, \
                pytest.raises(TransientVendorError) as caught:
            call(client, "GET", "/orders/k", policy=policy, sleep=lambda s: None,
                 vendor="fake", label="fake", where="GET /orders", creates=False)
        assert type(caught.value) is kind


def test_a_firewall_block_and_the_page_cap() -> None:
    worker, source, _, _ = rig(1)
    source.fail_next("poll", SourceBlocked("Influitive's firewall answered 403 (WAF)"))
    report = worker.run_cycle()
    assert not report.ok and list(report.problems) == ["influitive.firewall"]
    assert report.problems["influitive.firewall"].redemptions == 0  # the poll met it
    assert "Influitive's firewall blocked our requests" in problem_line(
        report.problems["influitive.firewall"])

    capped = CycleReport(poll_ok=True, poll_complete=False, pages=3)
    (problem,) = cycle_problems(capped, max_pages=3)
    assert problem.cause == "influitive.page_cap"
    assert "Fix: raise [influitive] max_pages" in problem_line(problem, max_pages=3)
    assert cycle_problems(CycleReport(poll_ok=True, poll_complete=False, pages=2), 3) == []

    (auth,) = cycle_problems(None, 3, SourceAuthError("401"))
    assert auth.cause == "influitive.credentials"
