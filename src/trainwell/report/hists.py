"""Histogram panels from ``histograms.jsonl``: the gradient-element histogram over time
(a step slider), its per-layer versions at the last step, and the 2d gradient x parameter
heat map (Cockpit's GradHist1d / GradHist2d)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from trainwell.report.histfile import by_name

MAX_HIST_STEPS = 40
"""Steps of the global histogram embedded for the slider: enough to watch the shape evolve;
each step is ~100 numbers, so a long run's file is not copied whole into the page."""


@dataclass
class Hist1d:
    """A 1d histogram over its measured steps (``counts[i]`` at ``steps[i]``, shared ``edges``)."""

    id: str
    title: str
    note: str
    axis: str
    edges: list[float]
    steps: list[int]
    counts: list[list[float]]


@dataclass
class Hist2d:
    """A 2d histogram at one step: ``counts[i][j]`` in x bin i and y bin j."""

    id: str
    title: str
    note: str
    xaxis: str
    yaxis: str
    xedges: list[float]
    yedges: list[float]
    counts: list[list[float]]


def _pick(items: Sequence[Mapping[str, Any]], limit: int) -> list[Mapping[str, Any]]:
    """At most ``limit`` items spread evenly over the run, always with the last one."""
    if len(items) <= limit:
        return list(items)
    picked = [items[round(i * (len(items) - 1) / (limit - 1))] for i in range(limit)]
    return list({id(p): p for p in picked}.values())


def _hist1d(name: str, title: str, items: Sequence[Mapping[str, Any]], note: str) -> Hist1d:
    return Hist1d(
        id=f"hist-{name.replace('/', '-').replace('.', '-')}",
        title=title,
        note=note,
        axis=(items[-1].get("axes") or ["value"])[0],
        edges=items[-1]["edges"][0],
        steps=[int(i["step"]) for i in items],
        counts=[i["counts"] for i in items],
    )


def histogram_panels(histograms: Sequence[Mapping[str, Any]]) -> tuple[list[Hist1d | Hist2d], list[Hist1d]]:
    """(panels for the GRADIENTS column, per-layer small multiples at the last step)."""
    groups = by_name(h for h in histograms if len(h["edges"]) in (1, 2))
    main: list[Hist1d | Hist2d] = []
    layers: list[Hist1d] = []
    for name, items in groups.items():
        dims = len(items[-1]["edges"])
        same = [i for i in items if len(i["edges"]) == dims and len(i["edges"][0]) == len(items[-1]["edges"][0])]
        if dims == 2:
            last = same[-1]
            axes = list(last.get("axes") or ["x", "y"]) + ["x", "y"]
            main.append(Hist2d(
                id=f"hist2d-{len(main)}",
                title=f"{name} at step {last['step']}",
                note="log-scaled counts; where large gradients meet large weights",
                xaxis=axes[0],
                yaxis=axes[1],
                xedges=last["edges"][0],
                yedges=last["edges"][1],
                counts=last["counts"],
            ))
        elif "/" in name:
            layer = name.split("/", 1)[1]
            layers.append(_hist1d(name, layer, same[-1:], ""))
        else:
            title = "Gradient elements histogram" if name == "grad_hist1d" else name
            main.append(_hist1d(name, title, _pick(same, MAX_HIST_STEPS),
                                "log-scaled counts; mass at the edges: exploding or mis-scaled gradients"))
    main.sort(key=lambda p: isinstance(p, Hist2d))  # 1d before 2d
    return main, layers
