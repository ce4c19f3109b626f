"""A package that is also the public function of the same name: ``trainwell.train(config)``
and ``trainwell.diagnose(model, data, loss_fn)`` are the packages ``trainwell.train`` and
``trainwell.diagnose`` called. Python sets a package's attribute to a subpackage as soon as it
is imported, so ``trainwell.train`` is the package whichever import ran first; a function of
that name in ``trainwell/__init__.py`` would be replaced by it (``'module' object is not
callable``). The package's module class gets a ``__call__`` instead."""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any


def make_callable(package: str, target: str) -> None:
    """Make the module ``package`` callable as ``target`` ('module:function', imported on call)."""
    module_name, function = target.split(":")

    class CallablePackage(types.ModuleType):
        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            return getattr(importlib.import_module(module_name), function)(*args, **kwargs)

    sys.modules[package].__class__ = CallablePackage
