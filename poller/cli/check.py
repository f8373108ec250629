"""``reward-poller check``: can this configuration work, before it tries? The ledger,
Influitive and each vendor a ``[[rewards]]`` rule uses, as docs/cli.md ("check") says."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, cast

import click

from poller.cli.context import Context, Failed
from poller.cli.output import JSON_OPTION, emit_json, table

if TYPE_CHECKING:
    from poller.config import Config
    from poller.core.budget import RequestBudget
    from poller.ports import Vendor, VendorCheck

Products = list[tuple[str | None, Decimal, str]]


def products_by_vendor(config: Config) -> dict[str, Products]:
    """Vendor -> the distinct (product, amount, currency) its ``[[rewards]]`` rules order,
    in config order."""
    found: dict[str, Products] = {}
    for reward in config.rewards:
        items = found.setdefault(reward.vendor, [])
        if (reward.product, reward.amount, reward.currency) not in items:
            items.append((reward.product, reward.amount, reward.currency))
    return found


def run_checks(config: Config, vendors: Callable[[str], Vendor]) -> list[VendorCheck]:
    """One ``VendorCheck`` per vendor used by ``[[rewards]]``, each built by ``vendors``. A
    vendor without ``check`` passes with a note; one whose check raises fails with the
    reason (its credentials not confirmed unless the vendor answered with another status)."""
    from poller.domain.errors import VendorError
    from poller.ports import ProductCheck, VendorCheck

    results: list[VendorCheck] = []
    for name, products in products_by_vendor(config).items():
        checker = getattr(vendors(name), "check", None)
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
    ok: bool
    detail: str
    outstanding: int | None = None
    routed: int | None = None
    requests: int | None = None


def check_source(config: Config, budget: RequestBudget) -> SourceCheck:
    """One poll of Influitive's outstanding list: what is outstanding, what would be routed."""
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
    rules, vendors = config.rules(), frozenset(config.vendors)
    reason = config.fulfillment.templates().unmapped_reason
    routed = sum(
        isinstance(plan_intake(r, rules, unmapped=config.fulfillment.unmapped_reward,
                               unmapped_reason=reason, vendors=vendors), Order)
        for r in poll.redemptions
    )
    found = {"outstanding": len(poll.redemptions), "routed": routed, "requests": poll.requests}
    detail = (f"token and org id accepted; {len(poll.redemptions)} outstanding, {routed} of "
              "them routed by [[rewards]] rules or reward metadata ("
              f"{poll.requests} list request{'s' if poll.requests != 1 else ''})")
    if not poll.complete and poll.pages >= config.influitive.max_pages:
        return SourceCheck(ok=False, **found, detail=f"{detail}; the list has more than "
                           f"[influitive] max_pages = {config.influitive.max_pages} pages: "
                           "raise max_pages")
    if not poll.complete:
        detail += "; the list could not be read to its end"
    return SourceCheck(ok=poll.complete, detail=detail, **found)


def _rows(results: Sequence[VendorCheck]) -> list[list[str]]:
    rows: list[list[str]] = []
    for r in results:
        if r.credentials_ok:
            credentials, detail = "ok", f"balance {r.balance}" if r.balance else ""
        else:
            credentials = "FAIL"
            detail = "not confirmed (see the problem below)" if r.problems else "rejected"
        rows.append([r.vendor, "credentials", "", credentials, detail])
        rows.extend([r.vendor, "problem", "", "FAIL", p] for p in r.problems)
        rows.extend([r.vendor, p.product or "(none)", f"{p.amount} {p.currency}",
                     "ok" if p.ok else "FAIL", p.detail] for p in r.products)
    return rows


def count_problems(results: Sequence[VendorCheck]) -> int:
    """FAIL lines: each problem and product, and rejected credentials not already told."""
    return sum(len(r.problems) + sum(not p.ok for p in r.products)
               + (not r.credentials_ok and not r.problems) for r in results)


@click.command("check")
@JSON_OPTION
@click.pass_obj
def check_command(obj: Context, as_json: bool) -> None:
    """Check the config, Influitive (credentials, org id, what is outstanding) and, for each
    vendor in [[rewards]], credentials, products and balance.

    The ledger is checked first: reachable, migrated to this version's revision, writable
    (a write tried and rolled back)."""
    from poller.compose import VendorPool, ledger_timeouts, request_budget
    from poller.ledger.access import check_ledger
    from poller.logs import redactor, stderr_line

    config = obj.config()
    # The ledger, when it is ready as it is, is the vendors' cache: a catalog fetched here
    # serves the worker too.
    ledger, cache = check_ledger(config.ledger.url, schema=config.ledger.schema,
                                 timeouts=ledger_timeouts(config))
    try:
        source = check_source(config, request_budget(config, cache))
        pool = VendorPool(config, cache=cache)
        try:
            results = run_checks(config, pool)
        finally:
            pool.close()
    finally:
        if cache is not None:
            cache.close()
    scrub = redactor.scrub
    if as_json:
        emit_json({
            "ledger": {"ok": ledger.ok, "detail": scrub(ledger.detail)},
            "influitive": {"ok": source.ok, "detail": scrub(source.detail),
                           "outstanding": source.outstanding, "routed": source.routed,
                           "requests": source.requests},
            "vendors": [{
                "vendor": r.vendor, "ok": r.ok, "credentials_ok": r.credentials_ok,
                "balance": r.balance, "problems": [scrub(p) for p in r.problems],
                "products": [{"product": p.product, "amount": str(p.amount),
                              "currency": p.currency, "ok": p.ok, "detail": scrub(p.detail)}
                             for p in r.products],
            } for r in results],
        })
    else:
        rows = [["ledger", "database", "", "ok" if ledger.ok else "FAIL", ledger.detail],
                ["influitive", "credentials", "", "ok" if source.ok else "FAIL", source.detail],
                *_rows(results)]
        click.echo(table(["vendor", "item", "amount", "result", "detail"],
                         [[scrub(c) for c in row] for row in rows], emphasise={"FAIL": "red"}))
        if not results:
            click.echo("\nno [[rewards]] rules: no vendor to check")
        unchecked = sorted(set(config.vendors) - {r.vendor for r in results})
        if unchecked:
            click.echo(f"\nnot checked (no [[rewards]] rule uses them): {', '.join(unchecked)}")
    if cache is None:
        note = "the ledger is not used as the vendors' catalog cache"
        stderr_line("cli.note", note, level="info", human=f"note: {note}")
    failed = [name for name, ok in (("ledger", ledger.ok), ("influitive", source.ok),
                                    *((r.vendor, r.ok) for r in results)) if not ok]
    failures = count_problems(results) + (not source.ok) + (not ledger.ok)
    if failures:
        raise Failed(f"check found {failures} problem{'s' if failures != 1 else ''}: "
                     f"{', '.join(failed)}")
    if not as_json:
        click.echo("\nall checks passed")
