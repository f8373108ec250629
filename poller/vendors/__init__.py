"""Vendors, found by name.

A vendor is one module ``poller.vendors.<name>`` that defines:

* ``Settings``: a pydantic model of its ``[vendors.<name>]`` config section, and
* ``build(settings: Settings, policy: RetryPolicy) -> Vendor``.

Adding a vendor touches that one new module and its tests: the registry finds it by its
module name, and the config validates its section with its ``Settings``. Modules are imported
only when a config uses them, so an unused vendor costs nothing at start-up.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Mapping
from types import ModuleType
from typing import Any

from pydantic import BaseModel

from poller.core.errors import ConfigError
from poller.core.ports import Vendor
from poller.transport import RetryPolicy

# Modules in this package that are not vendors a user can configure.
_NOT_VENDORS = frozenset({"fake", "base"})


def available() -> list[str]:
    return sorted(
        m.name
        for m in pkgutil.iter_modules(__path__)
        if not m.name.startswith("_") and m.name not in _NOT_VENDORS
    )


def vendor_module(name: str) -> ModuleType:
    if not name.isidentifier() or name in _NOT_VENDORS or name not in available():
        raise ConfigError(
            f"unknown vendor {name!r}; available vendors: {', '.join(available())}"
        )
    module = importlib.import_module(f"{__name__}.{name}")
    if not hasattr(module, "Settings") or not hasattr(module, "build"):
        raise ConfigError(f"vendor module {name!r} defines no Settings/build")
    return module


def validate_settings(name: str, raw: Mapping[str, Any]) -> BaseModel:
    """Validate a ``[vendors.<name>]`` section; pydantic's errors name the key."""
    module = vendor_module(name)
    settings: BaseModel = module.Settings.model_validate(dict(raw))
    return settings


def build_vendor(name: str, settings: BaseModel, policy: RetryPolicy) -> Vendor:
    vendor: Vendor = vendor_module(name).build(settings, policy)
    return vendor
