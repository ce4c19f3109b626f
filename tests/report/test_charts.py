from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET

from trainwell.report.charts import Box, Line, Marker, Scale, finite_runs, line_chart, value_range

SVG = "{http://www.w3.org/2000/svg}"


def _points(polyline: ET.Element) -> list[tuple[float, float]]:
    return [(float(a), float(b)) for a, b in (p.split(",") for p in polyline.get("points", "").split())]


def test_scale_maps_ends_and_ticks_are_round_values_inside() -> None:
    s = Scale(0.0, 10.0, 100.0, 200.0)
    assert (s(0.0), s(5.0), s(10.0)) == (100.0, 150.0, 200.0)
    assert s.ticks() == [0.0, 2.0, 4.0, 6.0, 8.0, 10.0]
    lg = Scale(1e-4, 1e-1, 0.0, 300.0, log=True)
    assert lg.log and lg(1e-3) == 100.0
    assert lg.ticks() == [1e-4, 1e-3, 1e-2, 1e-1] and [lg.label(v) for v in lg.ticks()] == ["1e-4", "1e-3", "1e-2", "1e-1"]
    assert Scale(2.0, 8.0, 0.0, 1.0, log=True).ticks() == [2.0, 5.0]  # under two decades: 1, 2, 5
    assert not Scale(-1.0, 1.0, 0.0, 1.0, log=True).log  # not all positive: linear
    flat = Scale(3.0, 3.0, 0.0, 10.0)
    assert flat(3.0) == 5.0  # a single value sits in the middle


def test_value_range_pads_and_ignores_what_it_cannot_show() -> None:
    assert value_range([0.0, 10.0, math.nan, math.inf]) == (-0.5, 10.5)
    assert value_range([0.0, 390.0], pad=0.0) == (0.0, 390.0)  # no pad: the data's span exactly
    assert value_range([2.0, 2.0]) == (1.9, 2.1) and value_range([0.0]) == (-1.0, 1.0)
    assert value_range([]) == (0.0, 1.0) and value_range([-1.0], log=True) == (0.1, 1.0)
    lo, hi = value_range([1e-3, 1e-1], pad=0.5, log=True)
    assert math.isclose(lo, 1e-4) and math.isclose(hi, 1.0)


def test_finite_runs_break_at_non_finite_values_and_drop_single_points() -> None:
    xs = [0, 1, 2, 3, 4, 5, 6]
    ys = [1.0, 2.0, math.nan, 3.0, math.inf, 4.0, 5.0]
    assert finite_runs(xs, ys) == [[(0, 1.0), (1, 2.0)], [(5, 4.0), (6, 5.0)]]


def test_standalone_line_chart_is_valid_svg_with_clamped_lines_markers_and_legend() -> None:
    box = Box(width=640, height=400, left=64, right=16, top=14, bottom=48)
    xs = [1e-5, 1e-4, 1e-3, 1e-2]
    svg = line_chart([Line("raw <loss>", xs, [2.0, math.nan, 1.0, 50.0], color="#123456", opacity=0.35),
                      Line("smoothed", xs, [2.0, 1.5, 1.0, 0.5])],
                     markers=[Marker(1e-3, "#00aa00", "suggested 1e-3"), Marker(-1.0, "#ff0000", "off the axis")],
                     xlabel="learning rate", ylabel="loss", log_x=True, ylim=(0.0, 3.0), title="LR range test",
                     legend="svg", box=box)
    root = ET.fromstring(svg)  # one well-formed element: it saves as an .svg file
    assert root.tag == f"{SVG}svg" and (root.get("width"), root.get("height")) == ("640", "400")
    lines = root.findall(f"{SVG}polyline")
    assert [len(_points(p)) for p in lines] == [2, 4]  # the NaN splits the raw line; a lone point is no line
    top = box.top + 22  # the title's room
    raw_second = _points(lines[0])[1]
    assert raw_second[1] == top  # 50 is above ylim: drawn at its top edge
    assert [p[0] for p in _points(lines[1])] == [64.0, 250.7, 437.3, 624.0]  # decades evenly over the width
    dashed = [e for e in root.iter(f"{SVG}line") if e.get("stroke-dasharray")]
    assert len(dashed) == 1 and dashed[0].get("x1") == "437.3"  # the marker off a log axis is left out
    texts = [e.text for e in root.iter(f"{SVG}text")]
    assert {"LR range test", "suggested 1e-3", "raw <loss>", "smoothed", "1e-5", "1e-2"} <= set(texts)
    assert "raw &lt;loss&gt;" in svg
    label = next(e for e in root.iter(f"{SVG}text") if e.text == "suggested 1e-3")
    assert label.get("text-anchor") == "start" and float(label.get("x", "0")) > 437.3
    right = ET.fromstring(line_chart([Line("a", xs, [1.0] * 4)], markers=[Marker(9e-3, "#000", "diverged")],
                                     log_x=True, legend="", box=box))
    label = next(e for e in right.iter(f"{SVG}text") if e.text == "diverged")
    assert label.get("text-anchor") == "end"  # near the right edge: written left of its line


def test_page_chart_has_an_html_legend_and_linear_axes() -> None:
    html = line_chart([Line("trial 3", [0, 10], [1.0, 0.0]), Line("a & b", [0, 5, 10], [0.5, 0.4, 0.3])],
                      xlabel="step", ylabel="train/loss", attrs='data-curve="train/loss"')
    legend, svg = html.split("<svg", 1)
    assert legend.count('class="item"') == 2 and "a &amp; b" in legend and "#0072B2" in legend and "#D55E00" in legend
    root = ET.fromstring("<svg" + svg)
    assert root.get("data-curve") == "train/loss" and root.get("class") == "chart fit"
    (first, second) = root.findall(f"{SVG}polyline")
    assert first.get("stroke") == "#0072B2" and second.get("stroke") == "#D55E00"
    ys = [y for _, y in _points(first)]
    assert ys[0] < ys[1]  # 1.0 is drawn above 0.0
    assert re.search(r">0</text>", svg) and re.search(r">10</text>", svg)
