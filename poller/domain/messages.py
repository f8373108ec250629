"""Messages shown to the advocate at Influitive, from the user's templates."""

from __future__ import annotations

import string
from collections.abc import Mapping
from dataclasses import dataclass

from poller.domain.errors import PRODUCT_UNAVAILABLE

PLACEHOLDERS = frozenset(
    {"reward_name", "recipient_name", "email", "delivery", "vendor", "amount", "currency",
     "reason", "redemption_id"}
)

DEFAULT_FULFILLED = (
    "Your {reward_name} is on its way: {delivery}. Thank you for being an advocate!"
)
DEFAULT_REFUSED = (
    "We could not send your {reward_name}: {reason}. Your points have been refunded."
)
DEFAULT_UNMAPPED = "This reward cannot be fulfilled automatically"
# The ``{reason}`` of a refusal because the vendor will not sell a product it lists.
DEFAULT_UNAVAILABLE = PRODUCT_UNAVAILABLE


def unknown_placeholders(template: str) -> list[str]:
    """Names in ``template`` that the renderer does not know (a typo in the config)."""
    names = []
    for _, field, _, _ in string.Formatter().parse(template):
        if field is not None:
            base = field.split(".")[0].split("[")[0]
            if base not in PLACEHOLDERS:
                names.append(field or "{}")
    return names


class _Blank(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return ""


@dataclass(frozen=True, kw_only=True)
class MessageTemplates:
    fulfilled: str = DEFAULT_FULFILLED
    refused: str = DEFAULT_REFUSED
    unmapped_reason: str = DEFAULT_UNMAPPED
    unavailable_reason: str = DEFAULT_UNAVAILABLE

    @staticmethod
    def render(template: str, values: Mapping[str, object]) -> str:
        text = {k: "" if v is None else str(v) for k, v in values.items()}
        return " ".join(template.format_map(_Blank(text)).split())
