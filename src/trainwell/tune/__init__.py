"""Studies: many trainwell runs searched by Optuna and analysed the Tuning Playbook's way.

``tune(study)`` runs or continues a study (a TOML path, a dict or a Study); its trials are
real run directories inside the study directory. ``load_study`` checks a study file;
``result(load_handle(dir))`` reads a study back.
"""

import sys
import types

from trainwell.tune.config import BUDGETS, Study, TuneConfig, load_study
from trainwell.tune.records import Dimension, StudyView, TrialRecord
from trainwell.tune.run import StudyResult, result, tune
from trainwell.tune.study import load_handle

__all__ = [
    "BUDGETS", "Dimension", "Study", "StudyResult", "StudyView", "TrialRecord", "TuneConfig",
    "load_handle", "load_study", "result", "tune",
]


class _CallableModule(types.ModuleType):
    """``trainwell.tune(study)`` is the API, and ``trainwell.tune`` is also this package:
    once any ``trainwell.tune.*`` module is imported, Python binds the package to that
    name, so the package itself must answer the call."""

    def __call__(self, *args, **kwargs):  # noqa: ANN002, ANN003, ANN204
        return tune(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
