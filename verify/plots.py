"""Figures for the report: per-seed dot plots (inline SVG) and accuracy-matrix heatmaps (HTML tables).

Hand-written markup rather than matplotlib: a figure is a few dozen elements, so building the markup
directly keeps a 150-claim report well under a second and its bytes deterministic. Every piece of
text placed in the markup goes through `escape`; the result is returned as `Markup` so the
template inserts it as-is.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

from markupsafe import Markup, escape

DEVICE_COLOURS = {"cpu": "#2f6db5", "cuda": "#d9631e"}
OTHER_DEVICE_COLOUR = "#6b6b6b"
BAND_FILL = "#cfe8c9"
CLAIMED_STROKE = "#1b7a2f"
MIN_BAND_PIXELS = 2.0  # a tolerance of 5e-5 on an axis spanning 0.1 would otherwise vanish

# Viridis at nine evenly spaced stops: perceptually uniform and readable in greyscale print-outs.
_VIRIDIS = (
    (68, 1, 84), (71, 44, 122), (59, 81, 139), (44, 113, 142), (33, 144, 141),
    (39, 173, 129), (92, 200, 99), (170, 220, 50), (253, 231, 37),
)
HEATMAP_MAX_CELLS = 40  # larger matrices are block-averaged down to this many rows and columns


def plot_css() -> str:
    """The stylesheet rules the figures rely on (device colours, strokes, heatmap cells)."""
    rules = [
        f".dot-plot g, .device-dot {{ color: {OTHER_DEVICE_COLOUR}; }}",
        ".device-dot { background: currentColor; }",
        *(f".device-dot.{device} {{ color: {colour}; }}" for device, colour in DEVICE_COLOURS.items()),
        *(f".dot-plot g.{device} {{ color: {colour}; }}" for device, colour in DEVICE_COLOURS.items()),
        ".dot-plot g circle { fill: currentColor; fill-opacity: 0.45; stroke: currentColor; }",
        ".dot-plot g path { stroke: currentColor; stroke-width: 1.5; fill: none; }",
        ".dot-plot g line { stroke: currentColor; stroke-width: 2.5; }",
        ".dot-plot g text { fill: currentColor; font-size: 12px; text-anchor: end; }",
        ".heatmap-wrap { display: flex; gap: 6px; align-items: stretch; }",
        "table.heatmap { width: auto; border-collapse: collapse; font-size: 10px; }",
        "table.heatmap th, table.heatmap td { border: 0; padding: 0; width: var(--cell); min-width: var(--cell); "
        "height: var(--cell); text-align: center; vertical-align: middle; font-weight: 400; color: #444; background: none; }",
        "table.heatmap td.l { color: #fff; } table.heatmap td.d { color: #111; } table.heatmap td.na { background: #f4f4f4; }",
        ".heatmap-scale { width: 10px; margin-top: var(--cell); display: flex; flex-direction: column; "
        "justify-content: space-between; font-size: 10px; color: #444; }",
        ".heatmap-scale span { margin-left: 14px; line-height: 1; }",
    ]
    return "\n".join(rules)


def _number(value: float) -> str:
    """Coordinates with at most two decimals, trailing zeros dropped: enough for the screen, short
    in the file."""
    text = f"{value:.2f}".rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


def nice_ticks(low: float, high: float, count: int = 5) -> tuple[list[float], int]:
    """Round tick positions covering [low, high] and the decimals needed to print them apart."""
    span = high - low
    raw_step = span / count
    magnitude = 10 ** math.floor(math.log10(raw_step))
    for multiple in (1, 2, 2.5, 5, 10):
        step = multiple * magnitude
        if span / step <= count:
            break
    decimals = max(0, -math.floor(math.log10(step)) + (1 if multiple == 2.5 else 0))
    first = math.ceil(low / step)
    ticks = []
    index = first
    while index * step <= high + step * 1e-9:
        ticks.append(index * step)
        index += 1
    return ticks, min(decimals, 12)


@dataclass(frozen=True)
class SeedSeries:
    """One device's per-seed values with their summary, as the dot plot draws them."""

    device: str
    seeds: Sequence[int]
    values: Sequence[float]
    mean: float | None
    interval: tuple[float, float] | None


def _band(claimed, comparison: str | None, tolerance: float) -> tuple[float, float] | None:
    """The accepted region of the claim (infinite on one side for one-sided claims)."""
    if claimed is None or comparison is None:
        return None
    if isinstance(claimed, (list, tuple)):
        return claimed[0] - tolerance, claimed[1] + tolerance
    if comparison == "at_least":
        return claimed - tolerance, math.inf
    if comparison == "at_most":
        return -math.inf, claimed + tolerance
    return claimed - tolerance, claimed + tolerance


