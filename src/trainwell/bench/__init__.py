"""Benchmarks of training algorithms: test problems (DeepOBS's small set, on CPU data),
algorithms (every optimizer at its defaults, with a search space; user submissions), the
protocols of DeepOBS and Crowded Valley run as tune studies, and noise-aware verdicts.

``bench(config)`` runs or continues one; ``read_results(folder)`` reads it back.
"""

from trainwell.bench.results import read_results
from trainwell.bench.run import bench

__all__ = ["bench", "read_results"]
