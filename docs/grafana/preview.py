#!/usr/bin/env python3
"""A picture of the Grafana dashboard without Grafana.

Reads the dashboard JSON, runs every panel's queries against a Prometheus server's HTTP API
(/api/v1/query_range) over the last N minutes, and writes one self-contained HTML page that lays the panels out
by their gridPos, with inline SVG line charts and stat values in a dark theme close to Grafana's. A headless
browser then takes a screenshot of it (see preview.sh).

    python3 preview.py --prometheus http://127.0.0.1:9090 --minutes 10 --out /tmp/dashboard.html
    python3 preview.py --check          # validate the dashboard only: JSON shape, layout, metric names

Template variables become `.*`, `$__rate_interval` becomes --rate-interval. Standard output gets the window
size the page needs (e.g. `1600,2290`), for `chromium --window-size`. Python 3.11 standard library only.
"""

from __future__ import annotations

import argparse
import datetime as dt
import html
import json
import math
import re
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent

# The service's metrics (docs/metrics.md): name -> type. Histograms are queried as _bucket, _sum and _count.
CATALOG = {
    "grpc_server_started_total": "counter",
    "grpc_server_handled_total": "counter",
    "grpc_server_handling_seconds": "histogram",
    "customer_context_rpc_in_flight": "gauge",
    "customer_context_rpc_refused_total": "counter",
    "customer_context_watch_streams": "gauge",
    "customer_context_watch_subscriptions": "gauge",
    "customer_context_watch_events_total": "counter",
    "customer_context_watch_resyncs_total": "counter",
    "customer_context_presence_participants": "gauge",
    "customer_context_change_feed_lag": "gauge",
    "customer_context_listener_reconnects_total": "counter",
    "customer_context_db_transaction_seconds": "histogram",
    "customer_context_open_context_batch_size": "histogram",
    "customer_context_activity_batch_size": "histogram",
    "customer_context_db_connections": "gauge",
    "customer_context_db_acquire_seconds": "histogram",
    "customer_context_db_acquire_waiting": "gauge",
    "customer_context_sqlite_checkpoint_seconds": "histogram",
    "customer_context_sqlite_wal_bytes": "gauge",
    "customer_context_db_errors_total": "counter",
    "customer_context_notifications_pending": "gauge",
    "customer_context_notifications_sent_total": "counter",
    "customer_context_notifications_failed_total": "counter",
    "customer_context_notifications_oldest_pending_seconds": "gauge",
    "customer_context_ready": "gauge",
    "customer_context_build_info": "gauge",
}


def series_names() -> set[str]:
    names = set()
    for name, kind in CATALOG.items():
        if kind == "histogram":
            names.update(f"{name}{suffix}" for suffix in ("_bucket", "_sum", "_count"))
        else:
            names.add(name)
    return names


PROMQL_FUNCTIONS = {
    "abs", "absent", "absent_over_time", "avg", "avg_over_time", "bottomk", "ceil", "changes", "clamp",
    "clamp_max", "clamp_min", "count", "count_over_time", "count_values", "delta", "deriv", "exp", "floor",
    "group", "histogram_quantile", "idelta", "increase", "irate", "label_join", "label_replace", "last_over_time",
    "ln", "log2", "log10", "max", "max_over_time", "min", "min_over_time", "predict_linear", "quantile",
    "quantile_over_time", "rate", "resets", "round", "scalar", "sort", "sort_desc", "sqrt", "stddev",
    "stdvar", "sum", "sum_over_time", "time", "timestamp", "topk", "vector",
}
PROMQL_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless",
                   "bool", "offset", "inf", "nan"}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (label names, functions and keywords left out)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # string literals
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # range selectors
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        token = match.group(0)
        following = text[match.end():].lstrip()
        if token.lower() in PROMQL_KEYWORDS:
            continue
        if following.startswith("(") and token in PROMQL_FUNCTIONS:
            continue
        names.add(token)
    return names


def panels_of(dashboard: dict) -> list[dict]:
    panels = []
    for panel in dashboard.get("panels", []):
        panels.append(panel)
        panels.extend(panel.get("panels", []) if panel.get("type") == "row" else [])
    return panels


