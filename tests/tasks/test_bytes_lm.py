from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import default_collate

from trainwell.config import resolve
from trainwell.data.corpus import stdlib_files, stdlib_root
from trainwell.data.split import split_by_hash
from trainwell.errors import DataError
from trainwell.tasks import build_task
from trainwell.tasks.bytes_lm import SAMPLE_PROMPT, BytesLM

TINY_GPT = {"depth": 1, "width": 16, "heads": 2}


def make(data: str | None = None, seq_len: int = 32, **task) -> BytesLM:
    raw = {"task": {"name": "bytes-lm", "seq_len": seq_len, **task}, "model": TINY_GPT}
    if data is not None:
        raw["task"]["data"] = data
    built = build_task(resolve(raw))
    assert isinstance(built, BytesLM)
    return built


@pytest.fixture(scope="module")
def stdlib_task() -> BytesLM:
    return make()


class FixedLogits(nn.Module):
    """Returns the same logits (B, T, V) whatever the input: a hand-checkable model."""

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.logits = nn.Parameter(logits)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.logits[: idx.shape[0], : idx.shape[1]]


def test_stdlib_datasets_have_the_right_shapes_and_dtypes(stdlib_task):
    task = stdlib_task
    assert (task.metric, task.unit, task.higher_is_better) == ("bpb", "tokens", False)
    assert task.vocab_size == 256 and task.split.train.dtype == np.uint8
    train, val = task.train_data(), task.eval_data()
    assert len(train) == (len(task.split.train) - 1) // 32 > 10_000
    assert len(val) == (len(task.split.val) - 1) // 32 > 1_000
    x, y = train[7]
    assert x.shape == y.shape == (32,) and x.dtype == y.dtype == torch.int64
    assert torch.equal(x[1:], y[:-1])  # the target is the input shifted by one
    idx = torch.tensor([0, 5, len(train) - 1, 5])
    bx, by = train.get_batch(idx)
    cx, cy = default_collate([train[int(i)] for i in idx])
    assert bx.shape == (4, 32) and torch.equal(bx, cx) and torch.equal(by, cy)


def test_stdlib_split_is_by_file_disjoint_and_deterministic(stdlib_task, monkeypatch):
    files = stdlib_files(stdlib_root())
    train_files, val_files = split_by_hash(files, 0.1)
    assert set(train_files).isdisjoint(val_files) and len(val_files) > 20
    sizes = {f: (stdlib_root() / f).stat().st_size for f in files}
    # each file plus one separator byte, nothing else
    assert len(stdlib_task.split.train) == sum(sizes[f] for f in train_files) + len(train_files)
    assert len(stdlib_task.split.val) == sum(sizes[f] for f in val_files) + len(val_files)
    monkeypatch.setenv("TRAINWELL_CACHE_DIR", "")  # rebuilt from the files, not the cache
    again = make()
    assert np.array_equal(again.split.train, stdlib_task.split.train)
    assert np.array_equal(again.split.val, stdlib_task.split.val)


def test_uniform_logits_score_exactly_8_bits_per_byte(stdlib_task):
    batch = stdlib_task.train_data().get_batch(torch.arange(3))  # (3, 32)
    model = FixedLogits(torch.zeros(3, 32, 256))
    out = stdlib_task.loss(model, batch)
    assert float(out.count) == 3 * 32
    assert math.isclose(float(out.sum.detach()), 96 * math.log(256), rel_tol=1e-6)
    assert out.per_sample is not None and out.per_sample.shape == (3,)
    metrics = stdlib_task.metrics(model, batch)
    s, c = metrics["bpb"]
    assert math.isclose(float(s / c), 8.0, rel_tol=1e-6)
    s, c = metrics["loss"]
    assert math.isclose(float(s / c), math.log(256), rel_tol=1e-6)


