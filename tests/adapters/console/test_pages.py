"""The console's pages over a real ledger after one sandbox cycle: what each shows, that
each needs a signed-in user, and that none shows a secret."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from poller.console.app import CSP, ENV
from poller.console.data import DaySpend, Spend, chart, reason_kind
from poller.sandbox import services, tango, tremendous
from tests.adapters.console.conftest import World, login

PAGES = ["/console/", "/console/redemptions", "/console/redemptions/influitive/4815",
         "/console/spend", "/console/audit"]
SECRETS = [services.INFLUITIVE_TOKEN, services.TREMENDOUS_KEY, services.TANGO_KEY,
           services.GIFTBIT_KEY, services.HTTP_SECRET, tango.LINK_BASE, tremendous.LINK_BASE]


def test_every_page_needs_a_signed_in_user(world: World) -> None:
    client = world.client()
    for path in PAGES:
        response = client.get(path, follow_redirects=False)
        assert response.status_code == 303, path
        assert response.headers["location"].startswith("/console/login?next=")


def test_every_answer_carries_the_strict_content_security_policy(world: World) -> None:
    client = world.client()
    answers = [client.get("/console/login"), client.get("/console/static/console.css"),
               client.post("/console/login", data={})]
    login(client, "olivia")
    answers += [client.get(path) for path in PAGES]
    answers.append(client.get("/console/redemptions/influitive/nope"))
    for response in answers:
        assert response.headers["content-security-policy"] == CSP, response.url
        assert "default-src 'none'" in CSP and "frame-ancestors 'none'" in CSP
        assert response.headers["x-content-type-options"] == "nosniff"
    assert answers[-1].status_code == 404


def test_pages_load_no_script_and_no_outside_asset(world: World) -> None:
    client = world.client()
    login(client, "olivia")
    for path in PAGES:
        html = client.get(path).text
        assert "<script" not in html and " style=" not in html, path
        for url in re.findall(r'(?:href|src)="([^"]+)"', html):
            assert url.startswith("/console"), (path, url)


def test_overview_counts_held_and_waiting_and_shows_the_last_poll(world: World) -> None:
    client = world.client()
    login(client, "olivia")
    html = client.get("/console/").text
    counts = world.runtime.ledger.counts()
    held = sum(n for s, n in counts.items() if s.value == "held")
    assert held == 2
    assert re.search(rf'<span class="num">{held}</span> held', html)
    assert re.search(r'<span class="num">1</span> waiting', html)  # 4820, no Tango funds
    assert "no reward rule" in html and "advocate&#39;s details" in html
    assert "Last successful poll of Influitive" in html
    assert "requests used in the last" in html


def test_the_list_shows_reason_and_suggested_action(world: World) -> None:
    client = world.client()
    login(client, "victor")
    html = client.get("/console/redemptions").text
    for rid in ("4815", "4818", "4820", "4822"):
        assert f">{rid}</a>" in html
    assert "Add a [[rewards]] rule for this reward, then retry" in html
    assert "Top up the vendor account, then retry." in html
    assert "Send the reward by hand, then mark it fulfilled." in html


def test_one_redemption_shows_its_whole_history_and_no_secret(world: World) -> None:
    client = world.client()
    login(client, "olivia")
    for rid in ("4812", "4815", "4820"):
        html = client.get(f"/console/redemptions/influitive/{rid}").text
        events = world.runtime.ledger.events(world.runtime.ledger.get("influitive", rid).pk)
        assert html.count("<li><time>") == len(events) > 0
        for secret in SECRETS:
            assert secret not in html
        assert '"contact_id"' not in html  # the raw payload is not shown


def test_reason_kinds() -> None:
    assert reason_kind("no [[rewards]] rule or reward metadata matches (x)") == "no reward rule"
    assert reason_kind("spending guard: daily spend limit for USD reached") == "spending guard"
    assert reason_kind("not enough funds in Tango Card account") == "vendor funds"
    assert reason_kind(None) == "other"


def test_spend_chart_has_a_bar_per_vendor_and_day_and_the_limit() -> None:
    day = datetime(2026, 12, 1, tzinfo=UTC)
    spend = Spend(currency="USD", limit=Decimal("100"), vendors=["giftbit", "tango"], days=[
        DaySpend(day=day, by_vendor={"giftbit": Decimal("10"), "tango": Decimal("20")}),
        DaySpend(day=day + timedelta(days=1), by_vendor={}),
        DaySpend(day=day + timedelta(days=2), by_vendor={"tango": Decimal("5")}),
    ])
    html = ENV.get_template("spend.html").render(
        charts=[(spend, chart(spend))], base="", user=None, csrf="", flash=None, page="spend")
    svg = re.search(r"<svg.*</svg>", html, re.S)
    assert svg is not None
    assert svg.group(0).count('<rect class="bar') == 3
    assert "2026-12-01 tango: 20.00 USD" in svg.group(0)
    assert 'class="limit"' in svg.group(0) and "limit 100.00" in svg.group(0)


def test_spend_page_charts_what_the_ledger_ordered_today(world: World) -> None:
    client = world.client()
    login(client, "olivia")
    html = client.get("/console/spend").text
    assert "<svg" in html and '<rect class="bar' in html
    today = datetime.now(UTC).date().isoformat()
    # 4812-4814 at Tremendous: 25 + 5 + 50
    assert re.search(rf"{today} tremendous: 80\.00 USD", html)


def test_audit_page_without_an_audit(world: World) -> None:
    client = world.client()
    login(client, "olivia")
    assert "No audit has run yet." in client.get("/console/audit").text


class Balances:
    def __init__(self, balance: str | None, fail: bool = False) -> None:
        self.balance, self.fail, self.asked = balance, fail, 0

    def check(self, products: object) -> object:
        from poller.ports import VendorCheck

        self.asked += 1
        if self.fail:
            raise RuntimeError("down")
        return VendorCheck(vendor="v", credentials_ok=True, balance=self.balance)


def test_funds_are_asked_at_most_once_per_interval_and_unknown_on_failure() -> None:
    from poller.console.data import FundsCache

    now = [0.0]
    vendors = {"tango": Balances("1,000.00 USD"), "giftbit": Balances(None, fail=True),
               "manual": object()}
    funds = FundsCache(lambda n: vendors[n], sorted(vendors), ttl=300, clock=lambda: now[0])  # type: ignore[arg-type,index]
    assert funds() == {"giftbit": None, "manual": None, "tango": "1,000.00 USD"}
    funds()
    assert vendors["tango"].asked == 1  # type: ignore[attr-defined]
    now[0] = 301
    funds()
    assert vendors["tango"].asked == 2  # type: ignore[attr-defined]


def test_links_in_details_and_messages_are_cut_to_their_host() -> None:
    from poller.console.data import scrub

    text = ("sent: https://standin.tango.invalid/redeem/Zx81kq?c=1 and "
            "http://example.com:8080/p, see https://host.example")
    assert scrub(text) == ("sent: https://standin.tango.invalid/… and "
                           "http://example.com:8080/…, see https://host.example")
    assert scrub(None) is None


def test_audit_page_shows_the_run_the_ledger_keeps(world: World) -> None:
    """The console reads the newest stored run: what ``reward-poller audit`` or the daemon's
    audit saved, its discrepancies and the vendors that cannot be audited."""
    from poller.core.audit import AuditResult, Discrepancy, Kind, VendorAudit
    from poller.ledger.audit import save_run

    now = datetime(2026, 12, 4, 6, 0, tzinfo=UTC)
    result = AuditResult(since=now - timedelta(days=7), until=now, vendors=(
        VendorAudit(vendor="tremendous", orders=2, matched=1, discrepancies=(
            Discrepancy(vendor="tremendous", kind=Kind.ORPHAN, redemption_id=None,
                        source=None, order_id="ORD-9", detail="no fulfilled redemption"),
            Discrepancy(vendor="tremendous", kind=Kind.MISMATCH, redemption_id="4812",
                        source="influitive", order_id="ORD-77",
                        detail="amount 25.00 USD at the vendor, 20.00 USD in the ledger"))),
        VendorAudit(vendor="manual", not_auditable="nothing to read"),
    ))
    save_run(world.runtime.ledger.engine, result, started_at=now, finished_at=now, actor="test")
    client = world.client()
    login(client, "olivia")
    html = client.get("/console/audit").text
    assert "No audit has run yet." not in html
    assert "2 orders checked" in html and "Discrepancies (2)" in html
    assert "orphan" in html and "ORD-9" in html and "mismatch" in html and "ORD-77" in html
    assert "25.00 USD at the vendor" in html
    assert "Not audited (the vendor cannot list its orders): manual" in html
