"""The spend chart: an SVG drawn on the server (no script, no image fetched), one stacked bar
per day, one colour per vendor, and the daily limit as a dashed line."""

from __future__ import annotations

from decimal import Decimal

from markupsafe import Markup, escape

from poller.console.data import Spend

WIDTH = 720
HEIGHT = 260
LEFT = 64
RIGHT = 12
TOP = 14
BOTTOM = 40
PALETTE = 6
"""Vendors take the CSS classes ``v0`` to ``v5`` (static/console.css) in turn."""


def _fmt(amount: Decimal) -> str:
    return f"{amount:,.2f}"


def spend_svg(spend: Spend) -> Markup:
    totals = [d.total for d in spend.days]
    top = max([*totals, spend.limit or Decimal(0), Decimal(1)])
    top = top * Decimal("1.1")
    plot_w = WIDTH - LEFT - RIGHT
    plot_h = HEIGHT - TOP - BOTTOM
    slot = plot_w / max(len(spend.days), 1)
    bar_w = max(slot * 0.7, 2)

    def y(value: Decimal) -> float:
        return TOP + plot_h - float(value / top) * plot_h

    parts = [
        f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'role="img" aria-label="{escape(spend.currency)} spent per day and vendor">',
        f"<title>{escape(spend.currency)} spent per day and vendor</title>",
        f'<line class="axis" x1="{LEFT}" y1="{TOP + plot_h}" x2="{WIDTH - RIGHT}" '
        f'y2="{TOP + plot_h}"/>',
    ]
    for fraction in (Decimal(0), Decimal("0.5"), Decimal(1)):
        value = top / Decimal("1.1") * fraction
        parts.append(f'<text class="tick" x="{LEFT - 6}" y="{y(value) + 4:.1f}" '
                     f'text-anchor="end">{escape(_fmt(value))}</text>')
    colour = {v: i % PALETTE for i, v in enumerate(spend.vendors)}
    for i, day in enumerate(spend.days):
        x = LEFT + i * slot + (slot - bar_w) / 2
        base = Decimal(0)
        for vendor in spend.vendors:
            amount = day.by_vendor.get(vendor)
            if not amount:
                continue
            y_top, y_bottom = y(base + amount), y(base)
            parts.append(
                f'<rect class="bar v{colour[vendor]}" x="{x:.1f}" y="{y_top:.1f}" '
                f'width="{bar_w:.1f}" height="{max(y_bottom - y_top, 0.5):.1f}">'
                f"<title>{escape(day.day.date().isoformat())} {escape(vendor)}: "
                f"{escape(_fmt(amount))} {escape(spend.currency)}</title></rect>")
            base += amount
        if (len(spend.days) - 1 - i) % max(1, len(spend.days) // 7) == 0:  # today labelled
            parts.append(f'<text class="tick" x="{x + bar_w / 2:.1f}" y="{HEIGHT - BOTTOM + 16}" '
                         f'text-anchor="middle">{escape(day.day.strftime("%d %b"))}</text>')
    if spend.limit is not None:
        ly = y(spend.limit)
        parts.append(f'<line class="limit" x1="{LEFT}" y1="{ly:.1f}" x2="{WIDTH - RIGHT}" '
                     f'y2="{ly:.1f}"><title>daily limit {escape(_fmt(spend.limit))} '
                     f"{escape(spend.currency)}</title></line>")
        parts.append(f'<text class="limit-label" x="{WIDTH - RIGHT}" y="{ly - 4:.1f}" '
                     f'text-anchor="end">limit {escape(_fmt(spend.limit))}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))  # every value above is escaped
