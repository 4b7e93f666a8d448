"""Charts as inline SVG: a stacked histogram with threshold markers and a line chart. No plotting library:
the report stays one dependency-free file whose charts are crisp at any zoom."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

from manifests.report_html import Html, esc, fmt_number, join, tag

PALETTE = ["#3456d1", "#c0392b", "#2f7d4a", "#b7791f", "#6b46c1", "#0f766e", "#9d174d", "#4b5563"]
LEFT, RIGHT, TOP, BOTTOM = 64, 16, 24, 30
MAX_POINTS = 600  # per line: more than a chart's width in pixels only makes the file bigger


@dataclass(frozen=True)
class Marker:
    """A vertical line at `value` (a threshold), labelled at the top."""

    value: float
    label: str


class _Scale:
    def __init__(self, lo: float, hi: float, start: float, end: float):
        self.lo, self.hi = lo, hi if hi > lo else lo + 1.0
        self.start, self.end = start, end

    def __call__(self, v: float) -> float:
        t = (min(max(v, self.lo), self.hi) - self.lo) / (self.hi - self.lo)
        return self.start + t * (self.end - self.start)


def _frame(
    width: int, height: int, x: _Scale, y: _Scale, x_ticks: Sequence[float], y_ticks: Sequence[float]
) -> list[str]:
    parts = []
    for v in y_ticks:
        py = y(v)
        parts.append(f'<line class="gridline" x1="{LEFT}" x2="{width - RIGHT}" y1="{py:.1f}" y2="{py:.1f}"/>')
        parts.append(f'<text x="{LEFT - 6}" y="{py + 4:.1f}" text-anchor="end">{esc(fmt_number(v))}</text>')
    base = height - BOTTOM
    parts.append(f'<line class="axis" x1="{LEFT}" x2="{width - RIGHT}" y1="{base}" y2="{base}"/>')
    for v in x_ticks:
        px = x(v)
        parts.append(f'<line class="axis" x1="{px:.1f}" x2="{px:.1f}" y1="{base}" y2="{base + 4}"/>')
        parts.append(f'<text x="{px:.1f}" y="{base + 16}" text-anchor="middle">{esc(fmt_number(v))}</text>')
    return parts


def _even_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    return [lo + (hi - lo) * i / (n - 1) for i in range(n)] if hi > lo else [lo]


def _svg(width: int, height: int, title: str, parts: list[str]) -> Html:
    return Html(
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" '
        f'height="{height}" role="img"><title>{esc(title)}</title>{"".join(parts)}</svg>'
    )


def histogram_svg(
    edges: Sequence[float],
    layers: Sequence[tuple[str, Sequence[int]]],
    markers: Sequence[Marker] = (),
    title: str = "",
    width: int = 600,
    height: int = 230,
) -> Html:
    """Bars over `edges` (len = bins + 1); `layers` are (css class, counts) stacked from the bottom up."""
    totals = [sum(c[i] for _, c in layers) for i in range(len(edges) - 1)]
    top = max(totals, default=0) or 1
    x = _Scale(edges[0], edges[-1], LEFT, width - RIGHT)
    y = _Scale(0, top, height - BOTTOM, TOP)
    y_ticks = [0, top] if top < 4 else [0, top // 2, top]  # counts: whole numbers only
    parts = _frame(width, height, x, y, _even_ticks(edges[0], edges[-1]), y_ticks)
    for i in range(len(edges) - 1):
        x0, x1 = x(edges[i]), x(edges[i + 1])
        below = 0
        for cls, counts in layers:
            if counts[i]:
                y0, y1 = y(below + counts[i]), y(below)
                tip = f"{cls}: {counts[i]} in [{fmt_number(edges[i])}, {fmt_number(edges[i + 1])})"
                parts.append(
                    f'<rect class="{cls}" x="{x0 + 0.5:.1f}" y="{y0:.1f}" width="{max(x1 - x0 - 1, 0.5):.1f}" '
                    f'height="{y1 - y0:.1f}"><title>{esc(tip)}</title></rect>'
                )
            below += counts[i]
    for m in markers:
        px = x(m.value)
        label = m.label
        if m.value < edges[0] or m.value > edges[-1]:  # off the chart: an arrow at its edge, no line
            label = f"← {label}" if m.value < edges[0] else f"{label} →"
        else:
            parts.append(f'<line class="marker" x1="{px:.1f}" x2="{px:.1f}" y1="{TOP - 8}" y2="{height - BOTTOM}"/>')
        anchor, dx = ("end", -4) if px > (LEFT + width - RIGHT) / 2 else ("start", 4)
        text = f'<text class="marker-label" x="{px + dx:.1f}" y="{TOP - 10}" text-anchor="{anchor}">{esc(label)}</text>'
        parts.append(text)
    return _svg(width, height, title, parts)


def _thin(points: Sequence[tuple[float, float]]) -> Sequence[tuple[float, float]]:
    step = max(1, len(points) // MAX_POINTS)
    return points[::step] if step > 1 else points


def line_chart_svg(
    series: Mapping[str, Sequence[tuple[float, float]]], title: str = "", width: int = 600, height: int = 230
) -> Html:
    """One line per series of (x, y) points, with a legend under the chart."""
    points = [p for s in series.values() for p in s]
    if not points:
        return Html("")
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    pad = (max(ys) - min(ys)) * 0.05 or abs(max(ys)) * 0.05 or 1.0
    x = _Scale(min(xs), max(xs), LEFT, width - RIGHT)
    y = _Scale(min(ys) - pad, max(ys) + pad, height - BOTTOM, TOP)
    parts = _frame(width, height, x, y, _even_ticks(x.lo, x.hi), _even_ticks(y.lo, y.hi, 4))
    legend = []
    for i, (name, pts) in enumerate(series.items()):
        color = PALETTE[i % len(PALETTE)]
        path = " ".join(f"{'M' if j == 0 else 'L'}{x(px):.1f},{y(py):.1f}" for j, (px, py) in enumerate(_thin(pts)))
        parts.append(
            f'<path d="{path}" fill="none" stroke="{color}" stroke-width="1.6"><title>{esc(name)}</title></path>'
        )
        legend.append(tag("span", join([tag("i", "", style=f"background:{color}"), name])))
    return join([_svg(width, height, title, parts), tag("div", join(legend), cls="legend")])
