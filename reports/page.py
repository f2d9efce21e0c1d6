"""The reports' one page toolkit: HTML skeleton and style, tables, figures, number formats.

``fanbench report`` (render.py) and ``fanbench compare`` (compare.py) both build
their pages from these pieces, so the two look alike and format a number the
same way. Pages are self-contained: inline CSS, charts as base64 PNG, no scripts,
no remote URLs, so they render offline and can be mailed or archived as one file.
Every cell and caption is escaped here; callers pass plain text.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Iterable, Sequence

MISSING = "–"
MINUS = "\N{MINUS SIGN}"

CSS = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1a1a1a;
       max-width: 1000px; margin: 2em auto; padding: 0 1em; }
h1 { font-size: 1.6em; margin-bottom: 0.1em; }
h2 { margin-top: 1.8em; border-bottom: 1px solid #ddd; }
.sub { color: #555; margin-top: 0; }
table { border-collapse: collapse; margin: 0.6em 0; }
th, td { padding: 0.25em 0.9em 0.25em 0; text-align: left; vertical-align: top; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
tr + tr td, tr + tr th { border-top: 1px solid #eee; }
.banner { padding: 0.6em 1em; border-radius: 4px; margin: 1em 0; }
.bad { background: #fff1e6; border-left: 4px solid #D55E00; }
.good { background: #eaf6f1; border-left: 4px solid #009E73; }
figure { margin: 1.2em 0; } figure img { width: 100%; height: auto; border: 1px solid #eee; }
figcaption { color: #555; font-size: 0.9em; }
code, .small { font-size: 0.85em; color: #444; }
"""

# --- number formats -----------------------------------------------------------------------


def ms(value: float | None) -> str:
    """Milliseconds to one decimal, thousands grouped; "–" when unknown."""
    return MISSING if value is None else f"{value:,.1f}"


def percent(rate: float, places: int = 2) -> str:
    """A fraction as a percentage; a tiny non-zero rate keeps two significant digits."""
    shown = rate * 100
    return f"{shown:.2g} %" if 0 < shown < 0.5 * 10**-places else f"{shown:.{places}f} %"


def usd(value: float | None) -> str:
    if value is None:
        return MISSING
    return f"${value:,.2f}" if abs(value) >= 1 else f"${value:.3g}"


def signed(x: float, places: int = 2) -> str:
    """ "+1.20", "−0.35" (a true minus sign), or "0.00" without a sign."""
    text = f"{abs(x):.{places}f}"
    return text if float(text) == 0 else (MINUS if x < 0 else "+") + text


def factor(x: float) -> str:
    """A ratio with about three significant digits: 0.95, 12.3, 140."""
    return f"{x:.0f}" if x >= 100 else f"{x:.1f}" if x >= 10 else f"{x:.2f}"


# --- HTML pieces ----------------------------------------------------------------------------

e = html.escape


def _align(cell: str) -> str:
    """Numbers (and money, and signed figures) right-aligned, words left."""
    return ' class="n"' if cell[:1].isdigit() or cell[:1] in f"$–-+{MINUS}" else ""


def table(rows: Iterable[Sequence[str]], header: Sequence[str] = ()) -> str:
    """An HTML table whose first column names each row."""
    head = "".join(f"<th>{e(h)}</th>" for h in header)
    body = "".join(
        "<tr><th>" + e(row[0]) + "</th>"
        + "".join(f"<td{_align(cell)}>{e(cell)}</td>" for cell in row[1:]) + "</tr>"
        for row in rows
    )  # fmt: skip
    return f"<table>{f'<tr>{head}</tr>' if head else ''}{body}</table>"


def items(lines: Iterable[str]) -> str:
    return "<ul>" + "".join(f"<li>{e(line)}</li>" for line in lines) + "</ul>"


def banner(good: bool, lead: str, lines: Sequence[str] = ()) -> str:
    """A coloured box: a lead sentence (bold when bad) and a list."""
    kind, text = ("good", e(lead)) if good else ("bad", f"<strong>{e(lead)}</strong>")
    return f'<div class="banner {kind}">{text}{items(lines) if lines else ""}</div>'


def figure(png: bytes, title: str, caption: str) -> str:
    """A chart embedded as base64 PNG, with its caption."""
    data = base64.b64encode(png).decode("ascii")
    return (
        f'<figure><img alt="{e(title)}" src="data:image/png;base64,{data}">'
        f"<figcaption>{e(caption)}</figcaption></figure>"
    )


def html_page(title: str, body: str) -> str:
    """The skeleton around ``body`` (already HTML): doctype, charset, viewport, style."""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{e(title)}</title><style>{CSS}</style></head>
<body>
{body}
</body></html>
"""


# --- Markdown pieces ------------------------------------------------------------------------


def markdown_table(rows: Iterable[Sequence[str]], header: Sequence[str]) -> list[str]:
    """Lines of a Markdown table, with any ``|`` inside a cell escaped."""
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return out + ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]
