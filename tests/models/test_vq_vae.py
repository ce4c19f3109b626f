"""VectorQuantizer against a hand computation; the VAE's two bottlenecks end to end."""

from __future__ import annotations

import pytest
import torch

from trainwell.models import VAE, VectorQuantizer


def hand_quantizer(commitment: float = 0.25) -> VectorQuantizer:
    vq = VectorQuantizer(codebook_size=2, dim=2, commitment=commitment)
    with torch.no_grad():
        vq.codebook.weight.copy_(torch.tensor([[0.0, 0.0], [2.0, 0.0]]))
    return vq


def test_vq_codes_and_losses_match_a_hand_computation() -> None:
    vq = hand_quantizer(0.25)
    z_e = torch.tensor([[0.5, 0.5], [1.8, -0.2]], requires_grad=True)
    out = vq(z_e)
    assert out.codes.tolist() == [0, 1]
    torch.testing.assert_close(out.z_q, torch.tensor([[0.0, 0.0], [2.0, 0.0]]))
    # squared distances to the chosen codes: 0.5^2 + 0.5^2 and 0.2^2 + 0.2^2
    dist = torch.tensor([0.5, 0.08])
    torch.testing.assert_close(out.loss, dist + 0.25 * dist)
    out.loss.sum().backward()
    # codebook term moves the codes towards the inputs: d/de ||e - sg(z)||^2 = 2 (e - z)
    torch.testing.assert_close(vq.codebook.weight.grad, torch.tensor([[-1.0, -1.0], [0.4, 0.4]]))
    # commitment term pulls the inputs towards their codes: d/dz 0.25 ||z - sg(e)||^2 = 0.5 (z - e)
    torch.testing.assert_close(z_e.grad, torch.tensor([[0.25, 0.25], [-0.1, -0.1]]))


def test_vq_straight_through_gradient_is_the_identity() -> None:
    vq = hand_quantizer()
    z_e = torch.tensor([[0.5, 0.5], [1.8, -0.2]], requires_grad=True)
    upstream = torch.tensor([[1.0, -2.0], [3.0, 0.5]])
    (vq(z_e).z_q * upstream).sum().backward()
    torch.testing.assert_close(z_e.grad, upstream)
    # the reconstruction gradient does not reach the codebook (only its own loss does)
    grad = vq.codebook.weight.grad
    assert grad is None or grad.abs().sum() == 0


def test_vq_on_sequences_sums_the_loss_per_sample() -> None:
    torch.manual_seed(0)
    vq = VectorQuantizer(8, 4, commitment=0.5)
    z_e = torch.randn(3, 5, 4)  # (B, T, dim)
    out = vq(z_e)
    assert out.z_q.shape == (3, 5, 4) and out.codes.shape == (3, 5)
    nearest = torch.cdist(z_e.reshape(-1, 4), vq.codebook.weight).argmin(-1).view(3, 5)
    assert torch.equal(out.codes, nearest)
    expected = 1.5 * (vq.codebook.weight[nearest] - z_e).pow(2).sum(dim=(1, 2))
    torch.testing.assert_close(out.loss, expected)


def test_gaussian_vae_kl_and_gradients() -> None:
    torch.manual_seed(0)
    vae = VAE(12, latent_dim=3, width=8, depth=2)
    x = torch.rand(4, 3, 4)
    out = vae(x)
    assert out.recon_logits.shape == (4, 12) and out.z.shape == (4, 3)
    assert torch.equal(out.vq_loss, torch.zeros(4))
    mu, logvar = vae.encoder(x.flatten(1)).chunk(2, dim=-1)
    q = torch.distributions.Normal(mu, (0.5 * logvar).exp())
    p = torch.distributions.Normal(torch.zeros_like(mu), torch.ones_like(mu))
    torch.testing.assert_close(out.kl, torch.distributions.kl_divergence(q, p).sum(-1))
    # reparameterisation: the reconstruction loss alone trains the encoder
    recon = torch.nn.functional.binary_cross_entropy_with_logits(out.recon_logits, x.flatten(1))
    recon.backward()
    assert vae.encoder[0].weight.grad.abs().sum() > 0


def test_vq_vae_gradient_reaches_the_encoder() -> None:
    torch.manual_seed(0)
    vae = VAE(12, latent_dim=4, width=8, depth=1, vq=True, codebook_size=5)
    x = torch.rand(6, 12)
    out = vae(x)
    assert torch.equal(out.kl, torch.zeros(6))
    assert out.vq_loss.shape == (6,) and (out.vq_loss > 0).all()
    assert out.codes is not None and out.codes.shape == (6,)
    torch.nn.functional.binary_cross_entropy_with_logits(out.recon_logits, x).backward()
    assert vae.encoder[0].weight.grad.abs().sum() > 0


@pytest.mark.parametrize("vq", [False, True])
def test_sample_gives_reproducible_probabilities(vq: bool) -> None:
    torch.manual_seed(0)
    vae = VAE(10, latent_dim=2, width=8, depth=1, vq=vq)
    a = vae.sample(7, generator=torch.Generator().manual_seed(3))
    b = vae.sample(7, generator=torch.Generator().manual_seed(3))
    assert a.shape == (7, 10)
    assert ((a > 0) & (a < 1)).all()
    torch.testing.assert_close(a, b)
