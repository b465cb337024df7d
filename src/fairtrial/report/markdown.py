"""Markdown rendering. Plots are left to the HTML report; the Markdown names them."""

from __future__ import annotations

from fairtrial.report.document import Heading, Image, Para, Table, build


def _cell(v: str) -> str:
    return str(v).replace("|", "\\|").replace("\n", " ")


def render_markdown(result) -> str:
    lines: list[str] = []
    for b in build(result):
        if isinstance(b, Para):
            text = f"**{b.text}**" if b.kind == "partial" else (f"_{b.text}_" if b.kind == "note" else b.text)
            lines += [text, ""]
        elif isinstance(b, Heading):
            lines += ["#" * b.level + " " + b.text, ""]
        elif isinstance(b, Table):
            lines.append("| " + " | ".join(_cell(h) for h in b.header) + " |")
            lines.append("|" + "---|" * len(b.header))
            lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in b.rows]
            lines.append("")
        elif isinstance(b, Image):
            lines += [f"_(plot in the HTML report: {b.title})_", ""]
    return "\n".join(lines).rstrip() + "\n"
