#!/usr/bin/env python3
"""Plot switchboard-bench results as an SVG chart, with nothing but the standard library.

Reads the JSON lines the tool prints (files, or stdin when none or "-"; other lines are ignored)
and draws two panels sharing the x axis: throughput on top (deliveries/s for fanout and
broadcast, connections/s for connect, bytes per connection for idle) and p99 latency below
(end-to-end for fanout and broadcast, handshake for connect and idle). One line per series: a
series is the records sharing a scenario and a --label.

The x axis is the first record field that differs between the records (for fanout: subscribers,
rooms, publishers, rate, size, then connections), or the one named with --x.

    switchboard-bench fanout --subscribers 100 --label main | tee -a runs.jsonl
    switchboard-bench fanout --subscribers 1000 --label main | tee -a runs.jsonl
    scripts/plot_bench.py runs.jsonl -o fanout.svg
"""

import argparse
import json
import math
import sys
from html import escape

# (throughput field, its title, latency field, its title) per scenario; a path is a list of keys.
METRICS = {
    "fanout": (["deliveries_per_sec"], "deliveries/s", ["latency_us", "p99"], "p99 latency (µs)"),
    "broadcast": (["deliveries_per_sec"], "deliveries/s", ["latency_us", "p99"], "p99 latency (µs)"),
    "connect": (["connections_per_sec"], "connections/s", ["handshake_us", "p99"], "p99 handshake (µs)"),
    "idle": (["bytes_per_connection"], "server bytes/connection", ["handshake_us", "p99"], "p99 handshake (µs)"),
}
X_CANDIDATES = ["subscribers", "rooms", "publishers", "rate", "size", "connections", "concurrency"]
COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"]
WIDTH, PANEL_H, MARGIN_L, MARGIN_R, MARGIN_T, GAP, MARGIN_B = 760, 250, 90, 180, 50, 60, 50


def read_records(paths):
    records = []
    streams = [sys.stdin] if not paths or paths == ["-"] else [open(p, encoding="utf-8") for p in paths]
    for stream in streams:
        for line in stream:
            line = line.strip()
            if not line.startswith("{"):
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if record.get("scenario") in METRICS:
                records.append(record)
    return records


def dig(record, path):
    value = record
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def pick_x(records, wanted):
    if wanted:
        return wanted
    for field in X_CANDIDATES:
        values = {dig(r, [field]) for r in records}
        if len(values) > 1 and None not in values:
            return field
    return "connections"


def nice_ticks(lo, hi, count=5):
    if hi <= lo:
        hi = lo + 1 if lo == 0 else lo * 1.1 + 1e-9
    raw = (hi - lo) / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    start = math.floor(lo / step) * step
    ticks, t = [], start
    while t <= hi + step * 1e-9:
        ticks.append(round(t, 10))
        t += step
    if ticks[-1] < hi:
        ticks.append(round(t, 10))
    return ticks


def fmt(v):
    if abs(v) >= 1e6:
        return f"{v / 1e6:g}M"
    if abs(v) >= 1e3:
        return f"{v / 1e3:g}k"
    return f"{v:g}"


class Scale:
    def __init__(self, lo, hi, a, b, log=False):
        self.log = log and lo > 0
        f = math.log10 if self.log else (lambda v: v)
        self.lo, self.hi, self.a, self.b, self.f = f(lo), f(hi), a, b, f
        if self.hi == self.lo:
            self.hi = self.lo + 1

    def __call__(self, v):
        return self.a + (self.f(v) - self.lo) / (self.hi - self.lo) * (self.b - self.a)


def x_ticks(xs, log):
    lo, hi = min(xs), max(xs)
    if log and lo > 0:
        return [10 ** e for e in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1)]
    return nice_ticks(0 if lo >= 0 and lo < (hi - lo) else lo, hi)


