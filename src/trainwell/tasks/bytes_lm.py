"""bytes-lm (the default task): a byte-level causal language model.

Data without a download: the source code of the running Python's standard library (about
700 files, 12 MB), split into training and validation by file (and, with
``task.test_fraction``, a test split of other files). With ``task.data`` it reads a
folder of text files (or one text file) the same way, or a ``.bin`` file of uint16 tokens as
nanoGPT's prepare scripts write them.

Metric: bits per byte ("bpb" = cross-entropy in nats per target / ln 2; a uniform guess over
256 byte values scores exactly 8). On a token file the targets are tokens of an unknown
tokenizer, so the same quantity is reported as "bits_per_token" instead (not comparable
with bpb: a token spans several bytes).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from trainwell.data.corpus import TokenSplit, load_stdlib_corpus, load_text_folder
from trainwell.data.token_file import load_token_bin
from trainwell.data.windows import TokenWindows
from trainwell.errors import DataError
from trainwell.models import ModelSpec, build_model
from trainwell.tasks.base import LossOutput, MetricSums, Task, TaskSpec

if TYPE_CHECKING:
    from trainwell.config import RunConfig

SAMPLE_PROMPT = "def "
"""Python-like start for the end-of-run sample, so a trained model shows it learned code."""
SAMPLE_SEED = 0
"""Fixed sampling seed: the same checkpoint always shows the same sample."""
SAMPLE_TEMPERATURE = 0.8
"""Slightly sharpened: small models' samples at 1.0 are noisy, and well below ~0.7 they loop."""


class BytesLM(Task):
    """Next-token prediction on windows of ``task.seq_len`` + 1 tokens (stride seq_len)."""

    name = "bytes-lm"
    metric = "bpb"
    higher_is_better = False
    unit = "tokens"

    def __init__(self, cfg: RunConfig) -> None:
        self.cfg = cfg
        self.seq_len = cfg.task.seq_len
        self.z_loss = cfg.task.z_loss
        data = cfg.task.data
        self.split, source = load_lm_data(data, cfg.task.val_fraction, cfg.task.test_fraction)
        self.is_bytes = self.split.train.dtype == np.uint8
        self.metric = "bpb" if self.is_bytes else "bits_per_token"
        self.vocab_size = self.split.vocab_size
        # one line for the console: where the data came from and how big each split is
        self.data_summary = f"{source}: {self.split.summary()}"
        where = f"task.data = {data!r}" if data else f"the standard library corpus ({source})"
        self._train = _windows(self.split.train, self.seq_len, "training", where)
        self._val = _windows(self.split.val, self.seq_len, "validation", where)
        test = self.split.test
        self._test = _windows(test, self.seq_len, "test", where) if test is not None else None

    def build_model(self) -> nn.Module:
        spec = ModelSpec(vocab_size=self.vocab_size, seq_len=self.seq_len)
        return build_model(self.cfg.model, spec)

    def train_data(self) -> Dataset:
        return self._train

    def eval_data(self) -> Dataset:
        return self._val

    def test_data(self) -> Dataset | None:
        return self._test

    def loss(self, model: nn.Module, batch: Any) -> LossOutput:
        x, y = batch  # (B, T), (B, T) int64
        # fp32 logits: log-sum-exp in bf16 loses the small differences the loss is made of
        logits = model(x).float()  # (B, T, V)
        lse = torch.logsumexp(logits, dim=-1)  # (B, T) log partition function log Z
        ce = lse - logits.gather(-1, y.unsqueeze(-1)).squeeze(-1)  # (B, T) -log p(y)
        per_sample = ce.sum(dim=1)  # (B,)
        components = {"ce": ce.sum()}
        if self.z_loss > 0:
            # z-loss (PaLM, Chowdhery et al. 2022): pulls log Z towards 0 so the logits
            # cannot drift upwards together, which destabilises bf16 softmax
            z = self.z_loss * lse.square()  # (B, T)
            per_sample = per_sample + z.sum(dim=1)
            components["z"] = z.sum()
        count = float(y.numel())
        return LossOutput(per_sample.sum(), count, components, per_sample, logits)

    def metrics(self, model: nn.Module, batch: Any) -> MetricSums:
        out = self.loss(model, batch)
        bits = out.components["ce"].detach() / math.log(2)  # nats -> bits
        return {self.metric: (bits, out.count), "loss": (out.sum.detach(), out.count)}

    def sample(self, model: nn.Module, n: int) -> str | None:
        """``n`` bytes generated after SAMPLE_PROMPT with a fixed seed (None on token files:
        their tokenizer is unknown, so tokens cannot be turned back into text)."""
        generate = getattr(model, "generate", None)
        if not self.is_bytes or generate is None:
            return None
        device = next(model.parameters()).device
        prompt = torch.tensor([list(SAMPLE_PROMPT.encode("utf-8"))], device=device)  # (1, P)
        gen = torch.Generator(device=device).manual_seed(SAMPLE_SEED)
        was_training = model.training
        model.eval()  # no dropout while sampling
        try:
            with torch.no_grad():
                out = generate(prompt, n, temperature=SAMPLE_TEMPERATURE, generator=gen)
        finally:
            model.train(was_training)
        text = bytes(out[0].tolist()).decode("utf-8", errors="replace")  # (P + n,) ids
        return text.replace("\x00", "\u2400")  # show the file separator instead of hiding it