def dot_plot(series: Sequence[SeedSeries], claimed, comparison: str | None, tolerance: float, width: int = 620) -> Markup:
    """Every seed's value as a dot, per device, over the claimed value and its tolerance band.

    The mean is a tall tick and the 95% interval a bar under the dots.
    """
    series = [s for s in series if s.values]
    if not series:
        return Markup("")
    band = _band(claimed, comparison, tolerance)
    points = [v for s in series for v in s.values]
    points += [bound for s in series if s.interval for bound in s.interval]
    if band is not None:
        points += [edge for edge in band if math.isfinite(edge)]
    if claimed is not None:
        points += list(claimed) if isinstance(claimed, (list, tuple)) else [claimed]
    low, high = min(points), max(points)
    pad = (high - low) * 0.06 if high > low else max(abs(low) * 0.05, 1e-6)
    low, high = low - pad, high + pad

    left, right, top, row_height = 64.0, width - 16.0, 10.0, 38.0
    height = top + row_height * len(series) + 30.0

    def x(value: float) -> float:
        return left + (value - low) / (high - low) * (right - left)

    parts = [
        f'<svg class="dot-plot" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{_number(height)}" '
        f'viewBox="0 0 {width} {_number(height)}" role="img">'
    ]
    plot_bottom = top + row_height * len(series)
    if band is not None:
        band_left, band_right = x(max(band[0], low)), x(min(band[1], high))
        if band_right - band_left < MIN_BAND_PIXELS:
            centre = (band_left + band_right) / 2
            band_left, band_right = centre - MIN_BAND_PIXELS / 2, centre + MIN_BAND_PIXELS / 2
        parts.append(
            f'<rect x="{_number(band_left)}" y="{_number(top)}" width="{_number(band_right - band_left)}" '
            f'height="{_number(plot_bottom - top)}" fill="{BAND_FILL}"><title>tolerance band</title></rect>'
        )
    if claimed is not None:
        for value in (claimed if isinstance(claimed, (list, tuple)) else [claimed]):
            parts.append(
                f'<line x1="{_number(x(value))}" y1="{_number(top)}" x2="{_number(x(value))}" y2="{_number(plot_bottom)}" '
                f'stroke="{CLAIMED_STROKE}" stroke-width="1.5" stroke-dasharray="4 3">'
                f"<title>claimed {escape(format(value, '.6g'))}</title></line>"
            )
    for row, seeds_series in enumerate(series):
        # Colours, widths and opacity come from the report's stylesheet (plot_css()), per device class,
        # so each element carries only its geometry.
        group = f' class="{seeds_series.device}"' if seeds_series.device in DEVICE_COLOURS else ""
        parts.append(f"<g{group}>")
        middle = top + row_height * row + row_height / 2 - 4
        parts.append(f'<text x="{_number(left - 8)}" y="{_number(middle + 4)}">{escape(seeds_series.device)}</text>')
        if seeds_series.interval is not None:
            interval_low, interval_high = (x(v) for v in seeds_series.interval)
            bar_y = middle + 13
            parts.append(
                f'<path d="M{_number(interval_low)} {_number(bar_y - 3)}v6M{_number(interval_low)} {_number(bar_y)}'
                f'H{_number(interval_high)}M{_number(interval_high)} {_number(bar_y - 3)}v6"><title>95% interval '
                f"[{escape(format(seeds_series.interval[0], '.6g'))}, {escape(format(seeds_series.interval[1], '.6g'))}]"
                "</title></path>"
            )
        if seeds_series.mean is not None:
            mean_x = _number(x(seeds_series.mean))
            parts.append(
                f'<line x1="{mean_x}" y1="{_number(middle - 12)}" x2="{mean_x}" y2="{_number(middle + 16)}">'
                f'<title>mean {escape(format(seeds_series.mean, ".6g"))}</title></line>'
            )
        for index, (seed, value) in enumerate(zip(seeds_series.seeds, seeds_series.values)):
            # A small fixed vertical offset per seed keeps equal values from hiding each other.
            offset = (index % 5 - 2) * 2.5
            parts.append(
                f'<circle cx="{_number(x(value))}" cy="{_number(middle + offset)}" r="4">'
                f'<title>seed {escape(seed)}: {escape(format(value, ".6g"))}</title></circle>'
            )
        parts.append("</g>")
    ticks, decimals = nice_ticks(low, high)
    axis_y = _number(plot_bottom)
    parts.append(f'<line x1="{_number(left)}" y1="{axis_y}" x2="{_number(right)}" y2="{axis_y}" stroke="#888"/>')
    for tick in ticks:
        tick_x = _number(x(tick))
        label = escape(f"{tick:.{decimals}f}" if abs(tick) < 1e6 else f"{tick:.3g}")
        parts.append(
            f'<line x1="{tick_x}" y1="{_number(plot_bottom)}" x2="{tick_x}" y2="{_number(plot_bottom + 4)}" stroke="#888"/>'
            f'<text x="{tick_x}" y="{_number(plot_bottom + 16)}" text-anchor="middle" font-size="11" fill="#444">{label}</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))


def _viridis(fraction: float) -> tuple[int, int, int]:
    fraction = min(max(fraction, 0.0), 1.0) * (len(_VIRIDIS) - 1)
    index = min(int(fraction), len(_VIRIDIS) - 2)
    weight = fraction - index
    start, end = _VIRIDIS[index], _VIRIDIS[index + 1]
    return tuple(round(a + (b - a) * weight) for a, b in zip(start, end))


def _block_average(matrix: list[list[float | None]], limit: int) -> tuple[list[list[float | None]], int]:
    """Average square blocks so that neither side exceeds `limit`; returns the matrix and block size."""
    rows, columns = len(matrix), max(len(row) for row in matrix)
    block = max(1, math.ceil(max(rows, columns) / limit))
    if block == 1:
        return matrix, 1
    reduced = []
    for row_start in range(0, rows, block):
        reduced_row = []
        for column_start in range(0, columns, block):
            cells = [
                matrix[r][c]
                for r in range(row_start, min(row_start + block, rows))
                for c in range(column_start, min(column_start + block, len(matrix[r])))
                if matrix[r][c] is not None
            ]
            reduced_row.append(sum(cells) / len(cells) if cells else None)
        reduced.append(reduced_row)
    return reduced, block


def _hex(rgb: tuple[int, int, int]) -> str:
    return "#%02x%02x%02x" % rgb


def heatmap(matrix: list[list[float | None]], size: int = 300) -> Markup:
    """An accuracy matrix R[i][j] (row: after training task i; column: task j) as coloured cells.

    An HTML table rather than SVG: a cell is its colour and its printed value, with no coordinates,
    which makes a heatmap about a third of the bytes of the same picture drawn in SVG. The colour
    scale runs from 0 to 1 (or to the largest value, for matrices in percent) and is drawn beside the
    table; values are printed in the cells while they fit, otherwise each cell carries a tooltip.
    """
    if not matrix or not any(matrix):
        return Markup("")
    cells, block = _block_average(matrix, HEATMAP_MAX_CELLS)
    rows, columns = len(cells), max(len(row) for row in cells)
    finite = [v for row in cells for v in row if v is not None]
    scale_max = max([1.0, *finite])
    cell = max(6.0, min(36.0, size / max(rows, columns)))
    show_values = cell >= 26
    value_format = ".2f" if scale_max <= 1.0 else ".0f"
    label_every = max(1, math.ceil(max(rows, columns) / 10))

    def label(index: int) -> str:
        return str(index * block) if index % label_every == 0 else ""

    def span(index: int) -> str:
        return str(index) if block == 1 else f"{index * block}-{index * block + block - 1}"

    parts = [f'<div class="heatmap-wrap" style="--cell:{_number(cell)}px"><table class="heatmap">'
             '<tr><th></th>' + "".join(f"<th>{label(c)}</th>" for c in range(columns)) + "</tr>"]
    for row, values in enumerate(cells):
        parts.append(f"<tr><th>{label(row)}</th>")
        for column in range(columns):
            value = values[column] if column < len(values) else None
            if value is None:
                parts.append(f'<td class="na" title="after {span(row)}, task {span(column)}: no value"></td>')
                continue
            colour = _hex(_viridis(value / scale_max))
            if show_values:
                shade = "l" if value / scale_max < 0.6 else "d"
                parts.append(f'<td class="{shade}" style="background:{colour}">{escape(format(value, value_format))}</td>')
            else:
                # full precision is in the exports; the tooltip names the cell (a block's mean when averaged)
                parts.append(f'<td style="background:{colour}" title="after {span(row)}, task {span(column)}: '
                             f'{escape(format(value, ".4g"))}"></td>')
        parts.append("</tr>")
    stops = ",".join(_hex(_viridis(step / 8)) for step in range(9))
    parts.append(f'</table><div class="heatmap-scale" style="background:linear-gradient(to top,{stops})">'
                 f'<span>{escape(format(scale_max, "g"))}</span><span>0</span></div></div>')
    return Markup("".join(parts))
