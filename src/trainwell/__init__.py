"""trainwell: train neural networks well, and fly the run for you."""

from __future__ import annotations

__version__ = "0.1.0"
