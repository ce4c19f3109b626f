"""One contract for every registered optimizer: it steps, honours the loop's lr, and its
state survives a checkpoint (torch.save / torch.load(weights_only=True)) bit for bit."""

from __future__ import annotations

import copy
import io

import pytest
import torch
from torch import nn

from trainwell.errors import ConfigError
from trainwell.optim import OPTIMIZERS, build_optimizer
from trainwell.optim.config import OptimConfig

ALL = OPTIMIZERS.names()
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)]


class TinyLM(nn.Module):
    """Every kind of parameter the builders route: embedding, hidden matrix, bias, norm,
    an untied output head."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(7, 4)
        self.hidden = nn.Linear(4, 5)
        self.norm = nn.LayerNorm(5)
        self.head = nn.Linear(5, 7)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T) -> (B, T, V)
        return self.head(self.norm(torch.tanh(self.hidden(self.emb(x)))))


def _model(seed: int = 0, device: str = "cpu") -> TinyLM:
    torch.manual_seed(seed)
    return TinyLM().to(device)


def _batches(n: int, device: str = "cpu") -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(1)
    out = []
    for _ in range(n):
        x, y = torch.randint(0, 7, (3, 5), generator=g), torch.randint(0, 7, (3, 5), generator=g)
        out.append((x.to(device), y.to(device)))
    return out


def _update(model: nn.Module, opt: torch.optim.Optimizer, batch, factor: float) -> float:
    x, y = batch
    for group in opt.param_groups:  # what the loop does before every update
        group["lr"] = group["initial_lr"] * factor
    opt.zero_grad(set_to_none=True)
    loss = nn.functional.cross_entropy(model(x).flatten(0, 1), y.flatten())
    loss.backward()
    opt.step()
    return loss.item()


def _cfg(name: str) -> OptimConfig:
    return OptimConfig(name=name, lr=1e-2)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", ALL)
def test_steps_and_changes_every_trainable_parameter(name: str, device: str) -> None:
    model = _model(device=device)
    before = [p.detach().clone() for p in model.parameters()]
    opt = build_optimizer(_cfg(name), model)
    for batch in _batches(2, device):
        _update(model, opt, batch, 1.0)
    for b, p in zip(before, model.parameters(), strict=True):
        assert torch.isfinite(p).all()
        assert not torch.equal(b, p), f"{name} did not update a parameter of shape {tuple(p.shape)}"


@pytest.mark.parametrize("name", ALL)
def test_lowers_the_loss_on_a_fixed_batch(name: str) -> None:
    model, batch = _model(), _batches(1)[0]
    opt = build_optimizer(_cfg(name), model)
    losses = [_update(model, opt, batch, 1.0) for _ in range(8)]
    # Deterministic on CPU; the slowest starters (radam's rectified warmup, shampoo) reach
    # about 0.95 of the first loss in 8 steps at lr 1e-2.
    assert losses[-1] < 0.98 * losses[0], f"{name}: {losses[0]:.3f} -> {losses[-1]:.3f}"


@pytest.mark.parametrize("name", ALL)
def test_every_group_carries_initial_lr(name: str) -> None:
    opt = build_optimizer(_cfg(name), _model())
    assert opt.param_groups
    assert all(g["initial_lr"] == 1e-2 for g in opt.param_groups)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", ALL)
def test_state_round_trips_bitwise(name: str, device: str) -> None:
    batches = _batches(3, device)
    model = _model(device=device)
    opt = build_optimizer(_cfg(name), model)
    _update(model, opt, batches[0], 0.5)
    _update(model, opt, batches[1], 1.0)

    saved_model = copy.deepcopy(model.state_dict())
    buf = io.BytesIO()
    torch.save(opt.state_dict(), buf)  # as a checkpoint would, then load the safe way

    _update(model, opt, batches[2], 0.8)  # continue

    fresh = _model(
        seed=123, device=device
    )  # different init: everything must come from the checkpoint
    fresh.load_state_dict(saved_model)
    fresh_opt = build_optimizer(_cfg(name), fresh)
    buf.seek(0)
    fresh_opt.load_state_dict(torch.load(buf, weights_only=True, map_location=device))
    _update(fresh, fresh_opt, batches[2], 0.8)

    for (n, a), b in zip(model.named_parameters(), fresh.parameters(), strict=True):
        assert torch.equal(a, b), f"{name}: {n} differs after resume"


def test_lr_factor_zero_leaves_sgd_weights_unchanged() -> None:
    # The loop's lr is what the optimizer uses: a zero factor means no move.
    model = _model()
    opt = build_optimizer(OptimConfig(name="sgd", lr=0.1, weight_decay=0.0), model)
    before = [p.detach().clone() for p in model.parameters()]
    _update(model, opt, _batches(1)[0], 0.0)
    assert all(torch.equal(b, p) for b, p in zip(before, model.parameters(), strict=True))


def test_sgd_settings_come_from_config() -> None:
    opt = build_optimizer(OptimConfig(name="sgd", momentum=0.8, nesterov=True), _model())
    assert opt.param_groups[0]["momentum"] == 0.8 and opt.param_groups[0]["nesterov"]
    # Nesterov without momentum is meaningless (and torch rejects it): quietly off.
    opt = build_optimizer(OptimConfig(name="sgd", momentum=0.0, nesterov=True), _model())
    assert not opt.param_groups[0]["nesterov"]


def test_adamw_defaults_come_from_config() -> None:
    opt = build_optimizer(OptimConfig(), _model())
    assert isinstance(opt, torch.optim.AdamW)
    decay = {g["name"]: g for g in opt.param_groups}
    assert decay["decay"]["betas"] == (0.9, 0.95)
    assert decay["decay"]["weight_decay"] == 0.1 and decay["no_decay"]["weight_decay"] == 0.0


def test_muon_only_on_hidden_matrices() -> None:
    model = _model()
    opt = build_optimizer(OptimConfig(name="muon", weight_decay=0.1), model)
    groups = {g["name"]: g for g in opt.param_groups}
    ids = lambda g: {id(p) for p in g["params"]}  # noqa: E731
    assert ids(groups["muon"]) == {id(model.hidden.weight)}
    assert groups["muon"]["use_muon"] and groups["muon"]["weight_decay"] == 0.1
    # The untied head is a matrix: AdamW with decay. Embedding, biases, gains: AdamW, no decay.
    assert ids(groups["adamw_decay"]) == {id(model.head.weight)}
    assert groups["adamw_decay"]["weight_decay"] == 0.1
    assert ids(groups["adamw_no_decay"]) == {
        id(model.emb.weight),
        id(model.hidden.bias),
        id(model.norm.weight),
        id(model.norm.bias),
        id(model.head.bias),
    }
    assert not groups["adamw_no_decay"]["use_muon"]


def test_schedulefree_is_returned_in_train_mode() -> None:
    opt = build_optimizer(OptimConfig(name="schedulefree_adamw"), _model())
    assert all(g["train_mode"] for g in opt.param_groups)
    assert hasattr(opt, "eval") and hasattr(opt, "train")


def test_unknown_optimizer_suggests_the_close_name() -> None:
    with pytest.raises(ConfigError, match="did you mean 'adamw'") as e:
        build_optimizer(OptimConfig(name="adamww"), _model())
    assert "optim.name" in str(e.value) and "lion" in str(e.value)


@pytest.mark.gpu
def test_adamw_is_fused_on_cuda() -> None:
    model = _model(device="cuda")
    opt = build_optimizer(OptimConfig(), model)
    assert opt.param_groups[0]["fused"]
    _update(model, opt, _batches(1, "cuda")[0], 1.0)


@pytest.mark.parametrize("name", ["adamw", "adam", "sgd"])
def test_fused_kernel_on_cpu_matches_the_foreach_path(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """On a CPU the optimizers with a fused kernel get it (several times faster on small
    models); its updates agree with torch's foreach path to float rounding, and a state
    saved by either loads into the other."""
    from trainwell.optim import optimizers

    cfg = OptimConfig(name=name, lr=1e-2, weight_decay=0.1)
    model, ref = _model(), _model()
    opt = build_optimizer(cfg, model)
    with monkeypatch.context() as m:
        m.setattr(optimizers, "_speed", lambda groups, fused: {"foreach": True})
        ref_opt = build_optimizer(cfg, ref)
    assert all(g["fused"] and not g["foreach"] for g in opt.param_groups)
    assert all(g["foreach"] and not g["fused"] for g in ref_opt.param_groups)

    def both(batches: list) -> None:
        for batch in batches:
            a, b = _update(model, opt, batch, 1.0), _update(ref, ref_opt, batch, 1.0)
            assert a == pytest.approx(b, rel=1e-5)
        for p, q in zip(model.parameters(), ref.parameters(), strict=True):
            torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)

    both(_batches(12))
    # a resume across the two paths: the state of one loads into the other
    state = copy.deepcopy(opt.state_dict())
    opt.load_state_dict(ref_opt.state_dict())
    ref_opt.load_state_dict(state)
    model.load_state_dict(ref.state_dict())
    both(_batches(4))


def test_optimizers_without_a_fused_cpu_kernel_use_foreach() -> None:
    opt = build_optimizer(OptimConfig(name="rmsprop"), _model())
    assert all(g["foreach"] and not g.get("fused") for g in opt.param_groups)
    opt = build_optimizer(OptimConfig(name="adamw"), _model().to(torch.float64))
    assert all(g["fused"] for g in opt.param_groups)  # any floating dtype
