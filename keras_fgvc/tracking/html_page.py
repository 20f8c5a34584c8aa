"""One look for the pages a run leaves (``report.html``, ``compare.html``) and their Markdown
twins: number formatting, tables, inline PNGs and the page shell.

A page is a single file that opens offline: images are inlined as base64 PNG and nothing links
out (no fonts, scripts or style sheets from a network).
"""

import base64
import html

MISSING = "-"

STYLE = """body{font-family:system-ui,sans-serif;margin:2em;max-width:1100px;color:#222}
table{border-collapse:collapse;margin:.5em 0 1em;font-size:13px}th,td{border:1px solid #ccc;padding:3px 8px;text-align:right}
th:first-child,td:first-child{text-align:left}th{background:#f2f2f2}img{max-width:100%}figure{margin:1em 0}
pre{background:#f6f6f6;padding:1em;overflow:auto;font-size:12px}figcaption{font-size:12px;color:#555}"""


def number(value) -> str:
    """A cell's text: integers with thousands separators, floats to 4 decimals (1 from 1000 up,
    4 significant digits below 0.001), booleans and other values as ``str``, None as ``-``.

    Example:
        >>> [number(v) for v in (None, 123456, 0.5, 3725.25, 3e-5, True, "x")]
        ['-', '123,456', '0.5000', '3,725.2', '3e-05', 'True', 'x']
    """
    if value is None:
        return MISSING
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if 0 < abs(value) < 0.001:  # a learning rate or weight decay would read 0.0000
        return f"{value:.4g}"
    return f"{value:.4f}" if abs(value) < 1000 else f"{value:,.1f}"


def cells(rows: list, columns: list) -> list:
    """Header + one list of cell texts per row (``number`` of each value; a missing key is ``-``)."""
    return [list(columns)] + [[number(row.get(c)) for c in columns] for row in rows]


def markdown_table(table: list) -> str:
    if not table:
        return ""
    lines = ["| " + " | ".join(table[0]) + " |", "|" + "---|" * len(table[0])]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in table[1:]])


def html_table(table: list) -> str:
    if not table:
        return ""
    head = "".join(f"<th>{html.escape(c)}</th>" for c in table[0])
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in table[1:])
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def inline_png(path: str, title: str) -> str:
    """A ``<figure>`` holding the PNG at ``path`` as a data URI, captioned ``title``."""
    with open(path, "rb") as f:
        data = base64.b64encode(f.read()).decode("ascii")
    return (f'<figure><img alt="{html.escape(title)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{html.escape(title)}</figcaption></figure>")


def document(title: str, body: list) -> str:
    """The whole page: ``title`` in the head, the HTML fragments of ``body`` in order."""
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style></head><body>{''.join(body)}</body></html>\n")
