from __future__ import annotations

import base64
import io
import math
import re
import xml.etree.ElementTree as ET

import pytest
from PIL import Image

from trainwell.report import assets
from trainwell.report.binned import HEAT, heat_color, heat_map, histogram_chart
from trainwell.report.charts import (
    RAW_UNDER_SMOOTH,
    SPARK_POINTS,
    Box,
    Flag,
    HLine,
    Line,
    Marker,
    Scale,
    finite_runs,
    line_chart,
    sparkline,
    value_range,
)

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


# --- what the run report draws with the shared renderer ------------------------------------

RUN_BOX = Box(width=500, height=300, left=50, right=50, top=50, bottom=50)
"""A plot area of 400 x 200 pixels from (50, 50): coordinates are easy to work out."""


def _svg(text: str) -> ET.Element:
    return ET.fromstring(text[text.index("<svg"):])


def _all(root: ET.Element, tag: str, cls: str | None = None) -> list[ET.Element]:
    return [e for e in root.iter(f"{SVG}{tag}") if cls is None or e.get("class") == cls]


def test_event_markers_have_hover_text_sit_side_by_side_and_may_have_no_label() -> None:
    root = _svg(line_chart([Line("loss", [0, 100], [1.0, 2.0])], box=RUN_BOX, legend="", markers=[
        Marker(50, "#E69F00", "", title="skip at step 50: non-finite loss", dash="", width=1.2),
        Marker(50, "#CC79A7", "", title="quarantine at step 50: 2 samples", dash=""),
        Marker(80, "#D55E00", "lr x0.5", title="restart at step 80", dash="5 3"),
    ]))
    marks = [e for e in _all(root, "line") if e.find(f"{SVG}title") is not None]
    assert [(m.get("x1"), m.get("stroke-dasharray"), m.get("stroke-width")) for m in marks] == [
        ("250.0", None, "1.2"), ("252.5", None, None), ("370.0", "5 3", None)]  # the second at step 50 moves aside
    assert [m.find(f"{SVG}title").text for m in marks] == [  # type: ignore[union-attr]
        "skip at step 50: non-finite loss", "quarantine at step 50: 2 samples", "restart at step 80"]
    labels = [e for e in _all(root, "text") if e.get("fill") in ("#E69F00", "#CC79A7", "#D55E00")]
    assert [(e.text, e.get("y")) for e in labels] == [("lr x0.5", "64")]  # only the labelled one, at the top row


def test_reference_lines_are_drawn_at_their_value_and_left_out_where_a_scale_cannot_show_them() -> None:
    lines = [Line("alpha", [0, 10], [-1.0, 1.0])]
    root = _svg(line_chart(lines, ylim=(-1.0, 1.0), hlines=[HLine(0.0, "0: the valley floor")], box=RUN_BOX, legend=""))
    (ref,) = _all(root, "line", "hline")
    assert (ref.get("y1"), ref.get("x1"), ref.get("x2"), ref.get("stroke-dasharray")) == ("150.0", "50", "450", "2 3")
    (label,) = _all(root, "text", "reflabel")
    assert label.text == "0: the valley floor" and label.get("y") == "146.0" and label.get("text-anchor") == "end"
    log = _svg(line_chart([Line("g", [0, 10], [0.5, 8.0])], log_y=True, hlines=[HLine(0.0), HLine(1.0)], box=RUN_BOX))
    assert len(_all(log, "line", "hline")) == 1  # 0 has no place on a log scale
    wide = _svg(line_chart([Line("g", [0, 10], [2.0, 3.0])], hlines=[HLine(1.0)], box=RUN_BOX, legend=""))
    assert float(_all(wide, "line", "hline")[0].get("y1", "0")) < 250  # the y range takes the reference line in


