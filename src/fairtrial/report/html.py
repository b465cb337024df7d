"""Self-contained HTML rendering: inline CSS, plots as inline base64 PNG, no network access."""

from __future__ import annotations

import base64
import html

from fairtrial.report.document import Heading, Image, Para, Table, build

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;color:#1f2328;
     max-width:1180px;margin:24px auto;padding:0 16px}
h1{font-size:15px;color:#57606a;font-weight:600;margin:0 0 4px}
h2{font-size:19px;border-bottom:1px solid #d0d7de;padding-bottom:4px;margin-top:28px}
h3{font-size:15px;margin-top:18px}
p.headline{font-size:18px;font-weight:600;padding:12px 14px;border-left:6px solid #57606a;
           background:#f6f8fa;margin:8px 0 12px}
p.headline.v-supported{border-color:#1a7f37} p.headline.v-refuted{border-color:#cf222e}
p.headline.v-inconclusive,p.headline.v-mixed{border-color:#9a6700}
p.partial{background:#fff8c5;border:1px solid #d4a72c;padding:8px 12px;font-weight:600}
p.note{color:#57606a;font-size:12.5px}
.scroll{overflow-x:auto}
table{border-collapse:collapse;margin:8px 0;font-size:12.5px}
th,td{border:1px solid #d0d7de;padding:3px 7px;text-align:left;vertical-align:top}
th{background:#f6f8fa}
tr.v-supported td{background:#dafbe1} tr.v-refuted td{background:#ffebe9}
tr.v-inconclusive td{background:#fff8c5}
tr.sev-error td{background:#ffebe9} tr.sev-warning td{background:#fff8c5}
tr.baseline td{color:#57606a}
tr.o-success td{background:#dafbe1} tr.o-failure td{background:#ffebe9} tr.o-partial td{background:#fff8c5}
figure{margin:10px 0} figcaption{color:#57606a;font-size:12px} img{max-width:100%}
"""


def render_html(result) -> str:
    e = html.escape
    title = result.name or "fairtrial study"
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{e(title)}: "
             f"{e(result.verdict)}</title><style>{CSS}</style></head><body>",
             f"<h1>fairtrial report: {e(title)}</h1>"]
    for b in build(result):
        if isinstance(b, Para):
            cls = b.kind + (f" v-{result.verdict}" if b.kind == "headline" else "")
            parts.append(f"<p class='{e(cls)}'>{e(b.text)}</p>")
        elif isinstance(b, Heading):
            parts.append(f"<h{b.level}>{e(b.text)}</h{b.level}>")
        elif isinstance(b, Table):
            head = "".join(f"<th>{e(h)}</th>" for h in b.header)
            body = []
            for i, row in enumerate(b.rows):
                cls = b.classes[i] if i < len(b.classes) else ""
                body.append(f"<tr class='{e(cls)}'>" + "".join(f"<td>{e(str(c))}</td>" for c in row) + "</tr>")
            parts.append(f"<div class='scroll'><table><thead><tr>{head}</tr></thead><tbody>"
                         + "".join(body) + "</tbody></table></div>")
        elif isinstance(b, Image):
            png = b.render()
            if png:
                data = base64.b64encode(png).decode()
                parts.append(f"<figure><img alt='{e(b.title)}' src='data:image/png;base64,{data}'>"
                             f"<figcaption>{e(b.title)}</figcaption></figure>")
    parts.append("</body></html>")
    return "\n".join(parts)
