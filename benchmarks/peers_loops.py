"""The training loops of benchmarks/peers.py: the same update written for each framework.

Every loop builds the model with trainwell's seeding (the same initial weights), AdamW as
trainwell builds it by default (torch's fused kernel, weight decay on matrices only) with
its warmup-cosine schedule, draws its batches from trainwell's ``ResumableSampler`` (the
same ids, and the draw is where peers.py reads its clock), clips the global gradient norm
at ``clip.max_norm``, and returns its last loss (read once, after the run).
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class Prepared:
    """A workload's resolved RunConfig and its trainwell Task (model, data and loss)."""

    cfg: Any
    task: Any


def seeded_model(p: Prepared) -> Any:
    from trainwell.train.rng import seed_everything

    seed_everything(p.cfg.seed)  # as trainwell seeds: the same initial weights everywhere
    model = p.task.build_model()
    model.train()
    return model


def optimizer(p: Prepared, model: Any) -> tuple[Any, Any]:
    """AdamW as trainwell builds it by default, and its warmup-cosine schedule."""
    import torch

    cfg = p.cfg
    emb = {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.Embedding)}
    params = [q for q in model.parameters() if q.requires_grad]
    decay = [q for q in params if q.ndim >= 2 and id(q) not in emb]
    rest = [q for q in params if not (q.ndim >= 2 and id(q) not in emb)]
    groups = [g for g in ({"params": decay, "weight_decay": cfg.optim.weight_decay},
                          {"params": rest, "weight_decay": 0.0}) if g["params"]]
    opt = torch.optim.AdamW(groups, lr=cfg.optim.lr, betas=cfg.optim.betas, eps=cfg.optim.eps, fused=True)
    total, warm, floor = cfg.train.steps, cfg.schedule.warmup_steps, cfg.schedule.min_lr_ratio

    def factor(step: int) -> float:  # linear warmup, then cosine down to the floor
        if step < warm:
            return (step + 1) / warm
        t = min(1.0, (step - warm) / max(1, total - warm))
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * t))

    return opt, torch.optim.lr_scheduler.LambdaLR(opt, factor)


def batches(p: Prepared) -> Iterator[Any]:
    from trainwell.data.sampler import ResumableSampler

    data = p.task.train_data()
    sampler = ResumableSampler(len(data), seed=p.cfg.seed)
    while True:
        yield data.get_batch(sampler.draw(p.cfg.train.batch_size))


def mean_loss(p: Prepared, model: Any, batch: Any) -> Any:
    out = p.task.loss(model, batch)
    return out.sum / out.count


# ---------------------------------------------------------------- the setups (each returns its last loss)


def run_plain(p: Prepared, steps: int) -> float:
    import torch

    model = seeded_model(p)
    opt, sched = optimizer(p, model)
    stream = batches(p)
    for _ in range(steps):
        loss = mean_loss(p, model, next(stream))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), p.cfg.clip.max_norm)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
    return loss.item()


def run_trainwell(p: Prepared, steps: int) -> float:
    from trainwell.train.loop import run

    with tempfile.TemporaryDirectory(prefix="tw-peers-") as d:
        result = run(p.cfg, task=p.task, run_dir=Path(d) / "run", progress=False)
    return float([h["train/loss"] for h in result.history if "train/loss" in h][-1])


def run_fit(p: Prepared, steps: int) -> float:
    """``trainwell.fit`` on a TensorDataset of the same tensors, as a user holds them: fit
    indexes it a batch at a time with the same sampler (data/inmemory.py)."""
    import torch
    from torch.utils.data import TensorDataset

    import trainwell

    x, y = p.task.train_data().tensors
    with tempfile.TemporaryDirectory(prefix="tw-peers-") as d:
        result = trainwell.fit(seeded_model(p), TensorDataset(x, y), torch.nn.functional.cross_entropy, p.cfg,
                               run_dir=Path(d) / "run", progress=False)
    return float([h["train/loss"] for h in result.history if "train/loss" in h][-1])


def run_fabric(p: Prepared, steps: int) -> float:
    import lightning as L

    fabric = L.Fabric(accelerator="cpu", devices=1, precision="32-true")
    model = seeded_model(p)
    opt, sched = optimizer(p, model)
    model, opt = fabric.setup(model, opt)
    stream = batches(p)
    for _ in range(steps):
        loss = mean_loss(p, model, next(stream))
        fabric.backward(loss)
        fabric.clip_gradients(model, opt, max_norm=p.cfg.clip.max_norm)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
    return loss.item()


def run_trainer(p: Prepared, steps: int) -> float:
    import lightning as L

    net = seeded_model(p)

    class Module(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = net
            self.last = math.nan

        def training_step(self, batch: Any, index: int) -> Any:
            loss = mean_loss(p, self.net, batch)
            self.last = loss.detach()  # read once, after the run
            return loss

        def configure_optimizers(self) -> Any:
            opt, sched = optimizer(p, self.net)
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    module = Module()
    trainer = L.Trainer(accelerator="cpu", devices=1, max_steps=steps, logger=False, enable_progress_bar=False,
                        enable_model_summary=False, enable_checkpointing=False, num_sanity_val_steps=0,
                        limit_val_batches=0, gradient_clip_val=p.cfg.clip.max_norm)
    trainer.fit(module, train_dataloaders=batches(p))
    return float(module.last)


def run_accelerate(p: Prepared, steps: int) -> float:
    from accelerate import Accelerator

    accelerator = Accelerator(cpu=True)
    model = seeded_model(p)
    opt, sched = optimizer(p, model)
    model, opt, sched = accelerator.prepare(model, opt, sched)
    stream = batches(p)
    for _ in range(steps):
        loss = mean_loss(p, model, next(stream))
        accelerator.backward(loss)
        accelerator.clip_grad_norm_(model.parameters(), p.cfg.clip.max_norm)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
    return loss.item()


def run_cockpit(p: Prepared, steps: int) -> float:
    """Cockpit's own example loop (BackPACK-extended model and loss), plus the clipping and
    schedule of the others; every step measured, as in Cockpit's examples."""
    import torch
    from backpack import extend
    from cockpit import Cockpit
    from cockpit.utils.configuration import configuration

    model = extend(seeded_model(p))
    loss_fn = extend(torch.nn.CrossEntropyLoss())
    per_sample_fn = torch.nn.CrossEntropyLoss(reduction="none")
    opt, sched = optimizer(p, model)
    cockpit = Cockpit(model.parameters(), quantities=configuration("economy"))
    stream = batches(p)
    for step in range(steps):
        x, y = next(stream)
        logits = model(x)  # (B, classes)
        loss = loss_fn(logits, y)
        info = {"batch_size": len(y), "individual_losses": per_sample_fn(logits, y), "loss": loss, "optimizer": opt}
        with cockpit(step, info=info):
            loss.backward(create_graph=cockpit.create_graph(step))
        torch.nn.utils.clip_grad_norm_(model.parameters(), p.cfg.clip.max_norm)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
    return loss.item()


RUNNERS: dict[str, Callable[[Prepared, int], float]] = {
    "plain": run_plain, "plain_bp": run_plain, "trainwell": run_trainwell, "fit": run_fit, "tw_economy": run_trainwell, "fabric": run_fabric,
    "trainer": run_trainer, "accelerate": run_accelerate, "cockpit": run_cockpit}
