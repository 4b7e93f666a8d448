"""HTML building blocks of the report: escaping, sections, tables, count cells, image tiles and the page.

The page is one file with no network access: inline CSS, inline SVG, images as data: URIs. Numbers the
report shows from the manifest carry `data-count="<key>"` so a test can compare the page with the manifest,
and a small script writes into `#report-status` whether every image decoded and which errors the page hit.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Sequence

from curation.schema import KEPT


class Html(str):
    """A string that is already HTML; everything else is escaped on the way into the page."""


def esc(value: Any) -> Html:
    return value if isinstance(value, Html) else Html(html.escape("" if value is None else str(value)))


def join(parts: Iterable[Any]) -> Html:
    return Html("".join(esc(p) for p in parts))


def _attrs(cls: str | None, attrs: dict[str, Any]) -> str:
    """Attribute names use '_' for '-' (data_count -> data-count); None leaves an attribute out."""
    items = [("class", cls)] + [(k.rstrip("_").replace("_", "-"), v) for k, v in attrs.items()]
    return "".join(f' {k}="{html.escape(str(v), quote=True)}"' for k, v in items if v is not None)


def tag(name: str, body: Any = "", cls: str | None = None, **attrs: Any) -> Html:
    return Html(f"<{name}{_attrs(cls, attrs)}>{esc(body)}</{name}>")


def void(name: str, cls: str | None = None, **attrs: Any) -> Html:
    """An element with no body or end tag, such as <img>."""
    return Html(f"<{name}{_attrs(cls, attrs)}>")


@dataclass(frozen=True)
class Section:
    id: str
    title: str
    body: Html


@dataclass(frozen=True)
class Thumb:
    """A thumbnail as a data: URI, or the reason there is none."""

    data_uri: str | None = None
    reason: str | None = None
    width: int = 0
    height: int = 0


Thumbs = Callable[[Mapping[str, Any]], Thumb]  # a manifest row -> its thumbnail


def count(key: str, n: int, el: str = "span", cls: str | None = None) -> Html:
    """A number taken from the manifest, tagged so a test can check the page against it."""
    return tag(el, f"{n:,}", cls=cls, data_count=key)


def count_cell(key: str, n: int) -> Html:
    """A right-aligned table cell holding a `count`."""
    return tag("td", count(key, n), cls="num")


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]], numeric: Iterable[int] = ()) -> Html:
    """Rows of cells (plain values are escaped; Html is kept; a cell that is already a <td> is used as it is)."""
    right = set(numeric)
    head = join(tag("th", h, cls="num" if i in right else None) for i, h in enumerate(headers))
    body = []
    for r in rows:
        cells = [
            c if isinstance(c, Html) and c.startswith("<td") else tag("td", c, cls="num" if i in right else None)
            for i, c in enumerate(r)
        ]
        body.append(tag("tr", join(cells)))
    return tag("table", join([tag("thead", tag("tr", head)), tag("tbody", join(body))]))


def bar(fraction: float, cls: str = "") -> Html:
    """A horizontal bar as wide as `fraction` of its cell."""
    width = max(0.0, min(1.0, fraction)) * 100
    return tag("div", tag("div", "", cls=f"fill {cls}".strip(), style=f"width:{width:.2f}%"), cls="bar")


def tile(thumb: Thumb, lines: Sequence[Any], tone: str = "", badge: str | None = None, small: bool = False) -> Html:
    """One sample: its thumbnail (or a box saying why there is none) and a few lines under it; `small` for
    tiles inside table rows."""
    if thumb.data_uri:
        picture = void(
            "img",
            src=thumb.data_uri,
            width=thumb.width or None,
            height=thumb.height or None,
            alt=" ".join(str(x) for x in lines[:1]),
        )
    else:
        picture = tag("div", thumb.reason or "no image", cls="noimg")
    parts = [tag("div", picture, cls="frame")]
    if badge:
        parts.append(tag("span", badge, cls="badge"))
    parts.append(tag("figcaption", join(tag("div", line) for line in lines if line not in (None, ""))))
    return tag(
        "figure",
        join(parts),
        cls=" ".join(c for c in ("tile", tone, "small" if small else "") if c),
        title=" · ".join(str(line) for line in lines if line not in (None, "")),
    )


def verdict(row: Mapping[str, Any]) -> str:
    """'kept', or the reason the sample was dropped."""
    return "kept" if row.get("status") == KEPT else row.get("drop_reason") or "dropped"


def tone(row: Mapping[str, Any]) -> str:
    """The CSS class that colours a sample's tile by its status."""
    return "kept" if row.get("status") == KEPT else "dropped"


