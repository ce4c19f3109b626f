"""``histograms.jsonl``: the instruments' histograms, one JSON line per histogram and step.

The instrument runner keeps :class:`trainwell.instruments.base.Histogram` objects; whoever
owns the run directory appends them here with :func:`append_histograms`, and the report
reads them back. One line::

    {"step": 64, "name": "grad_hist1d/net.0.weight", "axes": ["gradient"],
     "edges": [[-2.0, ..., 2.0]], "counts": [0, 3, ...]}

``counts`` is a list for a 1d histogram and a list of rows (x bins, each a list of y bins)
for a 2d one; ``edges`` holds one list per axis, each one longer than its bin count.
JSON lines rather than a binary format because the report is the only reader, the file
is appended during training (a crash loses at most the last line), and it stays
inspectable with ``jq``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

HISTOGRAMS_FILE = "histograms.jsonl"


def _plain(x: Any) -> Any:
    """Tensors and numpy arrays as (nested) Python lists; everything else unchanged."""
    return x.tolist() if hasattr(x, "tolist") else x


def append_histograms(run_dir: str | Path, histograms: Mapping[str, Any]) -> None:
    """Append ``{name: Histogram}`` (one step's histograms; Histogram-like: step, counts,
    edges, axes) to ``run_dir/histograms.jsonl``. Histograms that share their bin edges
    (every tensor's of GradHist1d) have them encoded once: float repr dominated the time
    (1 s at the end of a 400-step run measuring every step, 19 histograms a step)."""
    if not histograms:
        return
    path = Path(run_dir) / HISTOGRAMS_FILE
    encoded: dict[tuple[int, ...], str] = {}  # the same edges objects: the same "axes" and "edges" text
    lines = []
    for name, h in histograms.items():
        axes = list(getattr(h, "axes", ("gradient",)))[: len(h.edges)]
        shared = (*axes, *map(id, h.edges))
        middle = encoded.get(shared)
        if middle is None:
            edges = json.dumps([_plain(e) for e in h.edges], allow_nan=False)
            middle = encoded[shared] = f'"axes": {json.dumps(axes)}, "edges": {edges}'
        counts = json.dumps(_plain(h.counts), allow_nan=False)
        lines.append(f'{{"step": {int(h.step)}, "name": {json.dumps(name)}, {middle}, "counts": {counts}}}')
    with path.open("a", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
        f.flush()


def read_histograms(path: str | Path) -> list[dict[str, Any]]:
    """Every well-formed line of a histograms file, in file order. A torn last line (a crash
    mid-write) is dropped; a malformed line elsewhere raises ValueError naming it."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    out = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line, parse_constant=_refuse)
        except _NonFinite:
            raise ValueError(f"line {n} holds NaN or Infinity") from None
        except json.JSONDecodeError:
            if n == len(lines):
                break  # only the last write can be torn
            raise ValueError(f"line {n} is not valid JSON") from None
        if not _valid(item):
            raise ValueError(f'line {n} lacks "step", "name", or finite "edges" and "counts" of matching sizes')
        out.append(item)
    return out


class _NonFinite(ValueError):
    pass


def _refuse(constant: str) -> float:
    """json.loads' hook for NaN, Infinity and -Infinity: not in a histograms file."""
    raise _NonFinite(constant)


def _valid(item: Any) -> bool:
    if not isinstance(item, dict) or not isinstance(item.get("name"), str):
        return False
    edges, counts = item.get("edges"), item.get("counts")
    if not isinstance(item.get("step"), int) or not isinstance(edges, list) or not edges:
        return False
    if not isinstance(counts, list) or not all(isinstance(e, list) for e in edges):
        return False
    rows = [counts] if len(edges) == 1 else counts
    # numbers only (NaN and Infinity were refused while parsing: the page's JSON has none,
    # and a bin edge at inf cannot be drawn); sum() is a C loop that raises on anything else
    try:
        for r in (*edges, *rows):
            if not isinstance(r, list):
                return False
            sum(r)
    except TypeError:
        return False
    if len(edges) == 1:
        return len(edges[0]) == len(counts) + 1
    return len(edges) == 2 and len(edges[0]) == len(counts) + 1 and all(
        isinstance(r, list) and len(r) + 1 == len(edges[1]) for r in counts
    )


def by_name(items: Iterable[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    """Group histogram lines by name, each group in file order."""
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for item in items:
        groups.setdefault(str(item["name"]), []).append(item)
    return groups
