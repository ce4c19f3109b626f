"""``--max-restarts K``: run training in a child process and restart it from the newest
valid checkpoint when it dies (killed, out of memory, an exception), up to K times.

Each restart is written to the run's logbook with its time, cause and the steps lost
(logged progress past the checkpoint it restarts from). Exits that mean "do not retry"
are passed through: success (0), bad input (2), and a requested stop (SIGTERM/SIGINT:
the child saved a checkpoint and exited 143/130).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from trainwell.checkpoint import CheckpointStore
from trainwell.guards.logbook import Logbook

NO_RETRY = {0, 2, 128 + signal.SIGTERM, 128 + signal.SIGINT}
"""Exit codes after which the supervisor does not restart the child."""


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    if code == 137:
        return "killed (exit 137: SIGKILL, often the out-of-memory killer)"
    return f"exited with code {code} (an exception; see the output above)"


def last_logged_step(run_dir: Path) -> int:
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return 0
    last = 0
    for line in path.read_text().splitlines():
        try:
            last = max(last, int(json.loads(line).get("step", 0)))
        except (json.JSONDecodeError, ValueError, TypeError):
            continue
    return last


def supervise(child_argv: list[str], run_dir: Path, max_restarts: int) -> int:
    """Run ``python -m trainwell <child_argv> --resume`` until it finishes or the restarts
    are used up. Returns the exit code to report."""
    run_dir.mkdir(parents=True, exist_ok=True)
    logbook = Logbook(run_dir)
    restarts = 0
    argv = [sys.executable, "-m", "trainwell", *child_argv, "--run-dir", str(run_dir), "--resume"]
    while True:
        child = subprocess.Popen(argv)
        def forward(signum: int, frame: object, child: subprocess.Popen = child) -> None:
            child.send_signal(signum)  # the child saves a checkpoint and exits 128 + signum

        previous = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            code = child.wait()
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
        if code in NO_RETRY:
            return code
        cause = describe_exit(code)
        info, _ = CheckpointStore(run_dir / "checkpoints").latest_valid()
        ckpt_step = info.step if info is not None else 0
        lost = max(0, last_logged_step(run_dir) - ckpt_step)
        if restarts >= max_restarts:
            logbook.write({"kind": "stop", "step": ckpt_step, "cause": cause, "restarts": restarts,
                           "message": f"Training {cause}; the {max_restarts} allowed restart(s) are used up, "
                                      "so the supervisor stops here."})
            print(f"trainwell: training {cause}; no restarts left ({max_restarts} used)", file=sys.stderr)
            return code if code > 0 else 1
        restarts += 1
        logbook.write({"kind": "restart", "step": ckpt_step, "cause": cause, "exit_code": code,
                       "steps_lost": lost, "restart": restarts, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                       "message": f"Training {cause}. Restart {restarts} of {max_restarts} from the checkpoint "
                                  f"at step {ckpt_step} ({lost} logged step(s) lost)."})
        print(f"trainwell: training {cause}; restart {restarts}/{max_restarts} from step {ckpt_step}",
              file=sys.stderr)