def test_both_y_scales_are_drawn_the_first_one_shown() -> None:
    xs, ys = [0, 1, 2, 3], [1.0, 10.0, -5.0, 1000.0]
    root = _svg(line_chart([Line("loss", xs, ys)], log_y=True, toggle_log_y=True, box=RUN_BOX, legend=""))
    groups = _all(root, "g", "yscale")
    assert [(g.get("data-scale"), g.get("display")) for g in groups] == [("log", None), ("linear", "none")]
    log_runs = [_points(p) for p in groups[0].iter(f"{SVG}polyline")]
    assert len(log_runs) == 1 and len(log_runs[0]) == 2  # -5 has no place on a log scale: 1000 stands alone
    (a, y1), (_, y10) = log_runs[0]
    lo, hi = value_range([1.0, 10.0, 1000.0], log=True)
    decade = 200 / (math.log10(hi) - math.log10(lo))
    assert a == 50.0 and y1 - y10 == pytest.approx(decade, abs=0.15)  # one decade up
    linear = [_points(p) for p in groups[1].iter(f"{SVG}polyline")]
    assert [len(r) for r in linear] == [4]  # on the linear scale every value shows
    ticks = [e.text for e in groups[0].iter(f"{SVG}text")]
    assert ticks == ["1e0", "1e1", "1e2", "1e3"]
    alone = _svg(line_chart([Line("loss", xs, ys)], box=RUN_BOX, legend=""))
    assert not _all(alone, "g", "yscale") and len(alone.findall(f"{SVG}polyline")) == 1  # one scale: no groups


def test_smoothing_overlay_fades_the_raw_line_and_is_marked_for_the_page() -> None:
    xs = list(range(10))
    raw = Line("loss", xs, [float(i % 3) for i in xs], "#0072B2", role="raw")
    smooth = Line("loss (smoothed)", xs, [1.0] * 10, "#0072B2", 2.0, role="smooth", legend=False, hover=False)
    root = _svg(line_chart([raw, smooth], box=RUN_BOX, legend=""))
    (r,) = _all(root, "polyline", "raw")
    (s,) = _all(root, "polyline", "smooth")
    assert r.get("stroke-opacity") == str(RAW_UNDER_SMOOTH) and s.get("stroke-opacity") == "1.0"
    assert [p[1] for p in _points(s)] == [150.0, 150.0]  # a flat overlay: its two ends
    alone = _svg(line_chart([raw], box=RUN_BOX, legend=""))
    assert _all(alone, "polyline", "raw")[0].get("stroke-opacity") == "1.0"  # nothing over it: full strength
    legend = line_chart([raw, smooth])
    assert legend.split("<svg", 1)[0].count('class="item"') == 1  # the overlay has no legend entry
    css = assets.stylesheet()
    assert "svg.chart.raw-only .smooth { display: none; }" in css and "svg.chart.raw-only .raw" in css


def test_step_lines_dots_dashes_and_flags() -> None:
    xs, ys = [0.0, 100.0, 200.0], [0.0, 1.0, 1.0]
    root = _svg(line_chart([Line("lr", xs, ys, step=True, dash="6 4"), Line("eval", xs, [0.0, 0.5, math.nan], dots=True)],
                           ylim=(0.0, 1.0), box=RUN_BOX, legend="svg",
                           flags=[Flag(100.0, "eval = nan at step 200")]))
    step, _ = root.findall(f"{SVG}polyline")
    assert _points(step) == [(50.0, 250.0), (250.0, 250.0), (250.0, 50.0), (450.0, 50.0)]  # holds, then jumps
    assert step.get("stroke-dasharray") == "6 4"
    (dots,) = _all(root, "path", "dots")
    assert dots.get("d") == "M50.0 250.0h0M250.0 150.0h0" and dots.get("stroke-linecap") == "round"  # no dot for NaN
    (flag,) = _all(root, "path", "flag")
    assert flag.get("d") == "M245.0 51L255.0 51L250.0 59Z" and flag.find(f"{SVG}title").text == "eval = nan at step 200"  # type: ignore[union-attr]
    swatches = [e for e in _all(root, "line") if e.get("x1") == str(RUN_BOX.x1 - 150)]
    assert [e.get("stroke-dasharray") for e in swatches] == ["6 4", None]  # the legend shows the dash


def test_hover_data_and_crosshair_for_the_page_script() -> None:
    lines = [Line("train", [1, 2, 300], [2.5, math.nan, 0.123456]), Line("trend", [1, 300], [1.0, 1.0], hover=False)]
    root = _svg(line_chart(lines, xlabel="step", xlim=(0, 400), hover=True, box=RUN_BOX, legend=""))
    assert root.get("data-xmap") == "50 450 0 400" and root.get("data-xname") == "step"
    (data,) = _all(root, "g", "hover")
    assert (data.get("data-label"), data.get("data-x"), data.get("data-y")) == ("train", "1 2 300", "2.5 nan 0.1235")
    (cross,) = _all(root, "line", "crosshair")
    assert cross.get("visibility") == "hidden" and cross.get("pointer-events") == "none"
    (trend,) = root.findall(f"{SVG}polyline")  # train's points are each alone between gaps: no line
    assert [x for x, _ in _points(trend)] == [51.0, 350.0]  # xlim, not the data, spans x
    plain = _svg(line_chart(lines, box=RUN_BOX, legend=""))
    assert plain.get("data-xmap") is None and not _all(plain, "g", "hover")


