"""QuantizeError: bad input to ``trainwell quantize`` (all problems listed at once)."""

from __future__ import annotations

from trainwell.errors import TrainwellError


class QuantizeError(TrainwellError):
    """One or more problems with what ``quantize`` was asked to do; ``problems`` holds one line each."""

    def __init__(self, problems: list[str] | str) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        if len(self.problems) == 1:
            msg = self.problems[0]
        else:
            msg = f"{len(self.problems)} problems\n" + "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(msg)
