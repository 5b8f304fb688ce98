"""One self-contained HTML page from a small Markdown subset (headings, tables, images, lists, code
blocks), with the images inlined as base64 PNG: the pages `regmix report` and `regmix demo` write."""

from __future__ import annotations

import base64
import html
import re


def to_html(md: str, images: dict[str, bytes], names: dict[str, str]) -> str:
    """A small Markdown subset (headings, tables, images, paragraphs, lists) to one HTML file."""
    inline = lambda s: re.sub(r"`([^`]+)`", r"<code>\1</code>", re.sub(r"\*\*([^*]+)\*\*", r"<b>\1</b>", html.escape(s)))
    by_path = {v: k for k, v in names.items()}
    body, table, items = [], [], []

    def flush():
        if table:
            rows = [r for r in table if not set(r.replace("|", "").strip()) <= set("-: ")]
            cells = [[c.strip() for c in r.strip().strip("|").split("|")] for r in rows]
            out = ["<table>", "<tr>" + "".join(f"<th>{inline(c)}</th>" for c in cells[0]) + "</tr>"]
            out += ["<tr>" + "".join(f"<td>{inline(c)}</td>" for c in r) + "</tr>" for r in cells[1:]]
            body.append("\n".join(out + ["</table>"]))
            table.clear()
        if items:
            body.append("<ul>" + "".join(f"<li>{inline(i)}</li>" for i in items) + "</ul>")
            items.clear()

    pre = None  # lines of an open ``` block
    for line in md.splitlines():
        if line.startswith("```"):
            if pre is None:
                flush()
                pre = []
            else:
                body.append("<pre>" + html.escape("\n".join(pre)) + "</pre>")
                pre = None
            continue
        if pre is not None:
            pre.append(line)
            continue
        if line.startswith("|"):
            table.append(line)
            continue
        if line.startswith("- "):
            items.append(line[2:])
            continue
        flush()
        m = re.match(r"!\[([^\]]*)\]\(([^)]+)\)", line)
        if m:
            data = base64.b64encode(images[by_path[m.group(2)]]).decode()
            body.append(f'<img alt="{html.escape(m.group(1))}" src="data:image/png;base64,{data}">')
        elif line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            body.append(f"<h{level}>{inline(line[level:].strip())}</h{level}>")
        elif line.strip():
            body.append(f"<p>{inline(line)}</p>")
    flush()
    style = ("body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
             "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}"
             "th{background:#f3f3f3}pre{background:#f6f6f6;padding:.5em;overflow:auto;max-height:30em}img{max-width:100%;display:block;margin:1em 0}code{background:#f3f3f3;padding:0 3px}")
    title = html.escape(next((l.lstrip("# ") for l in md.splitlines() if l.startswith("# ")), "regmix report"))
    return (f"<!doctype html>\n<html><head><meta charset='utf-8'><title>{title}</title>"
            f"<style>{style}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")
