"""Per-sample gradients from the training backward (capture.py) against a Python loop
over samples and against the torch.func path they replace."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from inst_helpers import ClsTask, brute_per_sample, captured_step, cls_batch, runner_for, train_step
from torch import Tensor, nn

from trainwell.instruments.capture import BackwardCapture
from trainwell.instruments.functional import FunctionalModel
from trainwell.instruments.persample import Dense, Outer, PerSampleGrads
from trainwell.tasks.base import LossOutput, Task


def ln_mlp(seed: int = 0, w: int = 8) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(6, w), nn.LayerNorm(w), nn.GELU(), nn.Linear(w, w), nn.RMSNorm(w), nn.Tanh(), nn.Linear(w, 3)
    )


class TinyLM(nn.Module):
    """Embedding -> LayerNorm -> Linear over (B, T) tokens; ``tied`` shares the table."""

    def __init__(self, tied: bool = False, vocab: int = 11, width: int = 6) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.emb = nn.Embedding(vocab, width)
        self.norm = nn.LayerNorm(width)
        self.mix = nn.Linear(width, width)
        self.head = nn.Linear(width, vocab, bias=False)
        if tied:
            self.head.weight = self.emb.weight

    def forward(self, x: Tensor) -> Tensor:  # (B, T) -> (B, T, V)
        return self.head(torch.tanh(self.mix(self.norm(self.emb(x)))))


class LMTask(Task):
    def loss(self, model: nn.Module, batch: Any) -> LossOutput:
        x, y = batch
        tok = F.cross_entropy(model(x).flatten(0, 1), y.flatten(), reduction="none").view(y.shape)
        return LossOutput(tok.sum(), torch.tensor(float(y.numel())), {}, tok.sum(1))


def lm_batch(seed: int = 1, n: int = 5, t: int = 7, vocab: int = 11) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, vocab, (n, t), generator=g)
    return x, torch.randint(0, vocab, (n, t), generator=g)


def capture_once(model: nn.Module, task: Task, micro: list[Any]) -> PerSampleGrads:
    """The per-sample gradients the hooks see over the micro-batches of one update."""
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    cap = BackwardCapture(model, names)
    assert cap.why_not is None
    cap.arm()
    total = sum(float(task.loss(model, b).count) for b in micro)
    model.zero_grad()
    for b in micro:
        out = task.loss(model, b)
        (out.sum / total).backward()
        cap.close_micro(len(b[0]), out.count, 1.0 / total, out.per_sample)
    captured = cap.take()
    assert captured is not None, cap.failure
    live = {n: p.grad for n, p in model.named_parameters()}
    assert cap.verify(captured, live) is True
    return captured.grads


@pytest.mark.parametrize(
    ("factory", "task", "batch"),
    [
        (ln_mlp, ClsTask(), cls_batch(n=9)),
        (lambda: TinyLM(), LMTask(), lm_batch()),
        (lambda: TinyLM(tied=True), LMTask(), lm_batch()),
    ],
    ids=["linear+layernorm+rmsnorm", "embedding+sequence", "tied-embedding"],
)
def test_captured_per_sample_grads_match_a_loop_over_samples(factory, task, batch) -> None:  # noqa: ANN001
    model = factory()
    x, y = batch
    half = len(x) // 2
    micro = [(x[:half], y[:half]), (x[half:], y[half:])]  # accumulation: two micro-batches
    ps = capture_once(model, task, micro)
    dense = ps.dense()
    for i, ref in enumerate(brute_per_sample(model, task, batch)):
        for n, g in ref.items():
            torch.testing.assert_close(dense[n][i], g, rtol=1e-4, atol=1e-6, msg=f"{n}, sample {i}")


def test_factored_reductions_equal_the_dense_ones() -> None:
    """Stacks of same-shaped Linear layers in both forms (Gram matrix: w, v, u; direct
    products: s), a dense piece of its own and the block of small ones."""
    g = torch.Generator().manual_seed(0)
    shapes = {"w": (8, 6), "v": (8, 6), "u": (6, 50), "s": (2, 2)}
    factors = {k: (torch.randn(5, o, generator=g), torch.randn(5, i, generator=g)) for k, (o, i) in shapes.items()}
    bias, gain = torch.randn(5, 4, generator=g), torch.randn(5, 2, 2, generator=g)
    big = torch.randn(5, 300, 300, generator=g)  # above FUSE_NUMEL: reduced on its own
    outer = [Outer(k, d, a) for k, (d, a) in factors.items()]
    factored = PerSampleGrads([*outer, Dense("b", bias), Dense("g", gain), Dense("big", big)], 5, "backward")
    assert [len(s.pieces) for s in factored._stacks] == [2, 1, 1]
    assert [s.gram(5) for s in factored._stacks] == [True, True, False]
    dense = PerSampleGrads.from_dense({**{k: torch.einsum("bo,bi->boi", d, a) for k, (d, a) in factors.items()},
                                       "b": bias, "g": gain, "big": big})
    mf, md = factored.moments(), dense.moments()
    for name in ("sample_sq", "sample_dot", "grad_sq", "grad_sum"):
        torch.testing.assert_close(getattr(mf, name), getattr(md, name), rtol=1e-4, atol=1e-4)
    for n, v in md.mean.items():
        torch.testing.assert_close(mf.mean[n], v)
    direction = {n: torch.randn(p.shape, generator=g) for n, p in zip(dense.names, dense.pieces, strict=True)}
    torch.testing.assert_close(factored.project(direction), dense.project(direction), rtol=1e-4, atol=1e-3)
    for n, v in dense.second_moment().items():
        torch.testing.assert_close(factored.second_moment()[n], v)
    plan = factored.element_plan(40, 5, torch.Generator().manual_seed(1))
    values = factored.elements_at(plan)
    assert values.shape == plan.piece.shape
    # each sampled value is an element of its own tensor's per-sample gradients
    flat = {n: t.reshape(-1) for n, t in factored.dense().items()}
    for v, which in zip(values.tolist(), plan.piece.tolist(), strict=True):
        name = factored.names[which]
        assert torch.isclose(flat[name], torch.tensor(v), atol=1e-6).any(), name


PER_SAMPLE_SET = ("norm_test", "inner_test", "ortho_test", "noise_scale_ps", "mean_gsnr", "cabs", "alpha")


@pytest.mark.parametrize(("factory", "task", "batches"), [
    (ln_mlp, ClsTask(), [cls_batch(seed=s, n=8) for s in range(4)]),
    (lambda: TinyLM(tied=True), LMTask(), [lm_batch(seed=s, n=4) for s in range(4)]),
], ids=["mlp", "tied-lm"])
def test_the_runner_gives_the_same_numbers_from_the_backward_as_from_vmap(factory, task, batches) -> None:  # noqa: ANN001
    """Captured (hooks on the training backward) vs torch.func: every per-sample
    instrument, Alpha's next-batch far end included, agrees to float rounding."""
    out = {}
    for capture in (True, False):
        model = factory()
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        runner = runner_for(model, task, preset="off", include=PER_SAMPLE_SET, capture=capture)
        steps = [captured_step(model, task, [b], opt, runner, s) for s, b in enumerate(batches)]
        out[capture] = steps
        assert runner.warnings == [] or all("SGD" in w for w in runner.warnings)
    for got, ref in zip(out[True], out[False], strict=True):
        assert set(got) == set(ref)
        for k, v in ref.items():
            assert got[k] == pytest.approx(v, rel=2e-4, abs=1e-6), k


