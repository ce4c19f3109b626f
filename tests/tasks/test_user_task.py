from __future__ import annotations

import itertools
import textwrap

import pytest

from trainwell.config import resolve
from trainwell.errors import TaskError
from trainwell.tasks import Task, build_task

_ids = itertools.count()

GOOD = """
    from trainwell.tasks import Task

    class MyTask(Task):
        def __init__(self, size, config=None):
            self.size, self.config = size, config

    def make_task(size=3, config=None):
        return MyTask(size, config)

    def make_without_config(size):
        return MyTask(size)

    def not_a_task():
        return 42

    VALUE = 7

    class Holder:
        @staticmethod
        def make():
            return MyTask(1)
"""


@pytest.fixture
def module(tmp_path, monkeypatch):
    """Writes a module with ``source`` under a fresh name on sys.path; returns its name."""
    monkeypatch.syspath_prepend(str(tmp_path))

    def write(source: str) -> str:
        name = f"user_tasks_{next(_ids)}"
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
        return name

    return write


def build(name: str, **options):
    return build_task(resolve({"task": {"name": name, "options": options}}))


def test_entry_point_gets_options_and_config(module):
    mod = module(GOOD)
    task = build(f"{mod}:make_task", size=5)
    assert isinstance(task, Task) and task.size == 5
    assert task.config.task.name == f"{mod}:make_task"  # the whole RunConfig is passed
    task = build(f"{mod}:make_without_config", size=2)
    assert task.size == 2 and task.config is None
    assert build(f"{mod}:Holder.make").size == 1  # dotted attributes work


def test_import_failure_names_task_name_and_the_error_in_one_line(module):
    mod = module("import not_a_real_dependency_xyz\n")
    with pytest.raises(TaskError) as e:
        build(f"{mod}:make_task")
    msg = str(e.value)
    assert f"task.name = '{mod}:make_task'" in msg
    assert "ModuleNotFoundError" in msg and "not_a_real_dependency_xyz" in msg
    assert "\n" not in msg
    broken = module("def f(:\n    pass\n")
    with pytest.raises(TaskError, match=r"cannot import module .*SyntaxError"):
        build(f"{broken}:f")
    with pytest.raises(TaskError, match=r"cannot import module 'no_such_module_abc'"):
        build("no_such_module_abc:make")


def test_missing_attribute_lists_the_module_callables(module):
    mod = module(GOOD)
    with pytest.raises(TaskError) as e:
        build(f"{mod}:make_taks")
    msg = str(e.value)
    assert "has no attribute 'make_taks'" in msg
    assert "make_task" in msg and "make_without_config" in msg and "MyTask" in msg
    assert "VALUE" not in msg  # not callable
    with pytest.raises(TaskError, match=r"'VALUE' is a int, not a function"):
        build(f"{mod}:VALUE")


def test_result_must_be_a_task(module):
    mod = module(GOOD)
    with pytest.raises(TaskError, match=r"returned int, not a trainwell Task"):
        build(f"{mod}:not_a_task")


def test_options_that_do_not_fit_the_signature(module):
    mod = module(GOOD)
    with pytest.raises(
        TaskError,
        match=r"task\.options \{'colour': 'red'\} do not fit .*make_task\(size=3, config=None\)",
    ):
        build(f"{mod}:make_task", colour="red")
    with pytest.raises(TaskError, match=r"task\.options sets 'config'"):
        build(f"{mod}:make_task", config=1)
    with pytest.raises(TaskError, match=r"missing a required argument: 'size'"):
        build(f"{mod}:make_without_config")


@pytest.mark.parametrize("name", ["mod:", ":make"])
def test_malformed_entry_points(name):
    with pytest.raises(TaskError, match=r"written 'my_pkg\.my_module:make_task'"):
        build(name)
