"""docs/configuration.md names every key the config accepts, and config.example.toml every
section, so a user never has to read the code to find a knob."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import BaseModel

from poller.config import Config
from poller.config.sections import RewardSettings

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "configuration.md").read_text()
EXAMPLE = (ROOT / "config.example.toml").read_text()


def _sections() -> list[tuple[str, type[BaseModel]]]:
    out = []
    for name, field in Config.model_fields.items():
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            out.append((name, ann))
    return out


def _vendor_sections() -> list[tuple[str, type[BaseModel]]]:
    from poller.vendors import giftbit, http, manual, tango, tremendous

    return [(f"vendors.{m.__name__.rsplit('.', 1)[1]}", m.Settings)
            for m in (giftbit, http, manual, tango, tremendous)]


@pytest.mark.parametrize(("section", "model"), _sections() + _vendor_sections(),
                         ids=lambda v: v if isinstance(v, str) else "")
def test_every_key_of_every_section_is_documented(section: str, model: type[BaseModel]) -> None:
    assert f"[{section}]" in DOC, f"docs/configuration.md has no [{section}] section"
    missing = [key for key in model.model_fields if f"`{key}`" not in DOC]
    assert not missing, f"docs/configuration.md does not name [{section}] {missing}"


def test_every_routing_key_is_documented() -> None:
    missing = [key for key in RewardSettings.model_fields if f"`{key}`" not in DOC]
    assert not missing


@pytest.mark.parametrize("section", [name for name, _ in _sections()])
def test_the_example_config_shows_every_section(section: str) -> None:
    assert re.search(rf"^#? ?\[{re.escape(section)}\]", EXAMPLE, re.M), (
        f"config.example.toml has no [{section}] section, not even commented out")
