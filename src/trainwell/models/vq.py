"""Vector quantisation bottleneck (VQ-VAE; van den Oord et al. 2017, "Neural discrete
representation learning"), usable on its own as a layer."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn


@dataclass
class VQOutput:
    z_q: Tensor
    """(B, ..., dim) the nearest codes, with the straight-through gradient to the input."""
    codes: Tensor
    """(B, ...) long: index of the chosen code for each vector."""
    loss: Tensor
    """(B,) per-sample codebook loss + commitment * commitment loss (summed over vectors)."""


class VectorQuantizer(nn.Module):
    """Replace each ``dim``-vector of the input (channels last) by its nearest code.

    The forward value is the code; the backward pass copies the gradient straight through
    to the encoder output (z_e + sg[z_q - z_e]), since argmin has no gradient. Two loss
    terms, per sample, with sg = stop-gradient and squared L2 distances summed over the
    sample's vectors (eq. 3 of the paper):

        codebook   = ||sg[z_e] - z_q||^2   moves the codes towards the encoder outputs
        commitment = ||z_e - sg[z_q]||^2   keeps the encoder close to its chosen codes

    ``loss = codebook + commitment_weight * commitment``; the paper uses 0.25.
    """

    def __init__(self, codebook_size: int, dim: int, commitment: float = 0.25) -> None:
        super().__init__()
        self.codebook_size, self.dim, self.commitment = codebook_size, dim, commitment
        # N(0, 1) codes (nn.Embedding's default): the scale of a normalised encoder output,
        # so that at init every code is near some inputs and gets chosen
        self.codebook = nn.Embedding(codebook_size, dim)

    def forward(self, z_e: Tensor) -> VQOutput:
        if z_e.shape[-1] != self.dim:
            raise ValueError(
                f"expected vectors of size {self.dim} in the last dim, got {tuple(z_e.shape)}"
            )
        z_e = z_e.float()  # distances in fp32 pick the same code on every precision
        flat = z_e.reshape(-1, self.dim)  # (N, dim)
        codes = torch.cdist(flat, self.codebook.weight).argmin(dim=-1)  # (N,)
        codes = codes.view(z_e.shape[:-1])  # (B, ...)
        z_q = self.codebook(codes)  # (B, ..., dim)
        codebook = (z_q - z_e.detach()).pow(2).flatten(1).sum(1)  # (B,)
        commit = (z_e - z_q.detach()).pow(2).flatten(1).sum(1)  # (B,)
        z_st = z_e + (z_q - z_e).detach()  # value z_q, gradient straight to z_e
        return VQOutput(z_q=z_st, codes=codes, loss=codebook + self.commitment * commit)

    def lookup(self, codes: Tensor) -> Tensor:
        """(B, ...) code indices -> (B, ..., dim) code vectors."""
        return self.codebook(codes)