def labelled(label: str, body: Any, cls: str | None = None) -> Html:
    return tag("div", join([tag("div", label, cls="label"), body]), cls=cls)


def legend(entries: Sequence[tuple[str, str]]) -> Html:
    """Colour keys: (CSS colour, label) pairs."""
    keys = [tag("span", join([tag("i", "", style=f"background:{color}"), label])) for color, label in entries]
    return tag("div", join(keys), cls="legend")


def gallery(tiles: Sequence[Html], empty: str) -> Html:
    return tag("div", join(tiles), cls="gallery") if tiles else tag("p", empty, cls="muted")


def note_list(notes: Sequence[str]) -> Html:
    return tag("ul", join(tag("li", n) for n in notes), cls="notes") if notes else Html("")


def fmt_number(value: float | None) -> str:
    """Scores at a glance: 3 significant digits, no exponent for everyday magnitudes."""
    if value is None:
        return "-"
    if value != 0 and (abs(value) >= 1e6 or abs(value) < 1e-3):
        return f"{value:.2e}"
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}"


CSS = """
:root { --kept:#2f7d4a; --kept-soft:#cfe8d6; --drop:#c0392b; --ink:#1d2433; --muted:#6b7385;
  --line:#e3e6ee; --bg:#f6f7fb; --card:#fff; --accent:#3456d1; }
* { box-sizing:border-box; }
body { margin:0; font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;
  color:var(--ink); background:var(--bg); }
header.top { background:#1d2433; color:#fff; padding:22px 32px 14px; }
header.top h1 { margin:0 0 4px; font-size:22px; font-weight:600; }
header.top .sub { color:#c5cbe0; font-size:13px; word-break:break-all; }
nav { display:flex; flex-wrap:wrap; gap:6px; margin-top:12px; }
nav a { color:#dfe4ff; text-decoration:none; font-size:12.5px; padding:3px 9px; border:1px solid #46506b;
  border-radius:12px; }
nav a:hover { background:#2d3650; }
main { max-width:1320px; margin:0 auto; padding:18px 24px 40px; }
section.card { background:var(--card); border:1px solid var(--line); border-radius:10px; padding:16px 20px 18px;
  margin:0 0 16px; }
section.card > h2 { margin:0 0 10px; font-size:17px; }
h3 { font-size:14px; margin:16px 0 8px; }
.muted { color:var(--muted); }
.notes { margin:0 0 12px; padding:10px 14px 10px 30px; background:#fff7e0; border:1px solid #f0dca0;
  border-radius:8px; }
.stats { display:flex; flex-wrap:wrap; gap:12px; }
.stat { min-width:130px; padding:10px 14px; border:1px solid var(--line); border-radius:8px; background:#fafbfe; }
.stat .v { font-size:22px; font-weight:600; font-variant-numeric:tabular-nums; }
.stat .k { color:var(--muted); font-size:12px; text-transform:uppercase; letter-spacing:.04em; }
.stat.kept .v { color:var(--kept); } .stat.dropped .v { color:var(--drop); }
table { border-collapse:collapse; width:100%; font-variant-numeric:tabular-nums; }
th, td { text-align:left; padding:5px 10px; border-bottom:1px solid var(--line); vertical-align:middle; }
th { font-size:12px; color:var(--muted); font-weight:600; text-transform:uppercase; letter-spacing:.03em; }
td.num, th.num { text-align:right; white-space:nowrap; }
.bar { background:#eef0f5; border-radius:3px; height:12px; min-width:120px; }
.bar .fill { height:100%; border-radius:3px; background:var(--accent); }
.bar .fill.kept { background:var(--kept); } .bar .fill.dropped { background:var(--drop); }
.grid2 { display:grid; grid-template-columns:minmax(0,1fr) minmax(0,1fr); gap:18px; }
@media (max-width: 900px) { .grid2 { grid-template-columns:minmax(0,1fr); } }
.gallery { display:flex; flex-wrap:wrap; gap:10px; }
figure.tile { position:relative; margin:0; width:140px; background:#fafbfe; border:1px solid var(--line);
  border-radius:8px; padding:6px; }
figure.tile.kept { border-color:#9fcdb0; } figure.tile.dropped { border-color:#e6a59c; }
figure.tile.survivor { border:2px solid var(--kept); box-shadow:0 0 0 3px var(--kept-soft); }
.frame { width:128px; height:128px; display:flex; align-items:center; justify-content:center; background:#eceef4;
  border-radius:4px; overflow:hidden; }
.frame img { display:block; width:auto; height:auto; max-width:128px; max-height:128px; }
figure.tile.small { width:auto; display:inline-flex; align-items:center; gap:10px; padding:4px 10px 4px 4px; }
.small .frame, .small .noimg { width:82px; height:82px; flex:none; }
.small .frame img { max-width:82px; max-height:82px; } .small .noimg { font-size:9.5px; padding:4px; }
.noimg { width:128px; height:128px; display:flex; align-items:center; justify-content:center; text-align:center;
  padding:8px;
  font-size:11px; color:#8a5a00;
  background:repeating-linear-gradient(45deg,#fbf3dc,#fbf3dc 8px,#f6ead0 8px,#f6ead0 16px); }
figcaption { font-size:11.5px; margin-top:5px; line-height:1.3; overflow-wrap:anywhere; }
figcaption div:first-child { font-weight:600; }
.small figcaption { margin:0; max-width:240px; } .small figcaption div { font-weight:400; }
.badge { position:absolute; top:10px; left:10px; background:var(--kept); color:#fff; font-size:10.5px;
  font-weight:600; padding:1px 6px; border-radius:8px; }
.block { border-top:1px solid var(--line); padding:12px 0 6px; }
.block h3 { margin:0 0 8px; font-weight:500; }
.block h3 code { font:600 15px ui-monospace,SFMono-Regular,Menlo,Consolas,"DejaVu Sans Mono",monospace;
  color:#23305e; }
.caprow { display:grid; grid-template-columns:140px minmax(0,1fr) minmax(0,1fr) 220px; gap:14px;
  border-top:1px solid var(--line); padding:10px 0; }
.caprow .label { font-size:11px; color:var(--muted); text-transform:uppercase; letter-spacing:.04em; }
.caprow .before { color:#7a3b33; } .caprow .after { color:#1f5a35; }
.caprow ol { margin:4px 0 0; padding-left:18px; font-size:12.5px; }
.scores { font-size:12px; color:var(--muted); }
svg { display:block; max-width:100%; height:auto; }
svg text { font:11px system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif; fill:#4a5264; }
svg .axis { stroke:#9aa1b2; stroke-width:1; } svg .gridline { stroke:#eceef4; stroke-width:1; }
svg .kept { fill:var(--kept); } svg .dropped { fill:var(--drop); } svg .neutral { fill:var(--accent); }
svg .marker { stroke:#1d2433; stroke-width:1.5; stroke-dasharray:5 3; } svg .marker-label { fill:#1d2433;
  font-weight:600; }
.legend { display:flex; gap:14px; font-size:12px; color:var(--muted); margin:4px 0 8px; }
.legend i { display:inline-block; width:10px; height:10px; border-radius:2px; margin-right:5px; vertical-align:-1px; }
.aspect { display:inline-block; background:#c9d2f2; border:1px solid #8fa0dd; vertical-align:middle; }
.samples img { max-width:100%; border:1px solid var(--line); border-radius:6px; }
footer { text-align:center; color:var(--muted); font-size:12px; padding:10px 0 30px; }
"""