def load_lm_data(data: str | None, val_fraction: float, test_fraction: float = 0.0) -> tuple[TokenSplit, str]:
    """(token split, a short description of the source) for ``task.data``."""
    if val_fraction + test_fraction >= 0.9:
        raise DataError(
            f"task.val_fraction + task.test_fraction = {val_fraction + test_fraction:g} leaves "
            "under 10% of the data to train on; lower one of them"
        )
    if not data:
        split = load_stdlib_corpus(val_fraction, test_fraction)
        return split, "Python standard library source"
    path = Path(data).expanduser()
    if not path.exists():
        raise DataError(
            f"task.data = {data!r}: no such file or folder; expected a folder of text files, "
            "a text file, or a .bin file of uint16 tokens (nanoGPT's format)"
        )
    if path.suffix == ".bin" and path.is_file():
        return load_token_bin(path, val_fraction, test_fraction), f"uint16 tokens from {path}"
    return load_text_folder(path, val_fraction, test_fraction), f"bytes of {path}"


def _windows(tokens: np.ndarray, seq_len: int, which: str, where: str) -> TokenWindows:
    windows = TokenWindows(tokens, seq_len)
    if len(windows) == 0:
        raise DataError(
            f"{where}: the {which} split has {len(tokens)} tokens, fewer than "
            f"task.seq_len + 1 = {seq_len + 1}; lower task.seq_len, change task.val_fraction "
            "or add data"
        )
    return windows


DEFAULTS: dict[str, Any] = {
    # 128 bytes of context is a few lines of code: enough to learn syntax and
    # indentation, and the attention cost stays small on a CPU
    "task": {"seq_len": 128},
    # a small GPT: ~0.8M parameters train quickly on 2 CPU cores
    "model": {"kind": "gpt", "depth": 4, "width": 128, "heads": 4},
    # eval_batches caps evaluation at 16 x 32 x 128 = 65k bytes (a few seconds on CPU)
    # 900 steps: the default run must end within 5 minutes on 2 CPU cores below 2.0 bpb.
    # Measured on such a machine (same config otherwise): 1000 steps reached 1.911 bpb in
    # 244-275 s of training (quiet vs a slower hour), 800 steps 1.968 in 209 s; 900 keeps
    # both margins.
    "train": {"steps": 900, "batch_size": 32, "eval_every": 200, "eval_batches": 16},
    # small transformers take a higher peak LR than the 1e-3 default (nanoGPT's
    # character-level Shakespeare model uses 1e-3 at 10M parameters; smaller -> higher).
    # Measured on 2 CPU cores: at 4e-3 (QK-norm and warmup keep it stable) a 1000-step run
    # was at validation bpb 2.74 after 200 steps, where a 200-step run at 2e-3 whose cosine
    # had fully decayed reached 2.81.
    "optim": {"lr": 4e-3},
    "schedule": {"warmup_steps": 50},
}

SPEC = TaskSpec(
    name="bytes-lm",
    help="byte-level GPT on the Python standard library's source (or task.data); metric: bits per byte",
    build=lambda cfg: BytesLM(cfg),
    defaults=DEFAULTS,
)
