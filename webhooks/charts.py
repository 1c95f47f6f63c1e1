"""The Reports page's charts: SVG drawn on the server by pygal, from a report's figures.

Each chart is served as an image from a same-origin route (``<img src>``), so the page's strict
policy (no inline script or style) holds: pygal's own stylesheet lives inside the SVG, which a
browser renders as an image without ever running script. pygal's tooltip script is left out
of the drawing, which is a picture only; every chart has a text alternative and a table of
its figures on the page.
"""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from datetime import date

import pygal
from pygal.style import Style

from callflow.records.reports import WEEKDAYS, HelplineReport

STYLE = Style(background="#ffffff", plot_background="#ffffff", foreground="#1f2328",
              foreground_strong="#1f2328", foreground_subtle="#6e7781",
              font_family="system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif",
              colors=("#1a7f37", "#bf8700", "#cf222e", "#57606a", "#0969da"),
              title_font_size=16, label_font_size=11, major_label_font_size=11,
              legend_font_size=12)
VOLUME_SERIES = (("answered", "Answered"), ("abandoned", "Abandoned"),
                 ("unanswered", "Unanswered"), ("out_of_hours", "Out of hours"))
SVG_NS = "http://www.w3.org/2000/svg"

# pygal appends a legacy import hook to ``sys.meta_path`` for its map plugins (unused here),
# which makes every import of a missing module warn (ImportWarning, an error under the tests'
# filters): it is taken out again.
sys.meta_path[:] = [finder for finder in sys.meta_path
                    if type(finder).__module__ != "pygal"]
KINDS = ("volume", "heat", "service")


def _config() -> dict:
    return {"style": STYLE, "js": [], "width": 800, "height": 360, "disable_xml_declaration":
            True, "legend_at_bottom": True, "print_values": False, "show_minor_x_labels": True}


def _day_label(day: str) -> str:
    return date.fromisoformat(day).strftime("%-d %b")


def _thin(labels: list[str], most: int = 16) -> list[str]:
    """Every n-th label shown, so a long period stays readable."""
    step = max(1, -(-len(labels) // most))
    return labels[::step]


def volume(report: HelplineReport) -> pygal.Graph:
    chart = pygal.StackedBar(**_config(), title="Calls each day, by outcome",
                             x_title="Day", y_title="Calls")
    labels = [_day_label(d["day"]) for d in report.daily]
    chart.x_labels = labels
    chart.x_labels_major = _thin(labels)
    for name, label in VOLUME_SERIES:
        chart.add(label, [d[name] for d in report.daily])
    return chart


def heat(report: HelplineReport) -> pygal.Graph:
    """Calls offered by hour of day and day of week, as a punch card (a dot per cell, its
    size the number of calls): pygal's heat map."""
    chart = pygal.Dot(**{**_config(), "height": 320, "legend_at_bottom": False},
                      title="Calls offered by hour of day and day of week",
                      x_title="Hour of day (helpline time)", show_legend=True)
    chart.x_labels = [f"{hour:02d}" for hour in range(24)]
    for day, values in zip(WEEKDAYS, report.heat, strict=True):
        chart.add(day, values)
    return chart


def service(report: HelplineReport) -> pygal.Graph:
    chart = pygal.Line(**_config(), title="Service level and average wait, each day",
                       x_title="Day", y_title="Answered within 20 s (%)", range=(0, 100),
                       allow_interruptions=True)
    labels = [_day_label(d["day"]) for d in report.daily]
    chart.x_labels = labels
    chart.x_labels_major = _thin(labels)
    chart.add("Answered within 20 s (%)", [d["service_level_20"] for d in report.daily])
    waits = [d["average_wait"] for d in report.daily]
    # pygal cannot scale a second axis with no value on it: a period with no answer has none.
    chart.add("Average wait to answer (s)", waits,
              secondary=any(w is not None for w in waits))
    return chart


DRAW = {"volume": volume, "heat": heat, "service": service}


def svg(kind: str, report: HelplineReport) -> bytes:
    """The chart as an SVG document, with pygal's script taken out (it is a picture)."""
    tree = DRAW[kind](report).render_tree()
    for parent in list(tree.iter()):
        for child in list(parent):
            if child.tag in ("script", f"{{{SVG_NS}}}script"):
                parent.remove(child)
    return b'<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(tree)


def describe(kind: str, report: HelplineReport) -> str:
    """A chart's text alternative: what it shows, in a sentence of its figures."""
    total = report.total
    if kind == "volume":
        return (f"Stacked bars of calls each day: {total['answered']} answered, "
                f"{total['abandoned']} abandoned, {total['unanswered']} unanswered and "
                f"{total['out_of_hours'] + total['closure']} out of hours in the period. "
                "The table below gives each day's figures.")
    if kind == "heat":
        cells = [(sum(values), WEEKDAYS[d]) for d, values in enumerate(report.heat)]
        busiest = max(cells)[1] if any(n for n, _ in cells) else None
        hours = [sum(report.heat[d][h] for d in range(7)) for h in range(24)]
        peak = max(range(24), key=lambda h: hours[h]) if any(hours) else None
        if busiest is None:
            return "Calls offered by hour of day and day of week: no calls in the period."
        return (f"Dots sized by calls offered, by hour of day and day of week. The busiest "
                f"day was {busiest} and the busiest hour {peak:02d}:00. The table below gives "
                "every figure.")
    sl = total["service_level_20"]
    wait = total["average_wait"]
    return ("A line of the share of calls answered within 20 seconds each day, and of the "
            "average wait to answer: over the period "
            + (f"{sl}% within 20 s" if sl is not None else "no call was answered from the "
               "waiting line")
            + (f", an average wait of {wait} s." if wait is not None else ".")
            + " The table below gives each day's figures.")
