"""The TrainwellError family: every failure a user can cause or fix.

The CLI turns any of these into one readable message and exit code 2 (no traceback).
Programming errors stay ordinary exceptions so that they are not hidden.
"""

from __future__ import annotations


class TrainwellError(Exception):
    """Base class: a failure with a message meant for the user."""


class ConfigError(TrainwellError):
    """One or more problems with the run configuration, all reported at once.

    ``problems`` holds one line per problem, each naming the dotted key and what would be valid.
    """

    def __init__(self, problems: list[str] | str, *, source: str | None = None) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        self.source = source
        head = f"invalid configuration ({source})" if source else "invalid configuration"
        if len(self.problems) == 1:
            msg = f"{head}: {self.problems[0]}"
        else:
            msg = head + f": {len(self.problems)} problems\n" + "\n".join(
                f"  - {p}" for p in self.problems
            )
        super().__init__(msg)


class DataError(TrainwellError):
    """A data source is missing, unreadable or of the wrong shape."""


class TaskError(TrainwellError):
    """A task entry point cannot be imported or returns something that is not a Task."""


class CheckpointError(TrainwellError):
    """A checkpoint cannot be written or read safely."""


class TrainingHalted(TrainwellError):
    """Training stopped on purpose (a guard said STOP); the message carries the diagnosis."""
