"""The per-node timeline as inline SVG: no script, nothing loaded, so the page's CSP stays as it is.

Each node is a row: its preparation and release task as thin bars on top, its tasks below, on one time
axis from the job's creation to its end, so idle gaps show as empty space. Up to task_view.MAX_BARS tasks
are drawn one by one (overlapping tasks of a multi-slot node in lanes, each with a tooltip); a bigger job
is drawn per node and time bucket, darker where more task time fell, with failures marked, so 100,000
tasks stay a picture of a few hundred rectangles rather than bars thinner than a pixel.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from html import escape
from typing import Any

from shared.pure import task_view as tv
from shared.pure.timefmt import parse_time, show_duration, show_time

PLOT_WIDTH = 960
LABEL_WIDTH = 190
AXIS_HEIGHT = 28
LANE_HEIGHT = 9
MAX_LANES = 8
MAX_ROWS = 200  # nodes drawn; a pool of more is summed up under the picture
COLORS = {tv.OK: "#4a7fc1", tv.FAILED: "#c62828", tv.RUNNING: "#f39c12", "prep": "#7e57c2", "release": "#26a69a"}


def _x(seconds: float, span: float) -> float:
    return LABEL_WIDTH + max(0.0, min(seconds, span)) / span * PLOT_WIDTH


def _rect(x0: float, x1: float, y: float, height: float, color: str, tip: str = "", opacity: float = 1.0) -> str:
    width = max(x1 - x0, 1.0)  # never thinner than a pixel
    shade = f' fill-opacity="{opacity:.2f}"' if opacity < 1 else ""
    title = f"<title>{escape(tip)}</title>" if tip else ""
    return (f'<rect x="{x0:.1f}" y="{y:.1f}" width="{width:.1f}" height="{height:.1f}" fill="{color}"{shade}>'
            f"{title}</rect>")


def _lanes(bars: list[tv.Bar]) -> list[tuple[tv.Bar, int]]:
    """Overlapping tasks (a node with several slots) in lanes: each bar in the first lane free by its start."""
    ends: list[float] = []
    out = []
    for bar in sorted(bars, key=lambda b: (b.start, b.end)):
        lane = next((i for i, end in enumerate(ends) if end <= bar.start), None)
        if lane is None:
            lane = min(len(ends), MAX_LANES - 1)
            if lane == len(ends):
                ends.append(bar.end)
        ends[lane] = max(ends[lane], bar.end)
        out.append((bar, lane))
    return out


def _run_bar(row: Mapping[str, Any], prefix: str, origin: float, span: float, y: float) -> str:
    start, end = parse_time(row.get(f"{prefix}Start")), parse_time(row.get(f"{prefix}End"))
    if start is None:
        return ""
    first = start.timestamp() - origin
    last = (end.timestamp() - origin) if end else span
    name = "preparation" if prefix == "prep" else "release"
    failed = row.get(f"{prefix}Result") == "failure"
    tip = (f"{name} task on {row.get('nodeId')}: {show_duration(last - first)}, exit {row.get(f'{prefix}ExitCode')}"
           + (" (failed)" if failed else ""))
    return _rect(_x(first, span), _x(last, span), y, 3, COLORS[tv.FAILED] if failed else COLORS[prefix], tip)


def _axis(origin: float, span: float, height: float) -> str:
    parts = []
    for i in range(6):
        seconds = span * i / 5
        x = _x(seconds, span)
        label = show_time(_at(origin + seconds)) if i == 0 else f"+{show_duration(seconds)}"
        anchor = "start" if i == 0 else "end" if i == 5 else "middle"
        parts.append(f'<line x1="{x:.1f}" y1="{AXIS_HEIGHT - 6}" x2="{x:.1f}" y2="{height:.1f}" stroke="#ddd"/>'
                     f'<text x="{x:.1f}" y="{AXIS_HEIGHT - 10}" font-size="11" text-anchor="{anchor}" '
                     f'fill="#555">{escape(label)}</text>')
    return "".join(parts)


def _at(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat()


def render_timeline(view: tv.TaskView, nodes: list[Mapping[str, Any]]) -> str:
    """The SVG (and a line saying how it is drawn)."""
    rows_by_id = {str(n.get("nodeId")): n for n in nodes}
    node_ids = sorted(set(rows_by_id) | set(view.buckets))
    shown, hidden = node_ids[:MAX_ROWS], len(node_ids) - MAX_ROWS
    per_node: dict[str, list[tv.Bar]] = {}
    for bar in view.bars or []:
        per_node.setdefault(bar.node_id, []).append(bar)
    body, y = [], float(AXIS_HEIGHT)
    for node_id in shown:
        row = rows_by_id.get(node_id, {"nodeId": node_id})
        lanes = _lanes(per_node.get(node_id, [])) if view.bars is not None else []
        lane_count = max([lane for _, lane in lanes], default=0) + 1
        height = 8 + lane_count * LANE_HEIGHT
        label = node_id if len(node_id) <= 26 else node_id[:12] + "…" + node_id[-12:]
        body.append(f'<text x="4" y="{y + height / 2 + 4:.1f}" font-size="11" fill="#222">'
                    f"<title>{escape(node_id)}</title>{escape(label)}</text>")
        body.append(f'<rect x="{LABEL_WIDTH}" y="{y:.1f}" width="{PLOT_WIDTH}" height="{height - 1:.1f}" '
                    'fill="#f6f6f6"/>')
        body.append(_run_bar(row, "prep", view.origin, view.span, y + 1))
        body.append(_run_bar(row, "release", view.origin, view.span, y + 1))
        top = y + 6
        if view.bars is not None:
            for bar, lane in lanes:
                tip = (f"{bar.task_id} on {node_id}: {show_duration(bar.end - bar.start)}"
                       + (", still running when the job ended" if bar.kind == tv.RUNNING
                          else f", exit {bar.exit_code}"))
                body.append(_rect(_x(bar.start, view.span), _x(bar.end, view.span), top + lane * LANE_HEIGHT,
                                  LANE_HEIGHT - 2, COLORS[bar.kind], tip))
        else:
            body.append(_buckets(view, view.buckets.get(node_id), top, node_id))
        y += height
    total_height = y + 4
    ran = view.total - view.never_started_total
    how = (f"each task a bar ({ran} tasks ran)" if view.bars is not None else
           f"{ran} tasks summed per node in columns of {show_duration(view.bucket_seconds)}: darker where "
           "more task time fell, a red mark where tasks failed")
    svg = (f'<svg xmlns="http://www.w3.org/2000/svg" role="img" aria-label="timeline of the job per node" '
           f'width="{LABEL_WIDTH + PLOT_WIDTH + 10}" height="{total_height:.0f}" '
           f'viewBox="0 0 {LABEL_WIDTH + PLOT_WIDTH + 10} {total_height:.0f}">'
           f"{_axis(view.origin, view.span, total_height)}{''.join(body)}</svg>")
    more = f'<p class="muted">{hidden} more nodes not drawn.</p>' if hidden > 0 else ""
    return (f'<p class="muted">Drawn with {escape(how)}; from {escape(show_time(_at(view.origin)))} over '
            f"{escape(show_duration(view.span))}.</p>" + _legend() + f'<div class="timeline">{svg}</div>' + more)


def _buckets(view: tv.TaskView, node: tv.NodeBuckets | None, top: float, node_id: str) -> str:
    if node is None:
        return ""
    busy = node.busy()
    peak = max(busy) or 1.0
    step = PLOT_WIDTH / tv.BUCKETS
    out = []
    for b, amount in enumerate(busy):
        x = LABEL_WIDTH + b * step
        if amount > 0:
            tip = (f"{node_id}, {show_time(_at(view.origin + b * view.bucket_seconds))}: "
                   f"{show_duration(amount * view.bucket_seconds)} of task time"
                   + (f", {node.failed[b]} failed" if node.failed[b] else ""))
            out.append(_rect(x, x + step, top, LANE_HEIGHT - 2, COLORS[tv.OK], tip, 0.2 + 0.8 * amount / peak))
        if node.failed[b]:
            out.append(_rect(x, x + step, top + LANE_HEIGHT - 2, 3, COLORS[tv.FAILED]))
    return "".join(out)


def _legend() -> str:
    items = [("task succeeded", tv.OK), ("task failed", tv.FAILED), ("still running at the end", tv.RUNNING),
             ("preparation", "prep"), ("release", "release")]
    return '<p class="legend">' + " ".join(
        f'<span class="swatch" style="background:{COLORS[key]}"></span>{escape(text)}' for text, key in items) + "</p>"