def check(dashboard: dict) -> list[str]:
    """Problems that would keep the dashboard from importing or showing the service's metrics."""
    problems = []
    for key in ("title", "uid", "schemaVersion", "panels", "templating", "__inputs"):
        if key not in dashboard:
            problems.append(f"missing top-level {key!r}")
    if not any(i.get("name") == "DS_PROMETHEUS" and i.get("pluginId") == "prometheus"
               for i in dashboard.get("__inputs", [])):
        problems.append("no DS_PROMETHEUS datasource input")
    variables = {v.get("name") for v in dashboard.get("templating", {}).get("list", [])}
    for name in ("job", "instance"):
        if name not in variables:
            problems.append(f"no ${name} template variable")
    known = series_names()
    ids = set()
    cells: dict[tuple[int, int], str] = {}
    for panel in panels_of(dashboard):
        title = panel.get("title", "?")
        if panel.get("id") in ids:
            problems.append(f"{title}: duplicate panel id {panel.get('id')}")
        ids.add(panel.get("id"))
        grid = panel.get("gridPos", {})
        x, y, w, h = (grid.get(k, -1) for k in ("x", "y", "w", "h"))
        if min(x, y, w, h) < 0 or x + w > 24 or w == 0 or h == 0:
            problems.append(f"{title}: gridPos {grid} is outside the 24-column grid")
        for cx in range(max(x, 0), max(x + w, 0)):
            for cy in range(max(y, 0), max(y + h, 0)):
                if (cx, cy) in cells:
                    problems.append(f"{title}: overlaps {cells[(cx, cy)]}")
                    break
                cells[(cx, cy)] = title
            else:
                continue
            break
        if panel.get("type") == "row":
            continue
        targets = panel.get("targets", [])
        if not targets:
            problems.append(f"{title}: no query")
        for target in targets:
            expr = target.get("expr", "")
            if not expr:
                problems.append(f"{title}: empty expr")
            for name in sorted(metric_names(expr) - known):
                problems.append(f"{title}: {name} is not in the metrics catalog")
            if target.get("datasource", {}).get("uid") != "${DS_PROMETHEUS}":
                problems.append(f"{title}: query does not use the DS_PROMETHEUS input")
    return problems


# --- Prometheus -------------------------------------------------------------------------------------------

def substitute(expr: str, rate_interval: str) -> str:
    expr = expr.replace("$__rate_interval", rate_interval).replace("${__rate_interval}", rate_interval)
    expr = expr.replace("$__interval", rate_interval).replace("$__range", rate_interval)
    return re.sub(r"\$\{?(\w+)\}?", ".*", expr)


def query_range(prometheus: str, expr: str, start: float, end: float, step: float) -> list[dict]:
    params = urllib.parse.urlencode({"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}",
                                     "step": f"{step:g}"})
    url = f"{prometheus.rstrip('/')}/api/v1/query_range?{params}"
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            body = json.load(response)
    except urllib.error.HTTPError as err:
        try:
            body = json.load(err)
        except ValueError:
            raise RuntimeError(f"HTTP {err.code}") from err
    if body.get("status") != "success":
        raise RuntimeError(body.get("error", "query failed"))
    series = []
    for result in body["data"]["result"]:
        points = []
        for t, v in result["values"]:
            value = float(v)
            if math.isfinite(value):
                points.append((float(t), value))
        series.append({"labels": result["metric"], "points": points})
    return series


def legend(fmt: str, labels: dict, expr: str) -> str:
    if fmt:
        return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), fmt).strip() or fmt
    name = labels.get("__name__", "")
    rest = ", ".join(f'{k}="{v}"' for k, v in sorted(labels.items()) if k != "__name__")
    return f"{name}{{{rest}}}" if rest else (name or expr)


# --- Formatting --------------------------------------------------------------------------------------------

