"""User tasks: ``task.name = "my_pkg.my_module:make_task"`` names a function returning a Task.

The function is called with the keyword arguments in ``task.options``, plus ``config=cfg``
(the whole RunConfig) when it has a parameter named ``config``. Every way this can go wrong
(import, attribute, arguments, return type) is a TaskError naming ``task.name``.

A user task can be distilled (``distill.teacher``) when its ``loss`` also returns the
model's logits, one row per target: ``LossOutput(..., logits=logits)`` (docs/distillation.md).
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING

from trainwell.errors import TaskError
from trainwell.tasks.base import Task

if TYPE_CHECKING:
    from trainwell.config import RunConfig


def load_user_task(cfg: RunConfig) -> Task:
    """Import, call and check the entry point in ``cfg.task.name``."""
    name = cfg.task.name
    fn = resolve_entry_point(name)
    kwargs = dict(cfg.task.options)
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):  # some builtins and C callables have no signature
        params = {}
    if "config" in params:
        if "config" in kwargs:
            raise TaskError(
                f"task.options sets 'config', which {name} receives from trainwell "
                "(the whole RunConfig); rename that option"
            )
        kwargs["config"] = cfg
    if params:
        try:
            inspect.signature(fn).bind(**kwargs)
        except TypeError as e:
            raise TaskError(
                f"task.options {dict(cfg.task.options)!r} do not fit "
                f"{name}{inspect.signature(fn)}: {e}"
            ) from None
    task = fn(**kwargs)
    if not isinstance(task, Task):
        raise TaskError(
            f"task.name = {name!r} returned {type(task).__name__}, not a trainwell Task; "
            "return an instance of a subclass of trainwell.tasks.Task"
        )
    return task


def resolve_entry_point(name: str) -> Callable[..., object]:
    """The callable named by 'module.path:attribute' (the attribute may be dotted)."""
    module_name, sep, attr = name.partition(":")
    if not sep or not module_name or not attr:
        raise TaskError(
            f"task.name = {name!r}: a user task is written 'my_pkg.my_module:make_task' "
            "(module, colon, function)"
        )
    try:
        module = importlib.import_module(module_name)
    except Exception as e:  # any failure inside the user's module is reported the same way
        raise TaskError(
            f"task.name = {name!r}: cannot import module {module_name!r}: "
            f"{type(e).__name__}: {' '.join(str(e).split())}"
        ) from e
    obj = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            callables = sorted(
                k for k, v in vars(module).items() if callable(v) and not k.startswith("_")
            )
            raise TaskError(
                f"task.name = {name!r}: module {module_name!r} has no attribute {attr!r}; "
                f"its callables: {', '.join(callables) or '(none)'}"
            )
        obj = getattr(obj, part)
    if not callable(obj):
        raise TaskError(
            f"task.name = {name!r}: {attr!r} is a {type(obj).__name__}, not a function "
            "returning a Task"
        )
    return obj
