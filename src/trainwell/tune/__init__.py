"""Studies: many trainwell runs searched by Optuna and analysed the Tuning Playbook's way.

``tune(study)`` runs or continues a study (a TOML path, a dict or a Study); its trials are
real run directories inside the study directory. ``load_study`` checks a study file;
``result(load_handle(dir))`` reads a study back.
"""

from trainwell.tune.config import BUDGETS, Study, TuneConfig, load_study
from trainwell.tune.records import Dimension, StudyView, TrialRecord
from trainwell.tune.run import StudyResult, result, tune
from trainwell.tune.study import load_handle

__all__ = [
    "BUDGETS", "Dimension", "Study", "StudyResult", "StudyView", "TrialRecord", "TuneConfig",
    "load_handle", "load_study", "result", "tune",
]
