"""``reward-poller check``: is the configuration able to order anything, before it tries?

Loading the config validates it (exit 2 on an error, naming the key). Then, for each vendor
used by a ``[[rewards]]`` rule, the vendor's own ``check`` (``CheckableVendor``) says whether
the credentials work, whether each (product, amount, currency) of those rules exists in its
catalog and allows that amount and currency, and what the balance is where the vendor shows
one. The table goes to stdout; the exit code is 0 when everything is fine, 1 on any problem.

``run_checks`` is the same check for other callers (the daemon's start). Like ``ops.py``,
this module imports nothing heavy at import time (no vendor module, no ledger), and main.py
only registers the command.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from decimal import Decimal
from functools import wraps
from typing import TYPE_CHECKING, Any, TypeVar, cast

import click

if TYPE_CHECKING:
    from poller.cli.main import Context
    from poller.config import Config
    from poller.core.ports import Cache, Vendor, VendorCheck

F = TypeVar("F", bound=Callable[..., Any])
Products = list[tuple[str | None, Decimal, str]]


def handled(func: F) -> F:
    """main.handled, looked up when the command runs (main.py imports this module)."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from poller.cli.main import handled as main_handled

        return main_handled(func)(*args, **kwargs)

    return cast(F, wrapper)


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
    by name (``poller.app.VendorPool``); a ConfigError from it propagates. A vendor without
    ``check`` passes with a note; one whose check raises fails with the reason."""
    from poller.core.errors import VendorError
    from poller.core.ports import ProductCheck, VendorCheck

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
            result = VendorCheck(vendor=name, credentials_ok=exc.status not in (401, 403),
                                 problems=(str(exc),))
        except Exception as exc:  # a broken check must not hide the other vendors' results
            result = VendorCheck(vendor=name, credentials_ok=False,
                                 problems=(f"the check itself failed: {type(exc).__name__}",))
        results.append(cast("VendorCheck", result))
    return results


def _rows(results: Sequence[VendorCheck]) -> list[list[str]]:
    rows: list[list[str]] = []
    for result in results:
        credentials = "ok" if result.credentials_ok else "FAIL"
        rows.append([result.vendor, "credentials", "", credentials,
                     f"balance {result.balance}" if result.balance else ""])
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


def _ledger_cache(config: Config) -> tuple[Cache | None, Callable[[], None], str]:
    """The ledger as the vendors' cache (so a catalog fetched here serves the worker too),
    when it exists already: a check creates and migrates nothing. (cache, close, note)."""
    from pathlib import Path

    from sqlalchemy.engine import make_url

    from poller.core.errors import ConfigError, PollerError
    from poller.ledger import open_ledger

    def nothing() -> None:
        return None

    url = make_url(config.ledger.url)
    if url.get_backend_name() == "sqlite":
        database = url.database or ""
        if database in ("", ":memory:") or not Path(database).expanduser().exists():
            return None, nothing, "no ledger yet: vendor catalogs are not cached"
    try:
        ledger = open_ledger(config.ledger.url, migrate=False)
    except ConfigError:
        raise
    except PollerError as exc:
        return None, nothing, f"ledger not used as a cache ({exc})"
    if not hasattr(ledger, "cache_get") or not hasattr(ledger, "cache_put"):
        ledger.close()
        return None, nothing, "ledger not used as a cache (it has none)"
    return cast("Cache", ledger), ledger.close, ""


@click.command("check")
@click.option("--json", "as_json", is_flag=True, help="JSON on stdout.")
@click.pass_obj
@handled
def check_command(obj: Context, as_json: bool) -> None:
    """Check the config and, for each vendor in [[rewards]], credentials, products and balance."""
    from poller.app import VendorPool
    from poller.cli.main import Failed
    from poller.cli.ops import wrapped_table
    from poller.logs import redactor

    config = obj.config()
    cache, close_cache, note = _ledger_cache(config)
    pool = VendorPool(config, cache=cache)
    try:
        results = run_checks(config, pool)
    finally:
        pool.close()
        close_cache()
    if as_json:
        from poller.cli.output import emit_json

        emit_json(_as_json(results, redactor.scrub))
    elif results:
        rows = [[redactor.scrub(cell) for cell in row] for row in _rows(results)]
        click.echo(wrapped_table(["vendor", "item", "amount", "result", "detail"], rows))
    else:
        click.echo("no [[rewards]] rules: nothing to check")
    unchecked = sorted(set(config.vendors) - {r.vendor for r in results})
    if unchecked and not as_json:
        click.echo(f"\nnot checked (no [[rewards]] rule uses them): {', '.join(unchecked)}")
    if note:
        click.echo(f"note: {note}", err=True)
    failures = count_problems(results)
    if failures:
        raise Failed(f"check found {failures} problem{'s' if failures != 1 else ''}")
    if not as_json:
        click.echo("\nall checks passed")
