"""A small DeepOBS-style conv net (2c2d / 3c3d, Schneider et al. 2019) for small images."""

from __future__ import annotations

from torch import Tensor, nn

from trainwell.models.activations import make_activation
from trainwell.models.init import feeds
from trainwell.models.norms import make_norm


class ConvNet(nn.Module):
    """(B, C, H, W) images -> logits (B, num_classes).

    ``depth`` conv stages, each [3x3 conv -> norm -> activation -> 2x2 max-pool], with
    ``width * 2**i`` channels at stage i (2 stages of 32, 64 is DeepOBS 2c2d's channel plan);
    then two fully connected layers, the hidden one of ``fc_width`` units. Kernels are 3x3
    rather than DeepOBS's 5x5 because the default images are 8x8 digits. A stage pools only
    while the feature map is at least 2x2, so any depth fits any image size.
    """

    def __init__(
        self,
        input_shape: tuple[int, int, int],
        num_classes: int,
        width: int = 32,
        depth: int = 2,
        activation: str = "relu",
        norm: str = "none",
        dropout: float = 0.0,
        fc_width: int | None = None,
    ) -> None:
        super().__init__()
        channels, height, wide = input_shape
        layers: list[nn.Module] = []
        for i in range(depth):
            out = width * 2**i
            # with BatchNorm after the conv its bias is redundant (the norm's shift replaces it)
            conv = nn.Conv2d(channels, out, 3, padding=1, bias=norm != "batch")
            layers += [feeds(conv, activation), make_norm(norm, out, conv=True)]
            layers.append(make_activation(activation))
            if height >= 2 and wide >= 2:
                layers.append(nn.MaxPool2d(2))
                height, wide = height // 2, wide // 2
            channels = out
        self.features = nn.Sequential(*layers)
        # DeepOBS uses a wide hidden layer (1024 for 2c2d); 4x the last stage's channels
        # keeps that ratio for our small widths
        hidden = fc_width if fc_width is not None else 4 * channels
        self.classifier = nn.Sequential(
            nn.Flatten(),
            feeds(nn.Linear(channels * height * wide, hidden), activation),
            make_activation(activation),
            nn.Dropout(dropout) if dropout > 0 else nn.Identity(),
            feeds(nn.Linear(hidden, num_classes), None),
        )

    @property
    def final_layer(self) -> nn.Module:
        """The output layer (its input is the activation whose norm OPT watched)."""
        return self.classifier[-1]

    def forward(self, x: Tensor) -> Tensor:  # (B, C, H, W) -> (B, num_classes)
        return self.classifier(self.features(x))