def panel(out, series, top, y_title, x_scale, xt, index, x_field, draw_x_labels):
    ys = [y for s in series for _, y in s["points"][index] if y is not None]
    if not ys:
        out.append(f'<text x="{MARGIN_L}" y="{top + PANEL_H / 2}" class="note">no {escape(y_title)} in these records</text>')
        return
    yt = nice_ticks(0, max(ys))
    y_scale = Scale(yt[0], yt[-1], top + PANEL_H, top)
    left, right = MARGIN_L, WIDTH - MARGIN_R
    out.append(f'<rect x="{left}" y="{top}" width="{right - left}" height="{PANEL_H}" class="frame"/>')
    for t in yt:
        y = y_scale(t)
        out.append(f'<line x1="{left}" x2="{right}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>')
        out.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{fmt(t)}</text>')
    for t in xt:
        x = x_scale(t)
        out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{top + PANEL_H}" class="grid"/>')
        if draw_x_labels:
            out.append(f'<text x="{x:.1f}" y="{top + PANEL_H + 16}" text-anchor="middle">{fmt(t)}</text>')
    if draw_x_labels:
        out.append(f'<text x="{(left + right) / 2}" y="{top + PANEL_H + 36}" text-anchor="middle" class="axis">{escape(x_field)}</text>')
    cy = top + PANEL_H / 2
    out.append(f'<text transform="translate({left - 64},{cy}) rotate(-90)" text-anchor="middle" class="axis">{escape(y_title)}</text>')
    for s in series:
        points = [(x_scale(x), y_scale(y)) for x, y in s["points"][index] if y is not None]
        if len(points) > 1:
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
            out.append(f'<polyline points="{path}" fill="none" stroke="{s["color"]}" stroke-width="2"/>')
        for x, y in points:
            out.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3.5" fill="{s["color"]}"/>')


def render(records, x_field, log_x, title):
    groups = {}
    for r in records:
        x = dig(r, [x_field])
        if x is None:
            continue
        key = (r["scenario"], r.get("label") or "")
        groups.setdefault(key, []).append(r)
    if not groups:
        raise SystemExit(f"no record has a numeric {x_field!r}")
    series, metric_titles = [], None
    for i, ((scenario, label), rs) in enumerate(sorted(groups.items())):
        through, t_title, latency, l_title = METRICS[scenario]
        metric_titles = metric_titles or (t_title, l_title)
        rs.sort(key=lambda r: dig(r, [x_field]))
        series.append({
            "name": f"{scenario} {label}".strip(),
            "color": COLORS[i % len(COLORS)],
            "points": [
                [(dig(r, [x_field]), dig(r, through)) for r in rs],
                [(dig(r, [x_field]), dig(r, latency)) for r in rs],
            ],
        })
    xs = [x for s in series for x, _ in s["points"][0]]
    xt = x_ticks(xs, log_x)
    x_scale = Scale(min(xt[0], min(xs)), max(xt[-1], max(xs)), MARGIN_L, WIDTH - MARGIN_R, log_x)
    height = MARGIN_T + 2 * PANEL_H + GAP + MARGIN_B
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">',
        "<style>.frame{fill:none;stroke:#444}.grid{stroke:#ddd}.axis{font-size:13px}.note{fill:#888}"
        ".title{font-size:16px;font-weight:bold}</style>",
        f'<rect width="{WIDTH}" height="{height}" fill="white"/>',
        f'<text x="{MARGIN_L}" y="28" class="title">{escape(title or "switchboard-bench")}</text>',
    ]
    panel(out, series, MARGIN_T, metric_titles[0], x_scale, xt, 0, x_field, False)
    panel(out, series, MARGIN_T + PANEL_H + GAP, metric_titles[1], x_scale, xt, 1, x_field, True)
    for i, s in enumerate(series):
        y = MARGIN_T + 10 + i * 20
        x = WIDTH - MARGIN_R + 16
        out.append(f'<line x1="{x}" x2="{x + 22}" y1="{y}" y2="{y}" stroke="{s["color"]}" stroke-width="3"/>')
        out.append(f'<text x="{x + 28}" y="{y + 4}">{escape(s["name"])}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("inputs", nargs="*", help="files of JSON lines (default: stdin)")
    parser.add_argument("-o", "--output", default="-", help="SVG file to write (default: stdout)")
    parser.add_argument("--x", help="record field for the x axis (default: the first that varies)")
    parser.add_argument("--scenario", help="only records of this scenario")
    parser.add_argument("--log-x", action="store_true", help="logarithmic x axis")
    parser.add_argument("--title", help="chart title")
    args = parser.parse_args()
    records = read_records(args.inputs)
    if args.scenario:
        records = [r for r in records if r["scenario"] == args.scenario]
    if not records:
        raise SystemExit("no switchboard-bench records in the input")
    svg = render(records, pick_x(records, args.x), args.log_x, args.title)
    if args.output == "-":
        sys.stdout.write(svg)
    else:
        with open(args.output, "w", encoding="utf-8") as f:
            f.write(svg)


if __name__ == "__main__":
    main()