def si(value: float, suffix: str = "", decimals: int | None = None) -> str:
    for factor, prefix in ((1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(value) >= factor:
            return f"{plain(value / factor, decimals)} {prefix}{suffix}".rstrip()
    return f"{plain(value, decimals)} {suffix}".rstrip()


def plain(value: float, decimals: int | None = None) -> str:
    if decimals is not None:
        return f"{value:.{decimals}f}"
    if value == 0:
        return "0"
    magnitude = abs(value)
    digits = 0 if magnitude >= 100 else 1 if magnitude >= 10 else 2 if magnitude >= 1 else 3
    text = f"{value:.{digits}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def format_value(value: float, unit: str, decimals: int | None = None) -> str:
    if unit == "s":
        magnitude = abs(value)
        if magnitude == 0:
            return "0 s"
        if magnitude < 1e-3:
            return f"{plain(value * 1e6, decimals)} µs"
        if magnitude < 1:
            return f"{plain(value * 1e3, decimals)} ms"
        if magnitude < 60:
            return f"{plain(value, decimals)} s"
        if magnitude < 3600:
            return f"{plain(value / 60, decimals)} min"
        return f"{plain(value / 3600, decimals)} hour"
    if unit == "bytes":
        for factor, prefix in ((2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
            if abs(value) >= factor:
                return f"{plain(value / factor, decimals)} {prefix}"
        return f"{plain(value, decimals)} B"
    if unit == "percentunit":
        return f"{plain(value * 100, decimals)}%"
    if unit == "reqps":
        return si(value, "req/s", decimals)
    if unit == "ops":
        return si(value, "ops/s", decimals)
    return si(value, "", decimals)


# Grafana's dark theme and its classic palette.
BACKGROUND = "#111217"
PANEL = "#181b1f"
BORDER = "#2a2d33"
TEXT = "#ccccdc"
WEAK = "#8e8e9a"
GRID = "#25282d"
PALETTE = ["#73BF69", "#F2CC0C", "#8AB8FF", "#FF780A", "#F2495C", "#5794F2", "#B877D9", "#705DA0",
           "#37872D", "#FADE2A", "#447EBC", "#C15C17", "#890F02", "#0A437C", "#6D1F62", "#584477"]
NAMED = {"green": "#73BF69", "red": "#F2495C", "orange": "#FF9830", "yellow": "#FADE2A", "blue": "#5794F2",
         "purple": "#B877D9", "text": TEXT, "transparent": "transparent"}


def color(name: str | None) -> str:
    if not name:
        return TEXT
    return NAMED.get(name, name)


# --- Layout ------------------------------------------------------------------------------------------------

WIDTH = 1600
PADDING = 16
HEADER = 96
CELL_HEIGHT = 30
MARGIN = 8
COLUMN = (WIDTH - 2 * PADDING - 23 * MARGIN) / 24


def box(grid: dict) -> tuple[float, float, float, float]:
    x = PADDING + grid["x"] * (COLUMN + MARGIN)
    y = HEADER + grid["y"] * (CELL_HEIGHT + MARGIN)
    w = grid["w"] * COLUMN + (grid["w"] - 1) * MARGIN
    h = grid["h"] * CELL_HEIGHT + (grid["h"] - 1) * MARGIN
    return x, y, w, h


def nice_step(span: float, ticks: int) -> float:
    raw = span / max(ticks, 1)
    power = 10 ** math.floor(math.log10(raw))
    for multiple in (1, 2, 2.5, 5, 10):
        if raw <= multiple * power:
            return multiple * power
    return 10 * power


def axis_step(span: float, unit: str) -> float:
    """About four steps over `span`, round in the unit's own terms (KiB/MiB for bytes, minutes for seconds)."""
    if unit == "bytes" and span >= 1024:
        scale = 1024 ** math.floor(math.log(span, 1024))
        return nice_step(span / scale, 4) * scale
    if unit == "s" and span >= 120:
        scale = 3600 if span >= 7200 else 60
        return nice_step(span / scale, 4) * scale
    return nice_step(span, 4)


def text_width(text: str, size: float = 12) -> float:
    return len(text) * size * 0.58


def timeseries_svg(panel: dict, series: list[dict], width: float, height: float, start: float, end: float,
                   step: float) -> str:
    defaults = panel.get("fieldConfig", {}).get("defaults", {})
    unit = defaults.get("unit", "short")
    decimals = defaults.get("decimals")
    fill = defaults.get("custom", {}).get("fillOpacity", 0) / 100

    values = [v for s in series for _, v in s["points"]]
    low = min(0.0, min(values)) if values else 0.0
    high = max(values) if values else 1.0
    if high <= low:
        high = low + (1.0 if high == 0 else abs(high) * 0.5)
    tick = axis_step(high - low, unit)
    high = math.ceil(high / tick - 1e-9) * tick
    low = math.floor(low / tick + 1e-9) * tick
    labels = []
    value = low
    while value <= high + tick / 2:
        labels.append(value)
        value += tick
    label_texts = [format_value(v, unit, decimals if decimals is not None else None) for v in labels]
    left = max(text_width(t, 11) for t in label_texts) + 10
    right, top, bottom = 8, 6, 20
    plot_w, plot_h = width - left - right, height - top - bottom

    def px(t: float) -> float:
        return left + (t - start) / (end - start) * plot_w

    def py(v: float) -> float:
        return top + (1 - (v - low) / (high - low)) * plot_h

    out = [f'<svg width="{width:.0f}" height="{height:.0f}" xmlns="http://www.w3.org/2000/svg">']
    for v, text in zip(labels, label_texts):
        y = py(v)
        out.append(f'<line x1="{left:.1f}" x2="{width - right:.1f}" y1="{y:.1f}" y2="{y:.1f}" stroke="{GRID}"/>')
        out.append(f'<text x="{left - 6:.1f}" y="{y + 4:.1f}" text-anchor="end" class="axis">{html.escape(text)}</text>')
    span = end - start
    minute_step = nice_step(span / 60, max(2, int(plot_w / 110))) * 60
    minute_step = max(60.0, round(minute_step / 60) * 60)
    t = math.ceil(start / minute_step) * minute_step
    while t <= end:
        x = px(t)
        out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{top + plot_h:.1f}" stroke="{GRID}"/>')
        label = dt.datetime.fromtimestamp(t).strftime("%H:%M")
        out.append(f'<text x="{x:.1f}" y="{height - 5:.1f}" text-anchor="middle" class="axis">{label}</text>')
        t += minute_step
    for index, s in enumerate(series):
        stroke = PALETTE[index % len(PALETTE)]
        # Break the line where Prometheus returned no point (a gap longer than two steps).
        runs, run, previous = [], [], None
        for t, v in s["points"]:
            if previous is not None and t - previous > 2.5 * step:
                runs.append(run)
                run = []
            run.append((px(t), py(v)))
            previous = t
        runs.append(run)
        for run in runs:
            if not run:
                continue
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y in run)
            if fill > 0 and len(run) > 1:
                base = py(max(low, 0.0))
                area = f"{run[0][0]:.1f},{base:.1f} {path} {run[-1][0]:.1f},{base:.1f}"
                out.append(f'<polygon points="{area}" fill="{stroke}" fill-opacity="{fill:.2f}" stroke="none"/>')
            if len(run) == 1:
                x, y = run[0]
                out.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="1.5" fill="{stroke}"/>')
            else:
                out.append(f'<polyline points="{path}" fill="none" stroke="{stroke}" stroke-width="1.5" '
                           'stroke-linejoin="round"/>')
    out.append("</svg>")
    return "".join(out)


def render_timeseries(panel: dict, results: list[tuple[dict, list[dict] | str]], w: float, h: float,
                      start: float, end: float, step: float) -> str:
    series, errors = [], []
    for target, result in results:
        if isinstance(result, str):
            errors.append(result)
            continue
        for s in result:
            s["legend"] = legend(target.get("legendFormat", ""), s["labels"], target["expr"])
        # Queries in their order, the series of each by name.
        series.extend(sorted(result, key=lambda s: s["legend"]))
    body_h = h - 34
    if not series or not any(s["points"] for s in series):
        message = "; ".join(errors) if errors else "No data"
        return f'<div class="nodata" style="height:{body_h:.0f}px">{html.escape(message)}</div>'
    # Legend entries flow in lines under the chart.
    lines, used = 1, 0.0
    for s in series:
        need = text_width(s["legend"], 12) + 26
        if used + need > w - 16 and used > 0:
            lines += 1
            used = 0.0
        used += need
    lines = min(lines, 3)
    legend_h = lines * 18 + 4
    chart = timeseries_svg(panel, series, w - 16, body_h - legend_h, start, end, step)
    entries = "".join(
        f'<span class="entry"><i style="background:{PALETTE[i % len(PALETTE)]}"></i>{html.escape(s["legend"])}</span>'
        for i, s in enumerate(series))
    return f'{chart}<div class="legend" style="max-height:{legend_h}px">{entries}</div>'


def render_stat(panel: dict, results: list[tuple[dict, list[dict] | str]], w: float, h: float) -> tuple[str, str]:
    defaults = panel.get("fieldConfig", {}).get("defaults", {})
    options = panel.get("options", {})
    unit = defaults.get("unit", "short")
    decimals = defaults.get("decimals")
    text_mode = options.get("textMode", "auto")
    color_mode = options.get("colorMode", "value")
    steps = defaults.get("thresholds", {}).get("steps", [])
    mappings = {}
    for mapping in defaults.get("mappings", []):
        if mapping.get("type") == "value":
            mappings.update(mapping.get("options", {}))

    shown = []
    for target, result in results:
        if isinstance(result, str):
            shown.append((result, WEAK))
            continue
        for s in result:
            if not s["points"]:
                continue
            value = s["points"][-1][1]
            colour = TEXT
            for step in steps:
                if step.get("value") is None or value >= step["value"]:
                    colour = color(step.get("color"))
            text = format_value(value, unit, decimals)
            mapped = mappings.get(plain(value)) or mappings.get(str(int(value)) if value.is_integer() else "")
            if mapped:
                text = mapped.get("text", text)
                colour = color(mapped.get("color")) if mapped.get("color") else colour
            if text_mode == "name":
                text = legend(target.get("legendFormat", ""), s["labels"], target["expr"])
            shown.append((text, colour))
    background = PANEL
    if not shown:
        return f'<div class="nodata" style="height:{h - 34:.0f}px">No data</div>', background
    if color_mode == "background" and len(shown) == 1:
        background = shown[0][1]
    size = min(40.0, (h - 40) / len(shown) * 0.7, (w - 20) / max(len(t) for t, _ in shown) / 0.6)
    rows = "".join(
        f'<div style="font-size:{size:.0f}px;color:{"#fff" if color_mode == "background" else (c if color_mode == "value" else TEXT)}">'
        f"{html.escape(t)}</div>" for t, c in shown)
    return f'<div class="stat" style="height:{h - 34:.0f}px">{rows}</div>', background


STYLE = f"""
* {{ box-sizing: border-box; }}
body {{ margin: 0; background: {BACKGROUND}; color: {TEXT}; font: 13px "Inter", "DejaVu Sans", "Helvetica Neue",
       Arial, sans-serif; width: {WIDTH}px; position: relative; }}
.top {{ position: absolute; left: 0; top: 0; width: {WIDTH}px; height: 48px; background: {PANEL};
        border-bottom: 1px solid {BORDER}; display: flex; align-items: center; padding: 0 {PADDING}px; gap: 10px; }}
.top .crumb {{ color: {WEAK}; }} .top .title {{ color: #fff; font-size: 15px; }}
.top .right {{ margin-left: auto; display: flex; gap: 8px; }}
.button {{ border: 1px solid {BORDER}; border-radius: 2px; padding: 4px 10px; color: {TEXT}; background: {BACKGROUND}; }}
.vars {{ position: absolute; left: {PADDING}px; top: 56px; display: flex; gap: 8px; }}
.var {{ display: flex; border: 1px solid {BORDER}; border-radius: 2px; overflow: hidden; }}
.var b {{ font-weight: 500; padding: 4px 8px; background: {PANEL}; color: #6e9fff; border-right: 1px solid {BORDER}; }}
.var span {{ padding: 4px 8px; }}
.panel {{ position: absolute; background: {PANEL}; border: 1px solid {BORDER}; border-radius: 2px; overflow: hidden; }}
.panel h3 {{ margin: 0; height: 32px; line-height: 32px; padding: 0 8px; font-size: 14px; font-weight: 500;
            color: #d8d9da; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }}
.panel svg {{ display: block; margin: 0 8px; }}
.axis {{ fill: {WEAK}; font-size: 11px; }}
.legend {{ padding: 2px 8px 0; display: flex; flex-wrap: wrap; column-gap: 14px; overflow: hidden; font-size: 12px; }}
.legend .entry {{ white-space: nowrap; line-height: 18px; }}
.legend i {{ display: inline-block; width: 14px; height: 4px; border-radius: 2px; margin-right: 6px; vertical-align: middle; }}
.nodata {{ display: flex; align-items: center; justify-content: center; color: {WEAK}; padding: 0 10px; text-align: center; }}
.stat {{ display: flex; flex-direction: column; align-items: center; justify-content: center; font-weight: 500;
         line-height: 1.15; text-align: center; }}
.row {{ position: absolute; font-size: 15px; font-weight: 500; color: #d8d9da; display: flex; align-items: center; }}
.row::before {{ content: "⌄"; color: {WEAK}; margin-right: 8px; position: relative; top: -4px; }}
"""


def render(dashboard: dict, prometheus: str, minutes: float, rate_interval: str, end: float) -> tuple[str, int]:
    start = end - minutes * 60
    step = max(2.0, round(minutes * 60 / 240))
    parts = []
    bottom = 0.0
    for panel in panels_of(dashboard):
        grid = panel.get("gridPos")
        if not grid:
            continue
        x, y, w, h = box(grid)
        bottom = max(bottom, y + h)
        title = html.escape(panel.get("title", ""))
        if panel.get("type") == "row":
            parts.append(f'<div class="row" style="left:{x:.0f}px;top:{y:.0f}px;width:{w:.0f}px;height:{h:.0f}px">{title}</div>')
            continue
        results: list[tuple[dict, list[dict] | str]] = []
        for target in panel.get("targets", []):
            if target.get("hide"):
                continue
            expr = substitute(target.get("expr", ""), rate_interval)
            try:
                results.append((target, query_range(prometheus, expr, start, end, step)))
            except (OSError, RuntimeError, ValueError) as err:
                print(f"warning: {panel.get('title')}: {expr}: {err}", file=sys.stderr)
                results.append((target, f"Query error: {err}"))
        background = PANEL
        if panel.get("type") == "stat":
            body, background = render_stat(panel, results, w, h)
        else:
            body = render_timeseries(panel, results, w, h, start, end, step)
        parts.append(f'<div class="panel" style="left:{x:.0f}px;top:{y:.0f}px;width:{w:.0f}px;height:{h:.0f}px;'
                     f'background:{background}"><h3>{title}</h3>{body}</div>')

    variables = "".join(
        f'<div class="var"><b>{html.escape(v.get("label") or v["name"])}</b><span>All</span></div>'
        for v in dashboard.get("templating", {}).get("list", []))
    label = f"Last {minutes:g} minutes" if minutes != 60 else "Last 1 hour"
    header = (f'<div class="top"><span class="crumb">Home › Dashboards ›</span>'
              f'<span class="title">{html.escape(dashboard.get("title", ""))}</span>'
              f'<div class="right"><span class="button">{label}</span>'
              f'<span class="button">{html.escape(dashboard.get("refresh") or "Off")}</span></div></div>'
              f'<div class="vars">{variables}</div>')
    height = int(math.ceil(bottom + PADDING))
    page = (f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>{html.escape(dashboard.get("title", ""))}</title>'
            f'<style>{STYLE}</style></head><body style="height:{height}px">{header}{"".join(parts)}</body></html>')
    return page, height


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dashboard", type=Path, default=HERE / "customer-context.json")
    parser.add_argument("--prometheus", default="http://127.0.0.1:9090", help="Prometheus base URL")
    parser.add_argument("--minutes", type=float, default=10, help="time range: the last N minutes")
    parser.add_argument("--rate-interval", default="1m", help="what $__rate_interval stands for")
    parser.add_argument("--out", type=Path, help="HTML page to write")
    parser.add_argument("--check", action="store_true", help="only validate the dashboard")
    args = parser.parse_args()

    dashboard = json.loads(args.dashboard.read_text())
    problems = check(dashboard)
    for problem in problems:
        print(f"{args.dashboard.name}: {problem}", file=sys.stderr)
    if problems:
        return 1
    if args.check:
        queries = sum(len(p.get("targets", [])) for p in panels_of(dashboard))
        print(f"{args.dashboard.name}: {len(panels_of(dashboard))} panels, {queries} queries, "
              "all metric names in the catalog", file=sys.stderr)
        return 0
    if not args.out:
        parser.error("--out is required unless --check")
    page, height = render(dashboard, args.prometheus, args.minutes, args.rate_interval,
                          dt.datetime.now().timestamp())
    args.out.write_text(page)
    print(f"wrote {args.out} ({WIDTH}x{height})", file=sys.stderr)
    print(f"{WIDTH},{height}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