def test_straight_stretches_are_thinned_but_a_spike_in_one_pixel_column_is_kept() -> None:
    xs = [float(i) for i in range(10_000)]
    flat = _svg(line_chart([Line("counter", xs, [1.0] * 10_000)], box=RUN_BOX, legend=""))
    assert len(_points(flat.findall(f"{SVG}polyline")[0])) == 2
    spike = _points(_svg(line_chart([Line("loss", [0, 1, 1, 1, 2], [0.0, 0.0, 1.0, 0.0, 0.0])], ylim=(0.0, 1.0),
                                     box=RUN_BOX, legend="")).findall(f"{SVG}polyline")[0])
    assert spike == [(50.0, 250.0), (250.0, 250.0), (250.0, 50.0), (250.0, 250.0), (450.0, 250.0)]  # up and back down


def test_histogram_frames_one_shown_and_bars_on_a_log_count_axis() -> None:
    edges = [-1.0, 0.0, 1.0, 2.0]
    root = _svg(histogram_chart(edges, [[0, 9, 99], [99, 0, 9]], ["step 1", "step 2"], xlabel="gradient", box=RUN_BOX))
    frames = _all(root, "g", "frame")
    assert [(f.get("data-name"), f.get("display")) for f in frames] == [("step 1", "none"), ("step 2", None)]
    bars = frames[1].find(f"{SVG}path")
    assert bars is not None  # counts 99, 0, 9 over a log10(count + 1) axis from 1 to 100
    assert bars.get("d") == "M50.0 250.0V50.0H183.3V250.0H316.7V150.0H450.0V250.0Z"
    hover = frames[1].find(f"{SVG}g")
    assert hover is not None and hover.get("data-y") == "99 0 9" and root.get("data-x") == "-0.5 0.5 1.5"
    assert root.get("data-xname") == "gradient" and _all(root, "line", "crosshair")


def test_heat_map_is_one_png_with_the_largest_count_brightest() -> None:
    counts = [[0, 0], [0, 0], [0, 1000]]  # x bin 2, y bin 1: the top-right cell
    root = _svg(heat_map([0.0, 1.0, 2.0, 3.0], [0.0, 1.0, 2.0], counts, xlabel="gradient", ylabel="parameter", box=RUN_BOX))
    (image,) = _all(root, "image")
    assert (image.get("x"), image.get("y"), image.get("width"), image.get("height")) == ("50", "50", "400", "200")
    blob = base64.b64decode(image.get("href", "").split(",", 1)[1])
    picture = Image.open(io.BytesIO(blob))
    assert (picture.format, picture.mode, picture.size) == ("PNG", "RGB", (3, 2))  # 3 wide, 2 high
    assert picture.getpixel((2, 0)) == heat_color(1.0) == HEAT[-1]  # top right: the largest count
    assert picture.getpixel((0, 1)) == heat_color(0.0) == HEAT[0]


def test_large_tick_values_read_as_k_and_m() -> None:
    s = Scale(0.0, 1.0, 0.0, 1.0)
    assert [s.label(v) for v in (5000.0, 25_000.0, 1_500_000.0, 2e9, 0.5)] == ["5000", "25k", "1.5M", "2G", "0.5"]


def test_sparkline_is_a_bare_line_thinned_to_its_cell() -> None:
    xs = [float(i) for i in range(1000)]
    ys = [math.nan if i == 10 else float(i % 7) for i in range(1000)]
    root = ET.fromstring(sparkline(xs, ys, width=120, height=30))
    (line,) = root.findall(f"{SVG}polyline")
    pts = _points(line)
    assert len(pts) <= SPARK_POINTS and (pts[0][0], pts[-1][0]) == (2.0, 118.0)  # a 2-pixel inset
    assert min(y for _, y in pts) == 2.0 and max(y for _, y in pts) == 28.0  # 6 at the top, 0 at the bottom
    assert ET.fromstring(sparkline([1.0], [math.nan])).find(f"{SVG}polyline") is None  # nothing finite: empty
