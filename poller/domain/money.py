"""Currencies: the one ISO 4217 list the project checks codes against, and the one place
amounts are brought to a currency's minor units.

The list is the ``iso4217`` package (the published ISO table, with minor units); codes with
no minor units (``XAU`` gold, ``XTS`` testing, ``XXX`` no currency) are not money a reward
can be paid in, so they are refused like any unknown code.

Why it matters: a currency is part of what the spending guard compares, and the amount's
text is what a vendor receives. ``"US$"`` or ``"usd "`` must never reach a vendor, and
``Decimal("1e3")`` must reach it as ``"1000.00"``, not ``"1E+3"``.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from iso4217 import raw_table


class CurrencyProblem(ValueError):
    """A currency code or an amount that cannot be used; the message names the value."""


def _minor_units_table() -> dict[str, int]:
    table: dict[str, int] = {}
    for code, entry in raw_table.items():
        units = entry.get("CcyMnrUnts")
        if isinstance(code, str) and isinstance(units, str) and units.isdigit():
            table[code] = int(units)
    return table


MINOR_UNITS: dict[str, int] = _minor_units_table()
"""ISO 4217 code -> digits after the decimal point (USD 2, JPY 0, BHD 3)."""


def is_currency(code: str) -> bool:
    """Whether ``code`` is exactly an ISO 4217 code (upper case, no spaces)."""
    return code in MINOR_UNITS


def parse_currency(value: Any) -> str:
    """``value`` as an ISO 4217 code: stripped and upper-cased (the one place that happens).
    CurrencyProblem naming the value otherwise."""
    if not isinstance(value, str):
        raise CurrencyProblem(f"currency {value!r} is not a text code such as USD")
    code = value.strip().upper()
    if not is_currency(code):
        raise CurrencyProblem(f"currency {value!r} is not an ISO 4217 currency code")
    return code


def minor_units(code: str) -> int:
    """Digits after the decimal point for ``code`` (an ISO code). CurrencyProblem otherwise."""
    try:
        return MINOR_UNITS[code]
    except KeyError:
        raise CurrencyProblem(f"currency {code!r} is not an ISO 4217 currency code") from None


def normalise_amount(amount: Decimal, currency: str) -> Decimal:
    """``amount`` with exactly the currency's minor units (``1E+3`` USD -> ``1000.00``), so
    its text is plain and what a vendor expects. An amount with more digits than the
    currency has (``10.005`` USD, ``100.5`` JPY) is a CurrencyProblem: rounding money is a
    decision for a person, not for the worker."""
    if not isinstance(amount, Decimal) or not amount.is_finite():
        raise CurrencyProblem(f"amount {amount!r} is not a finite number")
    exponent = Decimal(1).scaleb(-minor_units(currency))
    try:
        normal = amount.quantize(exponent)
    except InvalidOperation:
        raise CurrencyProblem(f"amount {amount!r} is too large") from None
    if normal != amount:
        raise CurrencyProblem(
            f"amount {amount} has more decimals than {currency} allows "
            f"({minor_units(currency)})"
        )
    return normal


def format_amount(amount: Decimal, currency: str) -> str:
    """The amount as plain text with the currency's minor units: ``"1000.00"``."""
    return f"{normalise_amount(amount, currency):f}"
