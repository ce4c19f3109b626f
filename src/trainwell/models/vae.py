"""A variational autoencoder on flat inputs in [0, 1] (Kingma & Welling 2014), with a
Gaussian latent or a vector-quantised one (van den Oord et al. 2017)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from trainwell.models.activations import make_activation
from trainwell.models.init import feeds
from trainwell.models.vq import VectorQuantizer


@dataclass
class VAEOutput:
    recon_logits: Tensor
    """(B, D) Bernoulli logits of the reconstruction (sigmoid gives probabilities)."""
    kl: Tensor
    """(B,) KL(q(z|x) || N(0, I)) per sample; zeros for the vq bottleneck."""
    vq_loss: Tensor
    """(B,) codebook + commitment loss per sample; zeros for the Gaussian latent."""
    z: Tensor
    """(B, latent_dim) the latent the decoder read (a sample, or the chosen codes)."""
    codes: Tensor | None = None
    """(B,) chosen code per sample (vq only)."""


def _stack(d_in: int, width: int, depth: int, activation: str) -> list[nn.Module]:
    layers: list[nn.Module] = []
    for _ in range(depth):
        layers += [feeds(nn.Linear(d_in, width), activation), make_activation(activation)]
        d_in = width
    return layers


class VAE(nn.Module):
    """(B, *input_shape) in [0, 1] -> VAEOutput. Encoder and decoder are MLPs of ``depth``
    hidden layers of ``width``; the ELBO's reconstruction term is the task's (Bernoulli
    cross-entropy on ``recon_logits``), its regulariser is ``kl`` or ``vq_loss``."""

    def __init__(
        self,
        input_dim: int,
        latent_dim: int = 16,
        width: int = 128,
        depth: int = 2,
        activation: str = "relu",
        vq: bool = False,
        codebook_size: int = 64,
        commitment: float = 0.25,
    ) -> None:
        super().__init__()
        self.input_dim, self.latent_dim = input_dim, latent_dim
        # Gaussian: the encoder outputs mean and log-variance; vq: one vector to quantise
        enc_out = latent_dim if vq else 2 * latent_dim
        self.encoder = nn.Sequential(
            *_stack(input_dim, width, depth, activation), feeds(nn.Linear(width, enc_out), None)
        )
        self.quantizer = VectorQuantizer(codebook_size, latent_dim, commitment) if vq else None
        self.decoder = nn.Sequential(
            *_stack(latent_dim, width, depth, activation), feeds(nn.Linear(width, input_dim), None)
        )

    @property
    def final_layer(self) -> nn.Module:
        """The output layer (its input is the activation whose norm OPT watched)."""
        return self.decoder[-1]

    def forward(self, x: Tensor) -> VAEOutput:
        h = self.encoder(x.flatten(1))  # (B, enc_out)
        if self.quantizer is not None:
            q = self.quantizer(h)
            zeros = torch.zeros_like(q.loss)
            return VAEOutput(self.decoder(q.z_q), zeros, q.loss, q.z_q, q.codes)
        mu, logvar = h.float().chunk(2, dim=-1)  # (B, L) each, fp32 for exp and the KL
        # reparameterisation: z = mu + sigma * eps keeps the sample differentiable in mu, sigma
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
        # closed-form KL of N(mu, sigma^2) from N(0, 1), summed over latent dims
        kl = 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(dim=-1)  # (B,)
        return VAEOutput(self.decoder(z), kl, torch.zeros_like(kl), z)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` samples from the prior, decoded to probabilities (n, D).

        Gaussian: z ~ N(0, I). vq: codes drawn uniformly, a stand-in for the learned
        prior (van den Oord et al. fit a PixelCNN over codes), so only a quick look.
        """
        device = self.decoder[-1].weight.device
        if self.quantizer is not None:
            codes = torch.randint(
                self.quantizer.codebook_size, (n,), generator=generator, device=device
            )
            z = self.quantizer.lookup(codes)
        else:
            z = torch.randn(n, self.latent_dim, generator=generator, device=device)
        return torch.sigmoid(self.decoder(z).float())
