"""histograms.jsonl: what append_histograms writes reads back; damaged lines are refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from trainwell.instruments.base import Histogram
from trainwell.report.histfile import HISTOGRAMS_FILE, append_histograms, read_histograms


def test_shared_edges_are_written_once_per_step_and_read_back(tmp_path: Path) -> None:
    edges = torch.linspace(-2, 2, 5)
    x, y = torch.linspace(-1, 1, 3), torch.linspace(-2, 2, 4)
    for step in (3, 7):
        append_histograms(tmp_path, {
            "grad_hist1d/a": Histogram(step, torch.tensor([1, 2, 3, 4]), (edges,)),
            "grad_hist1d": Histogram(step, torch.tensor([5, 6, 7, 8]), (edges,)),
            "grad_hist2d": Histogram(step, torch.arange(6).view(2, 3), (x, y), axes=("gradient", "parameter")),
        })
    items = read_histograms(tmp_path / HISTOGRAMS_FILE)
    assert [(i["step"], i["name"]) for i in items] == [(3, "grad_hist1d/a"), (3, "grad_hist1d"), (3, "grad_hist2d"),
                                                      (7, "grad_hist1d/a"), (7, "grad_hist1d"), (7, "grad_hist2d")]
    first = items[0]
    assert list(first) == ["step", "name", "axes", "edges", "counts"]
    assert first["edges"] == [edges.tolist()] and first["counts"] == [1, 2, 3, 4] and first["axes"] == ["gradient"]
    assert items[2]["axes"] == ["gradient", "parameter"] and items[2]["counts"] == [[0, 1, 2], [3, 4, 5]]
    assert items[2]["edges"] == [x.tolist(), y.tolist()]


@pytest.mark.parametrize("bad", [
    {"edges": [[0, float("nan")]], "counts": [1]},
    {"edges": [[0, 1]], "counts": [float("inf")]},
    {"edges": [[0, 1]], "counts": ["1"]},
    {"edges": [[0, 1, 2]], "counts": [1]},
    {"edges": [[0, 1], [0, 1, 2]], "counts": [[1, 2, 3]]},
    {"edges": [[0, 1]], "counts": [None]},
])
def test_a_damaged_line_is_refused_with_its_number(tmp_path: Path, bad: dict) -> None:
    path = tmp_path / HISTOGRAMS_FILE
    good = {"step": 1, "name": "h", "edges": [[0, 1]], "counts": [4]}
    path.write_text("\n".join(json.dumps(d) for d in (good, {"step": 2, "name": "h", **bad}, good)) + "\n")
    with pytest.raises(ValueError, match="line 2"):
        read_histograms(path)


def test_a_torn_last_line_is_dropped(tmp_path: Path) -> None:
    path = tmp_path / HISTOGRAMS_FILE
    path.write_text('{"step": 1, "name": "h", "edges": [[0, 1]], "counts": [4]}\n{"step": 2, "name": "h", "ed')
    assert [i["step"] for i in read_histograms(path)] == [1]
