"""Currencies: the one ISO 4217 list codes are checked against (the ``iso4217`` package),
and the one place amounts are brought to a currency's minor units. A currency is part of
what the spending guard compares and an amount's text is what a vendor receives: ``"usd "``
must never reach a vendor, nor ``Decimal("1e3")`` as ``"1E+3"``. Codes with no minor units
(``XAU``, ``XTS``, ``XXX``) are not money a reward can be paid in: refused as unknown.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from iso4217 import raw_table


class CurrencyProblem(ValueError):
    """A currency code or an amount that cannot be used; the message names the value."""


# ISO 4217 code -> digits after the decimal point (USD 2, JPY 0, BHD 3).
MINOR_UNITS: dict[str, int] = {
    code: int(str(entry["CcyMnrUnts"])) for code, entry in raw_table.items()
    if isinstance(code, str) and str(entry.get("CcyMnrUnts")).isdigit()
}


def parse_currency(value: Any) -> str:
    """``value`` stripped and upper-cased (the one place that happens), if an ISO 4217 code."""
    if not isinstance(value, str):
        raise CurrencyProblem(f"currency {value!r} is not a text code such as USD")
    code = value.strip().upper()
    if code not in MINOR_UNITS:
        raise CurrencyProblem(f"currency {value!r} is not an ISO 4217 currency code")
    return code


def minor_units(code: str) -> int:
    try:
        return MINOR_UNITS[code]
    except KeyError:
        raise CurrencyProblem(f"currency {code!r} is not an ISO 4217 currency code") from None


def normalise_amount(amount: Decimal, currency: str) -> Decimal:
    """``amount`` with exactly the currency's minor units (``1E+3`` USD -> ``1000.00``). More
    digits than the currency has (``10.005`` USD) is a CurrencyProblem: rounding money is a
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
