"""``reward-poller check``: can this configuration work, before it tries?

Loading the config validates it (exit 2 on an error, naming the key or variable). Then:

* **The ledger**: connects, reads the schema's revision against the one this version needs
  (a PostgreSQL ledger behind: "run `reward-poller db upgrade`", as ``db current`` says)
  and proves it can write, in a transaction rolled back. A SQLite ledger's folder must be
  writable by the user running the check (SQLite writes its journal next to the file); a
  file that does not exist yet is fine when its folder is. It creates and migrates nothing.
* **Influitive**: one poll of the outstanding list (a single list request when the list has
  one page, each request counted in the request budget like the worker's) proves the token
  and org id; it says how many redemptions are outstanding and how many of them the
  ``[[rewards]]`` rules or reward metadata route to a vendor. Rejected credentials, a
  firewall block or an unreachable hub are failures naming Influitive.
* **Each vendor used by a ``[[rewards]]`` rule**: the vendor's own ``check``
  (``CheckableVendor``) says whether the credentials work, whether each (product, amount,
  currency) exists in its catalog and allows that amount and currency, and the balance
  where the vendor shows one. A vendor that cannot be reached is a failure, never
  "credentials ok".

The table goes to stdout; the exit code is 0 when everything is fine, 1 on any problem (the
last line on stderr names the ledger, Influitive and/or the vendors that failed).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any, cast

import click

from poller.cli.context import Context, Failed, check_budget, handled
from poller.cli.output import emit_json, table

if TYPE_CHECKING:
    from poller.config import Config
    from poller.core.budget import RequestBudget
    from poller.ledger.access import LedgerCheck
    from poller.ports import Cache, Vendor, VendorCheck

Products = list[tuple[str | None, Decimal, str]]
SOURCE = "influitive"
LEDGER = "ledger"


def products_by_vendor(config: Config) -> dict[str, Products]:
    """Vendor -> the distinct (product, amount, currency) its ``[[rewards]]`` rules order,
    in config order."""
    found: dict[str, Products] = {}
    for reward in config.rewards:
        items = found.setdefault(reward.vendor, [])
        item = (reward.product, reward.amount, reward.currency)
        if item not in items:
            items.append(item)
    return found


def run_checks(config: Config, vendors: Callable[[str], Vendor]) -> list[VendorCheck]:
    """One ``VendorCheck`` per vendor used by ``[[rewards]]``. ``vendors`` builds a vendor
    by name (``poller.compose.VendorPool``); a ConfigError from it propagates. A vendor without
    ``check`` passes with a note; one whose check raises fails with the reason (and its
    credentials count as not confirmed unless the vendor answered with another status)."""
    from poller.domain.errors import VendorError
    from poller.ports import ProductCheck, VendorCheck

    results: list[VendorCheck] = []
    for name, products in products_by_vendor(config).items():
        vendor = vendors(name)
        checker = getattr(vendor, "check", None)
        if checker is None:
            results.append(VendorCheck(vendor=name, credentials_ok=True, products=tuple(
                ProductCheck(product=p, amount=a, currency=c, ok=True,
                             detail="not checked: this vendor has no check")
                for p, a, c in products)))
            continue
        try:
            result = checker(products)
        except VendorError as exc:
            # No status: the vendor was not reached, so nothing confirms the credentials.
            answered = exc.status is not None and exc.status not in (401, 403)
            result = VendorCheck(vendor=name, credentials_ok=answered, problems=(str(exc),))
        except Exception as exc:  # a broken check must not hide the other vendors' results
            result = VendorCheck(vendor=name, credentials_ok=False,
                                 problems=(f"the check itself failed: {type(exc).__name__}",))
        results.append(cast("VendorCheck", result))
    return results


@dataclass(frozen=True, kw_only=True)
class SourceCheck:
    """``check`` for Influitive: the outcome of one poll."""

    ok: bool
    detail: str
    outstanding: int | None = None
    routed: int | None = None
    requests: int | None = None


def check_source(config: Config, budget: RequestBudget | None = None) -> SourceCheck:
    """Read Influitive's outstanding list (one request per page, each counted in the request
    budget); count what is outstanding and what would be routed."""
    from poller.compose import influitive_client
    from poller.core.decide import Order, plan_intake
    from poller.domain.errors import SourceAuthError, SourceBlocked, SourceUnavailable

    client = influitive_client(config, budget=budget)
    try:
        poll = client.poll()
    except SourceAuthError as exc:
        return SourceCheck(ok=False, detail=f"credentials or org id rejected ({exc}): check "
                                            "[influitive] api_token and org_id")
    except SourceBlocked as exc:
        return SourceCheck(ok=False, detail=f"blocked by Influitive's firewall ({exc}): retry "
                                            "later or ask Influitive to allow this address")
    except SourceUnavailable as exc:
        return SourceCheck(ok=False, detail=f"unreachable ({exc}): check [influitive] "
                                            "base_url and the network")
    finally:
        client.close()
    rules = config.rules()
    vendors = frozenset(config.vendors)
    reason = config.fulfillment.templates().unmapped_reason
    routed = sum(
        isinstance(plan_intake(r, rules, unmapped=config.fulfillment.unmapped_reward,
                               unmapped_reason=reason, vendors=vendors), Order)
        for r in poll.redemptions
    )
    n = len(poll.redemptions)
    requests = f"{poll.requests} list request{'s' if poll.requests != 1 else ''}"
    detail = (f"token and org id accepted; {n} outstanding, {routed} of them routed by "
              f"[[rewards]] rules or reward metadata ({requests})")
    if not poll.complete:
        capped = poll.pages >= config.influitive.max_pages
        if capped:
            return SourceCheck(
                ok=False, outstanding=n, routed=routed, requests=poll.requests,
                detail=f"{detail}; the list has more than [influitive] max_pages = "
                       f"{config.influitive.max_pages} pages: raise max_pages")
        detail += "; the list could not be read to its end"
    return SourceCheck(ok=poll.complete, detail=detail, outstanding=n, routed=routed,
                       requests=poll.requests)


def _rows(results: Sequence[VendorCheck]) -> list[list[str]]:
    rows: list[list[str]] = []
    for result in results:
        if result.credentials_ok:
            credentials, detail = "ok", f"balance {result.balance}" if result.balance else ""
        else:
            credentials, detail = "FAIL", "not confirmed (see the problem below)" if (
                result.problems) else "rejected"
        rows.append([result.vendor, "credentials", "", credentials, detail])
        rows.extend([result.vendor, "problem", "", "FAIL", p] for p in result.problems)
        rows.extend(
            [result.vendor, p.product or "(none)", f"{p.amount} {p.currency}",
             "ok" if p.ok else "FAIL", p.detail]
            for p in result.products
        )
    return rows


def _as_json(results: Sequence[VendorCheck], scrub: Callable[[str], str],
             ) -> list[dict[str, Any]]:
    return [{
        "vendor": r.vendor, "ok": r.ok, "credentials_ok": r.credentials_ok,
        "balance": r.balance, "problems": [scrub(p) for p in r.problems],
        "products": [{"product": p.product, "amount": str(p.amount), "currency": p.currency,
                      "ok": p.ok, "detail": scrub(p.detail)} for p in r.products],
    } for r in results]


def count_problems(results: Sequence[VendorCheck]) -> int:
    """FAIL lines: each problem and product, and rejected credentials not already told."""
    return sum(
        len(r.problems) + sum(not p.ok for p in r.products)
        + (not r.credentials_ok and not r.problems)
        for r in results
    )


def _ledger_cache(config: Config) -> tuple[LedgerCheck, Cache | None, Callable[[], None]]:
    """The ledger's check, and the ledger as the vendors' cache (so a catalog fetched here
    serves the worker too) when it is ready as it is: (check, cache, close)."""
    from poller.compose import ledger_timeouts
    from poller.ledger.access import check_ledger

    found, ledger = check_ledger(config.ledger.url, schema=config.ledger.schema,
                                 timeouts=ledger_timeouts(config))
    if ledger is None:
        return found, None, lambda: None
    return found, cast("Cache", ledger), ledger.close


@click.command("check")
@click.option("--json", "as_json", is_flag=True, help="JSON on stdout.")
@click.pass_obj
@handled
def check_command(obj: Context, as_json: bool) -> None:
    """Check the config, Influitive (credentials, org id, what is outstanding) and, for each
    vendor in [[rewards]], credentials, products and balance.

    The ledger is checked first: reachable, migrated to this version's revision, writable
    (a write tried and rolled back)."""
    from poller.compose import VendorPool
    from poller.logs import redactor, stderr_line

    config = obj.config()
    ledger, cache, close_cache = _ledger_cache(config)
    try:
        source = check_source(config, check_budget(config, cache))
        pool = VendorPool(config, cache=cache)
        try:
            results = run_checks(config, pool)
        finally:
            pool.close()
    finally:
        close_cache()
    if as_json:
        emit_json({
            "ledger": {"ok": ledger.ok, "detail": redactor.scrub(ledger.detail)},
            "influitive": {"ok": source.ok, "detail": redactor.scrub(source.detail),
                           "outstanding": source.outstanding, "routed": source.routed,
                           "requests": source.requests},
            "vendors": _as_json(results, redactor.scrub),
        })
    else:
        rows = [[LEDGER, "database", "", "ok" if ledger.ok else "FAIL", ledger.detail],
                [SOURCE, "credentials", "", "ok" if source.ok else "FAIL", source.detail],
                *_rows(results)]
        rows = [[redactor.scrub(c) for c in row] for row in rows]
        click.echo(table(["vendor", "item", "amount", "result", "detail"], rows,
                         emphasise={"FAIL": "red"}))
        if not results:
            click.echo("\nno [[rewards]] rules: no vendor to check")
    unchecked = sorted(set(config.vendors) - {r.vendor for r in results})
    if unchecked and not as_json:
        click.echo(f"\nnot checked (no [[rewards]] rule uses them): {', '.join(unchecked)}")
    if cache is None:
        note = "the ledger is not used as the vendors' catalog cache"
        stderr_line("cli.note", note, level="info", human=f"note: {note}")
    failures = count_problems(results) + (not source.ok) + (not ledger.ok)
    if failures:
        failed = (([LEDGER] if not ledger.ok else []) + ([SOURCE] if not source.ok else [])
                  + [r.vendor for r in results if not r.ok])
        raise Failed(f"check found {failures} problem{'s' if failures != 1 else ''}: "
                     f"{', '.join(failed)}")
    if not as_json:
        click.echo("\nall checks passed")
