"""Taps per facility per day as an inline SVG, drawn on the server: no script, no font or
library fetched from anywhere (the fleet page is served on a closed network).

Stacked bars, one per day, one colour per facility (Okabe–Ito, told apart by people with
colour-blind vision too), a legend, and a `<title>` on every bar segment so a pointer
shows the exact number. The numbers are also in a table under the plot for screen readers.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from html import escape

# Okabe & Ito (2008), without black (the axis colour) and yellow (unreadable on white).
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#999999")
WIDTH, HEIGHT = 720, 240
LEFT, RIGHT, TOP, BOTTOM = 44, 8, 10, 28


@dataclass(frozen=True)
class DayCount:
    day: dt.date
    facility: str
    taps: int


def nice_axis(value: int) -> tuple[int, int]:
    """The top of the y axis (1, 2 or 5 times a power of ten, at least `value`) and how
    many equal steps divide it into round numbers (5 of 20 for 100, 4 of 50 for 200...)."""
    power = 1
    while True:
        for m, steps in ((1, 5), (2, 4), (5, 5)):
            if m * power >= value:
                top = m * power
                return top, steps if top >= steps else top
        power *= 10


def facilities_of(counts: list[DayCount]) -> list[str]:
    """Facilities, busiest first (they get the strongest colours); past the palette's
    length the quietest share the last colour under one legend entry."""
    totals: dict[str, int] = {}
    for c in counts:
        totals[c.facility] = totals.get(c.facility, 0) + c.taps
    return sorted(totals, key=lambda f: (-totals[f], f))


def taps_svg(counts: list[DayCount], days: list[dt.date], *, title: str, others: str,
             taps_word: str) -> str:
    """The plot. `title` names it for assistive technology; `others` labels the facilities
    past the palette; `taps_word` ("{n} taps") goes into each bar's tooltip."""
    order = facilities_of(counts)
    shown = order[:len(PALETTE) - 1] if len(order) > len(PALETTE) else order
    colour = {f: PALETTE[i] for i, f in enumerate(shown)}
    by_day: dict[dt.date, dict[str, int]] = {d: {} for d in days}
    for c in counts:
        if c.day in by_day:
            key = c.facility if c.facility in colour else others
            by_day[c.day][key] = by_day[c.day].get(key, 0) + c.taps
    if len(order) > len(shown):
        colour[others] = PALETTE[-1]
    top, steps = nice_axis(max([sum(v.values()) for v in by_day.values()] + [1]))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    slot = plot_w / max(len(days), 1)
    bar = max(slot * 0.7, 1.0)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" '
           f'role="img" aria-label="{escape(title)}" class="chart">',
           f"<title>{escape(title)}</title>"]
    for i in range(steps + 1):  # grid lines and y labels at round numbers
        value = top * i // steps
        y = TOP + plot_h - plot_h * i / steps
        out.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" '
                   f'stroke="#ddd"/>')
        out.append(f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" '
                   f'font-size="11">{value}</text>')
    label_every = 1 if len(days) <= 14 else 2
    for n, day in enumerate(days):
        x = LEFT + n * slot + (slot - bar) / 2
        y = TOP + plot_h
        for facility in [f for f in colour if f in by_day[day]]:
            taps = by_day[day][facility]
            h = plot_h * taps / top
            y -= h
            tip = f"{day:%m/%d} {facility}: {taps_word.format(n=taps)}"
            out.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" height="{h:.1f}" '
                       f'fill="{colour[facility]}"><title>{escape(tip)}</title></rect>')
        if n % label_every == 0:
            out.append(f'<text x="{x + bar / 2:.1f}" y="{HEIGHT - 10}" text-anchor="middle" '
                       f'font-size="11">{day.month}/{day.day}</text>')
    out.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{TOP + plot_h}" '
               f'y2="{TOP + plot_h}" stroke="#333"/>')
    out.append("</svg>")
    legend = "".join(
        f'<li><span class="swatch" style="background:{c}"></span>{escape(f)}</li>'
        for f, c in colour.items())
    return "\n".join(out) + f'\n<ul class="legend">{legend}</ul>'
