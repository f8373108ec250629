"""The results: one ``Figure`` per measurement, printed as a table and written as
BENCHMARKS.md."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime


@dataclass
class Figure:
    number: int
    title: str
    measured: str
    target: str
    met: bool | None
    """None: a note, reported without a target."""
    method: str = ""
    details: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    """For a target not met: the measured cause. Otherwise what the reader should know."""
    appendix: str = ""

    @property
    def verdict(self) -> str:
        return "note" if self.met is None else ("met" if self.met else "NOT MET")


def table(figures: list[Figure]) -> str:
    rows = [("#", "measurement", "measured", "target", "verdict")]
    rows += [(str(f.number), f.title, f.measured, f.target, f.verdict) for f in figures]
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
             for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|")


def markdown(figures: list[Figure], machine: dict[str, str], elapsed: float,
             preamble: str) -> str:
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    out = [
        "# Benchmarks",
        "",
        f"Written by `make bench` on {now} (the whole run took {elapsed:.0f} s). Every figure "
        "below comes from that command, run against the local stand-ins; nothing here is "
        "typed by hand.",
        "",
        "## Machine",
        "",
        "| | |",
        "|---|---|",
    ]
    out += [f"| {k} | {_md_escape(v)} |" for k, v in machine.items()]
    out += ["", preamble.strip(), "", "## Summary", "",
            "| # | measurement | measured | target | verdict |", "|---|---|---|---|---|"]
    out += [f"| {f.number} | {_md_escape(f.title)} | {_md_escape(f.measured)} | "
            f"{_md_escape(f.target)} | {f.verdict} |" for f in figures]
    for f in figures:
        out += ["", f"## {f.number}. {f.title}", ""]
        out += [f"**Measured:** {f.measured}. **Target:** {f.target}. **Verdict:** {f.verdict}.",
                ""]
        if f.method:
            out += [f.method.strip(), ""]
        if f.details:
            out += ["| | |", "|---|---|"]
            out += [f"| {_md_escape(k)} | {_md_escape(v)} |" for k, v in f.details]
            out.append("")
        for note in f.notes:
            out += [note.strip(), ""]
        if f.appendix:
            out += [f.appendix.strip(), ""]
    return "\n".join(out).rstrip() + "\n"
