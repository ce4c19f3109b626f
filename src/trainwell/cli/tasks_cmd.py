"""``trainwell tasks``: the built-in tasks, one line each."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("tasks", help="list the built-in tasks")
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from trainwell.config import DEFAULT_TASK
    from trainwell.tasks import TASKS

    width = max(len(n) for n in TASKS.names())
    for name in TASKS.names():
        mark = " (default)" if name == DEFAULT_TASK else ""
        print(f"{name:<{width}}  {TASKS.get(name).help}{mark}")
    print("\nUser tasks: --set task.name=my_pkg.my_module:make_task (a function returning a trainwell.Task)")
    return 0