# Records load errors (capture phase also sees failed <img> loads) and, once everything has loaded, whether
# every image decoded. A headless browser's --dump-dom shows the result in #report-status.
STATUS_SCRIPT = """
(function () {
  var errors = [];
  window.addEventListener('error', function (e) {
    errors.push(String(e.message || ('failed to load ' + (e.target && e.target.tagName))));
  }, true);
  window.addEventListener('load', function () {
    var imgs = Array.prototype.slice.call(document.images);
    var broken = imgs.filter(function (i) { return !(i.complete && i.naturalWidth > 0); }).length;
    var s = document.getElementById('report-status');
    s.setAttribute('data-images', imgs.length);
    s.setAttribute('data-broken', broken);
    s.setAttribute('data-errors', errors.join(' | '));
    s.textContent = (broken || errors.length)
      ? ('problems: ' + broken + ' images did not decode, ' + errors.length + ' errors')
      : ('ok: ' + imgs.length + ' images');
  });
})();
"""


def page(title: str, subtitle: str, sections: Sequence[Section]) -> str:
    nav = join(tag("a", s.title, href=f"#{s.id}") for s in sections)
    cards = join(tag("section", join([tag("h2", s.title), s.body]), cls="card", id=s.id) for s in sections)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{CSS}</style><script>{STATUS_SCRIPT}</script></head><body>"
        + tag("header", join([tag("h1", title), tag("div", subtitle, cls="sub"), tag("nav", nav)]), cls="top")
        + tag("main", cards)
        + tag("footer", join(["page check: ", tag("span", "pending", id="report-status")]))
        + "</body></html>\n"
    )
