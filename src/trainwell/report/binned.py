"""Charts of binned counts: a histogram with one frame per step (a page's slider shows one
at a time) and a heat map of a 2-d histogram (one PNG image), drawn in the frame of
``report.axes`` like every chart."""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Sequence
from html import escape

from PIL import Image

from trainwell.report.axes import BOX, Box, Scale, axis_labels, opening, x_axis, y_axis
from trainwell.report.charts import hover_marks, num


def _bars_path(edges: Sequence[float], counts: Sequence[float], x: Scale, y: Scale, base: float) -> str:
    """The outline of a histogram's bars as one path (a filled staircase): far fewer bytes
    than a rectangle per bin, and a page may embed forty steps of a hundred bins."""
    d = [f"M{x(edges[0]):.1f} {base:.1f}"]
    for right, v in zip(edges[1:], counts, strict=False):
        d.append(f"V{y(v + 1) if v > 0 else base:.1f}H{x(right):.1f}")
    return "".join(d) + f"V{base:.1f}Z"


def histogram_chart(edges: Sequence[float], frames: Sequence[Sequence[float]], names: Sequence[str], *,
                    xlabel: str = "", ylabel: str = "count (log scale)", color: str = "#0072B2",
                    attrs: str = "", box: Box = BOX, hover: bool = True) -> str:
    """Bars of counts over ``edges`` on a log scale (count + 1, so that an empty bin sits on
    the axis), one ``<g class="frame" data-name=...>`` per frame (a step), every frame but
    the last hidden: a page's slider shows one at a time on fixed axes. ``hover`` writes each
    frame's bin centres and counts for the crosshair."""
    top = max((v for counts in frames for v in counts), default=0.0) + 1
    x = Scale(edges[0], edges[-1], box.x0, box.x1)
    y = Scale(1.0, max(top, 10.0), box.y1, box.y0, log=True)
    centres = " ".join(f"{(a + b) / 2:.4g}" for a, b in zip(edges, edges[1:], strict=False))
    if hover:  # the bin centres once, shared by every frame's counts
        attrs += (f' data-xmap="{box.x0} {box.x1} {x.lo:.10g} {x.hi:.10g}" data-xname="{escape(xlabel)}"'
                  f' data-x="{centres}"')
    out = [*opening(attrs, box, ""), *x_axis(x, None, box), *y_axis(y, box)]
    for i, (counts, name) in enumerate(zip(frames, names, strict=True)):
        hidden = "" if i == len(frames) - 1 else ' display="none"'
        out.append(f'<g class="frame" data-name="{escape(name)}"{hidden}>'
                   f'<path d="{_bars_path(edges, counts, x, y, box.y1)}" fill="{color}"/>')
        if hover:
            out.append(f'<g class="hover" data-label="count" data-y="{" ".join(num(v) for v in counts)}"/>')
        out.append("</g>")
    if hover:
        out += hover_marks([], box)
    out += [axis_labels(xlabel, ylabel, box), "</svg>"]
    return "\n".join(out)


HEAT = ((68, 1, 84), (59, 82, 139), (33, 145, 140), (94, 201, 98), (253, 231, 37))
"""A viridis-like ramp from dark (no count) to yellow (the largest)."""


def heat_color(t: float) -> tuple[int, int, int]:
    """The ramp's colour at ``t`` in [0, 1] (clamped), interpolated between its stops."""
    p = min(0.9999, max(0.0, t)) * (len(HEAT) - 1)
    i, f = int(p), p - int(p)
    lo, hi = HEAT[i], HEAT[i + 1]
    return tuple(round(a + (b - a) * f) for a, b in zip(lo, hi, strict=True))  # type: ignore[return-value]


def png(pixels: Sequence[Sequence[tuple[int, int, int]]]) -> bytes:
    """An RGB PNG of ``pixels`` (rows top to bottom): a heat map of thousands of cells as one
    ``<image>`` of a few kilobytes instead of a rectangle per cell. Encoded by Pillow (which
    TensorBoard, a dependency, installs)."""
    h, w = len(pixels), len(pixels[0]) if pixels else 0
    image = Image.frombytes("RGB", (w, h), bytes(c for row in pixels for px in row for c in px))
    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def heat_map(xedges: Sequence[float], yedges: Sequence[float], counts: Sequence[Sequence[float]], *,
             xlabel: str = "", ylabel: str = "", attrs: str = "", box: Box = BOX) -> str:
    """Counts over a grid (``counts[i][j]`` in x bin i, y bin j), coloured by log(count + 1)
    on the ``HEAT`` ramp, as one pixelated PNG stretched over the plot; the edges are evenly
    spaced (as the instruments bin)."""
    x = Scale(xedges[0], xedges[-1], box.x0, box.x1)
    y = Scale(yedges[0], yedges[-1], box.y1, box.y0)
    top = math.log(max((v for row in counts for v in row), default=0.0) + 1) or 1.0
    ny = len(yedges) - 1
    pixels = [[heat_color(math.log(max(row[j], 0.0) + 1) / top) for row in counts] for j in reversed(range(ny))]
    data = base64.b64encode(png(pixels)).decode("ascii")
    out = [*opening(attrs, box, ""),
           f'<image x="{box.x0}" y="{box.y0}" width="{box.x1 - box.x0}" height="{box.y1 - box.y0}" '
           f'preserveAspectRatio="none" style="image-rendering:pixelated" href="data:image/png;base64,{data}">'
           f"<title>{escape(xlabel)} x {escape(ylabel)}: log-scaled counts</title></image>",
           *x_axis(x, None, box), *y_axis(y, box), axis_labels(xlabel, ylabel, box), "</svg>"]
    return "\n".join(out)
