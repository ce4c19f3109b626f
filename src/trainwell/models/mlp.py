"""A multilayer perceptron classifier, plain or residual."""

from __future__ import annotations

from torch import Tensor, nn

from trainwell.models.activations import make_activation
from trainwell.models.init import feeds, zero_init
from trainwell.models.norms import make_norm


def _dropout(p: float) -> nn.Module:
    # Identity when off: no module call in the hot path for the common p = 0
    return nn.Dropout(p) if p > 0 else nn.Identity()


class ResidualBlock(nn.Module):
    """x + W2 act(W1 norm(x)): a pre-norm residual block (He et al. 2016, "Identity
    mappings"); with W2 zeroed it is the identity at init."""

    def __init__(
        self, width: int, activation: str, norm: str, dropout: float, zero_init_residual: bool
    ) -> None:
        super().__init__()
        self.norm = make_norm(norm, width)
        self.fc1 = feeds(nn.Linear(width, width), activation)
        self.act = make_activation(activation)
        self.drop = _dropout(dropout)
        self.fc2 = feeds(nn.Linear(width, width), None)
        if zero_init_residual:
            zero_init(self.fc2)

    def forward(self, x: Tensor) -> Tensor:  # (B, W) -> (B, W)
        return x + self.fc2(self.drop(self.act(self.fc1(self.norm(x)))))


class MLP(nn.Module):
    """Flattens its input (B, *input_shape) and returns logits (B, num_classes).

    Plain: ``depth`` times [Linear -> norm -> activation -> dropout], then a Linear head.
    Residual: an input projection, ``depth`` ResidualBlocks, a final norm, then the head.
    Residual connections make depth trainable. With BatchNorm the Linear before
    it has no bias (the norm's shift replaces it).
    """

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        width: int = 128,
        depth: int = 2,
        activation: str = "relu",
        norm: str = "none",
        residual: bool = False,
        dropout: float = 0.0,
        zero_init_residual: bool = True,
    ) -> None:
        super().__init__()
        self.in_features = in_features
        layers: list[nn.Module] = []
        if residual:
            layers.append(feeds(nn.Linear(in_features, width), None))
            layers += [
                ResidualBlock(width, activation, norm, dropout, zero_init_residual)
                for _ in range(depth)
            ]
            layers.append(make_norm(norm, width))
        else:
            fan_in = in_features
            for _ in range(depth):
                layers.append(feeds(nn.Linear(fan_in, width, bias=norm != "batch"), activation))
                layers += [make_norm(norm, width), make_activation(activation), _dropout(dropout)]
                fan_in = width
        self.body = nn.Sequential(*layers)
        self.head = feeds(nn.Linear(width, num_classes), None)

    @property
    def final_layer(self) -> nn.Module:
        """The output layer (its input is the activation whose norm OPT watched)."""
        return self.head

    def forward(self, x: Tensor) -> Tensor:
        x = x.flatten(1)  # (B, D)
        return self.head(self.body(x))  # (B, num_classes)
