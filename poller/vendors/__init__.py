"""Vendors, found by name.

A vendor is one module or package ``poller.vendors.<name>`` that defines:

* ``Settings``: a pydantic model of its ``[vendors.<name>]`` config section, and
* ``build(settings: Settings, context: BuildContext) -> Vendor``.

Adding a vendor touches that one new module (or package) and its tests: the registry finds
it by its name, and the config validates its section with its ``Settings``. Vendors are
imported only when a config uses them, so an unused vendor costs nothing at start-up.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from poller.domain.errors import ConfigError, NotAuditable
from poller.ports import Cache, OrderBook, Vendor
from poller.transport import RetryPolicy
from poller.vendors.ratelimit import DEFAULT_RATE_LIMITS


@dataclass(frozen=True, kw_only=True)
class BuildContext:
    """What every vendor gets besides its own settings."""

    policy: RetryPolicy
    cache: Cache | None = None  # the ledger's (None in tests that need none)
    rate_limit_per_second: float | None = None
    """For an order book: the section's ``rate_limit_per_second`` (None: the vendor's
    default). ``build_vendor`` ignores it: ``ratelimit.limited`` wraps the vendor instead."""


# Modules in this package that are not vendors a user can configure.
_NOT_VENDORS = frozenset({"fake", "base", "books", "ratelimit"})

# Keys any [vendors.<name>] section may have. They are read here, once, and taken out before
# the vendor's own Settings (which forbid unknown keys) see the section.
COMMON_KEYS = frozenset({"rate_limit_per_second"})


class _Common(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rate_limit_per_second: float | None = Field(default=None, ge=0)  # 0: no limit


def rate_limit(name: str, raw: Mapping[str, Any]) -> float | None:
    """The calls per second allowed to vendor ``name`` (None: no limit), from its section
    or the vendor's documented default. Raises pydantic's ValidationError naming the key."""
    own = _Common.model_validate({k: v for k, v in raw.items() if k in COMMON_KEYS})
    rate = own.rate_limit_per_second
    return (DEFAULT_RATE_LIMITS.get(name) if rate is None else rate) or None


def available() -> list[str]:
    return sorted(
        m.name
        for m in pkgutil.iter_modules(__path__)
        if not m.name.startswith("_") and m.name not in _NOT_VENDORS
    )


def vendor_module(name: str) -> ModuleType:
    if name not in available():
        raise ConfigError(f"unknown vendor {name!r}; available vendors: {', '.join(available())}")
    return importlib.import_module(f"{__name__}.{name}")


def validate_settings(name: str, raw: Mapping[str, Any]) -> BaseModel:
    """Validate a ``[vendors.<name>]`` section; pydantic's errors name the key."""
    module = vendor_module(name)
    own = {k: v for k, v in raw.items() if k not in COMMON_KEYS}
    settings: BaseModel = module.Settings.model_validate(own)
    return settings


def build_vendor(name: str, settings: BaseModel, context: BuildContext) -> Vendor:
    vendor: Vendor = vendor_module(name).build(settings, context)
    return vendor


def build_order_book(name: str, settings: BaseModel, context: BuildContext) -> OrderBook:
    """The vendor's own order list, for the books audit. A vendor module offers one by
    defining ``order_book(settings, context)``; one that cannot (or whose settings leave out
    what it needs) raises ``NotAuditable`` with the reason, said once in the report."""
    module = vendor_module(name)
    factory = getattr(module, "order_book", None)
    if factory is None:
        raise NotAuditable(f"vendor {name!r} has no order list reward-poller can read")
    book: OrderBook = factory(settings, context)
    return book