def test_backward_capture_is_used_and_vmap_is_not(monkeypatch) -> None:  # noqa: ANN001
    def refuse(*_: Any) -> None:
        raise AssertionError("torch.func per-sample gradients were computed")

    monkeypatch.setattr(FunctionalModel, "per_sample_grads", refuse)
    model, task = ln_mlp(), ClsTask()
    runner = runner_for(model, task, preset="economy")
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for s in range(3):
        m = captured_step(model, task, [cls_batch(seed=s, n=8)], opt, runner, s)
        assert m and all(math.isfinite(v) for k, v in m.items() if "update_ratio" not in k)
    assert "inst/alpha" in m and "inst/norm_test" in m and "inst/act_mean/2" in m


class Reuses(nn.Module):
    """Uses its Linear's weight a second time outside the layer: the capture misses that."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.fc = nn.Linear(6, 3)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(x) + F.linear(x, self.fc.weight) * 0.5


def test_a_weight_used_outside_its_layer_turns_the_capture_off_with_a_note() -> None:
    model, task = Reuses(), ClsTask()
    runner = runner_for(model, task, preset="off", include=("norm_test",))
    ref = runner_for(Reuses(), task, preset="off", include=("norm_test",), capture=False)
    got = captured_step(model, task, [cls_batch(n=8)], torch.optim.SGD(model.parameters(), lr=0.0), runner, 0)
    want = train_step(ref.model, task, cls_batch(n=8), torch.optim.SGD(ref.model.parameters(), lr=0.0), ref, 0)
    assert got["inst/norm_test"] == pytest.approx(want["inst/norm_test"], rel=1e-5)
    assert any("do not add up" in w for w in runner.warnings)


def test_a_model_with_other_parameters_keeps_the_vmap_path() -> None:
    conv = nn.Sequential(nn.Conv1d(1, 2, 3), nn.Flatten(), nn.Linear(8, 3))
    cap = BackwardCapture(conv, [n for n, _ in conv.named_parameters()])
    assert cap.why_not is not None and "0.weight" in cap.why_not


def test_activations_come_from_the_training_forward_unchanged() -> None:
    task, batches = ClsTask(), [cls_batch(seed=s, n=8) for s in range(2)]
    results = []
    for use_loop_forward in (True, False):
        model = ln_mlp()
        runner = runner_for(model, task, preset="off", include=("activations", "final_act"))
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        step = captured_step if use_loop_forward else (lambda m, t, mb, o, r, s: train_step(m, t, mb[0], o, r, s))
        results.append([step(model, task, [b], opt, runner, s) for s, b in enumerate(batches)])
    for got, ref in zip(*results, strict=True):
        assert set(got) == set(ref) and "inst/act_saturated_frac" in got
        for k, v in ref.items():
            assert got[k] == pytest.approx(v, rel=1e-5, abs=1e-7), k


def test_sampled_histogram_estimates_the_exact_one() -> None:
    task, batch = ClsTask(), cls_batch(n=16)
    hists = {}
    for elements in (0, 4096):
        model = ln_mlp(w=32)  # 16 samples x 1,766 parameters: 28k elements
        with torch.no_grad():
            model[6].weight.mul_(30.0)  # mass in the edge bins too
        runner = runner_for(model, task, preset="off", include=("grad_hist1d",), hist_samples=0,
                            hist_range=0.05, hist_elements=elements)
        m = captured_step(model, task, [batch], torch.optim.SGD(model.parameters(), lr=0.0), runner, 0)
        hists[elements] = (m, runner.histograms()["grad_hist1d"][-1].counts.double())
    (exact_m, exact), (est_m, est) = hists[0], hists[4096]
    n_params = sum(p.numel() for p in ln_mlp(w=32).parameters())
    assert int(exact.sum()) == 16 * n_params
    assert abs(int(est.sum()) - 4096) <= len(list(ln_mlp().parameters()))  # rounding per tensor
    # shares agree within a few standard errors of a 4096-draw sample
    shares, ref = est / est.sum(), exact / exact.sum()
    assert float((shares - ref).abs().max()) < 4 * math.sqrt(0.25 / 4096)
    assert est_m["inst/grad_hist1d/std"] == exact_m["inst/grad_hist1d/std"]  # exact either way
    assert abs(est_m["inst/grad_hist1d/edge_frac"] - exact_m["inst/grad_hist1d/edge_frac"]) < 0.03


def test_bf16_autocast_is_captured_and_agrees_with_fp32() -> None:
    """Under autocast the output gradients are bf16: the capture is still trusted (looser
    check) and its numbers stay within bf16 rounding of the fp32 ones."""
    task, batches = ClsTask(), [cls_batch(seed=s, n=8) for s in range(3)]
    out = {}
    for low in (True, False):
        model = ln_mlp(w=16)
        runner = runner_for(model, task, preset="off", include=("norm_test", "inner_test"))
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=low):
            out[low] = [captured_step(model, task, [b], opt, runner, s) for s, b in enumerate(batches)]
        assert runner._capture is not None and runner._capture.trusted, runner.warnings
    got, ref = out[True][0], out[False][0]  # the same weights only before the first update
    for k, v in ref.items():
        assert got[k] == pytest.approx(v, rel=0.05), k


def test_alpha_alone_takes_its_start_from_the_backward_too(monkeypatch) -> None:  # noqa: ANN001
    """Alpha without another per-sample instrument: both ends from the training steps (no
    line search at θ_t), the same values as with its own forward and backward passes."""
    task, batches = ClsTask(), [cls_batch(seed=s, n=8) for s in range(4)]
    out = {}
    for capture in (True, False):
        model = ln_mlp()
        runner = runner_for(model, task, preset="off", include=("alpha",), capture=capture)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        if capture:  # the line search must not run at all
            def refuse(*_: Any) -> None:
                raise AssertionError("FunctionalModel.line was called")

            monkeypatch.setattr(runner.fn, "line", refuse)
        out[capture] = [captured_step(model, task, [b], opt, runner, s) for s, b in enumerate(batches)]
    assert [set(m) for m in out[True]] == [set(m) for m in out[False]]
    for got, ref in zip(out[True], out[False], strict=True):
        for k, v in ref.items():
            assert got[k] == pytest.approx(v, rel=2e-4, abs=1e-6), k