def test_loss_and_z_loss_match_a_hand_computation():
    task = make(z_loss=1e-3)
    torch.manual_seed(0)
    logits = torch.randn(2, 32, 256) * 3
    batch = task.train_data().get_batch(torch.tensor([4, 9]))
    out = task.loss(FixedLogits(logits.clone()), batch)
    y = batch[1]
    ce = F.cross_entropy(logits.reshape(-1, 256), y.reshape(-1), reduction="sum")
    z = 1e-3 * (torch.logsumexp(logits, dim=-1) ** 2).sum()
    torch.testing.assert_close(out.components["ce"], ce)
    torch.testing.assert_close(out.components["z"], z)
    torch.testing.assert_close(out.sum, ce + z)
    torch.testing.assert_close(out.per_sample.sum(), out.sum)
    bits, count = task.metrics(FixedLogits(logits.clone()), batch)["bpb"]
    torch.testing.assert_close(bits / count, ce / 64 / math.log(2))  # z-loss not in bpb


def test_no_z_component_when_z_loss_is_off(stdlib_task):
    batch = stdlib_task.train_data().get_batch(torch.tensor([1]))
    out = stdlib_task.loss(FixedLogits(torch.randn(1, 32, 256)), batch)
    assert set(out.components) == {"ce"}


def test_real_gpt_starts_near_uniform_and_backpropagates(stdlib_task):
    torch.manual_seed(0)
    model = stdlib_task.build_model()
    batch = stdlib_task.train_data().get_batch(torch.arange(4))
    out = stdlib_task.loss(model, batch)
    assert abs(float(out.sum.detach() / out.count) / math.log(2) - 8.0) < 0.5
    (out.sum / out.count).backward()
    assert all(p.grad is not None for p in model.parameters())


def test_sample_is_deterministic_text_after_the_prompt(stdlib_task):
    torch.manual_seed(0)
    model = stdlib_task.build_model()
    model.train()
    a = stdlib_task.sample(model, 20)
    b = stdlib_task.sample(model, 20)
    assert isinstance(a, str) and a == b and a.startswith(SAMPLE_PROMPT)
    assert model.training  # the mode is restored


def _text_folder(tmp_path, n=6, repeat=40):
    root = tmp_path / "texts"
    root.mkdir()
    for i in range(n):
        (root / f"f{i}.txt").write_text(f"line {i}: hello world\n" * repeat)
    return root


def test_user_text_folder(tmp_path):
    task = make(str(_text_folder(tmp_path)), val_fraction=0.3)
    assert task.metric == "bpb" and task.vocab_size == 256
    assert task.split.n_train_files + task.split.n_val_files == 6
    assert str(tmp_path) in task.data_summary
    x, _ = task.train_data()[0]
    assert bytes(x.tolist()).startswith(b"line ")


def test_user_token_file_reports_bits_per_token(tmp_path):
    path = tmp_path / "train.bin"
    (np.arange(5000) % 300).astype(np.uint16).tofile(path)
    task = make(str(path))
    assert task.metric == "bits_per_token" and task.vocab_size == 320
    assert task.split.train.dtype == np.uint16
    batch = task.train_data().get_batch(torch.arange(2))
    metrics = task.metrics(FixedLogits(torch.zeros(2, 32, 320)), batch)
    s, c = metrics["bits_per_token"]
    assert "bpb" not in metrics and math.isclose(float(s / c), math.log2(320), rel_tol=1e-6)
    assert task.sample(task.build_model(), 5) is None  # no tokenizer to decode with


def test_missing_and_empty_data_are_errors_naming_task_data(tmp_path):
    with pytest.raises(DataError, match=r"task\.data = '.*nowhere': no such file or folder"):
        make(str(tmp_path / "nowhere"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"task\.data = .*empty.*no \(non-hidden\) files"):
        make(str(tmp_path / "empty"))
    (tmp_path / "blank").mkdir()
    (tmp_path / "blank" / "a.txt").write_text("")
    (tmp_path / "blank" / "b.txt").write_text("")
    with pytest.raises(DataError, match=r"task\.data = .*blank.*all 2 files are empty"):
        make(str(tmp_path / "blank"))


def test_data_shorter_than_a_window_names_seq_len(tmp_path):
    root = _text_folder(tmp_path, n=3, repeat=1)
    with pytest.raises(DataError, match=r"task\.data = .*fewer than task\.seq_len \+ 1 = 513"):
        make(str(root), seq_len=512)
