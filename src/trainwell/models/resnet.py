"""A small pre-activation ResNet (He et al. 2016, "Identity mappings in deep residual networks")."""

from __future__ import annotations

from torch import Tensor, nn

from trainwell.models.activations import make_activation
from trainwell.models.init import feeds, zero_init
from trainwell.models.norms import make_norm


class PreActBlock(nn.Module):
    """shortcut(x) + conv2(act(norm2(conv1(act(norm1(x)))))).

    Pre-activation keeps the shortcut path clean, so with conv2 zeroed
    (``zero_init_residual``, Goyal et al. 2017) a block whose shortcut is the identity is
    exactly the identity at init. A block that changes shape (stride 2 or more channels)
    uses a 1x1 conv on the shortcut instead.
    """

    def __init__(
        self,
        c_in: int,
        c_out: int,
        stride: int,
        activation: str,
        norm: str,
        zero_init_residual: bool,
    ) -> None:
        super().__init__()
        conv_bias = norm == "none"  # a following norm's shift replaces a conv bias
        self.norm1 = make_norm(norm, c_in, conv=True)
        self.act1 = make_activation(activation)
        self.conv1 = feeds(nn.Conv2d(c_in, c_out, 3, stride, 1, bias=conv_bias), activation)
        self.norm2 = make_norm(norm, c_out, conv=True)
        self.act2 = make_activation(activation)
        self.conv2 = feeds(nn.Conv2d(c_out, c_out, 3, 1, 1, bias=True), None)
        if zero_init_residual:
            zero_init(self.conv2)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = feeds(nn.Conv2d(c_in, c_out, 1, stride, bias=False), None)

    def forward(self, x: Tensor) -> Tensor:  # (B, C_in, H, W) -> (B, C_out, H/s, W/s)
        h = self.conv1(self.act1(self.norm1(x)))
        h = self.conv2(self.act2(self.norm2(h)))
        return self.shortcut(x) + h


class ResNet(nn.Module):
    """(B, C, H, W) images -> logits (B, num_classes).

    A 3x3 stem conv to ``width`` channels, then ``depth`` PreActBlocks split as evenly as
    possible over up to three stages of width, 2*width, 4*width channels (the CIFAR ResNet
    plan of He et al. 2016); each later stage halves the feature map while it is at least
    2x2. A final norm and activation (needed with pre-activation blocks), global average
    pooling, dropout, and a Linear head.
    """

    def __init__(
        self,
        input_shape: tuple[int, int, int],
        num_classes: int,
        width: int = 16,
        depth: int = 3,
        activation: str = "relu",
        norm: str = "batch",
        dropout: float = 0.0,
        zero_init_residual: bool = True,
    ) -> None:
        super().__init__()
        channels, height, wide = input_shape
        self.stem = feeds(nn.Conv2d(channels, width, 3, 1, 1, bias=norm == "none"), None)
        n_stages = min(3, depth)
        per_stage = [depth // n_stages + (i < depth % n_stages) for i in range(n_stages)]
        blocks: list[nn.Module] = []
        c_in = width
        for stage, n in enumerate(per_stage):
            c_out = width * 2**stage
            for j in range(n):
                stride = 1
                if stage > 0 and j == 0 and height >= 2 and wide >= 2:
                    stride, height, wide = 2, (height + 1) // 2, (wide + 1) // 2
                blocks.append(
                    PreActBlock(c_in, c_out, stride, activation, norm, zero_init_residual)
                )
                c_in = c_out
        self.blocks = nn.Sequential(*blocks)
        self.norm = make_norm(norm, c_in, conv=True)
        self.act = make_activation(activation)
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.head = feeds(nn.Linear(c_in, num_classes), None)

    @property
    def final_layer(self) -> nn.Module:
        """The output layer (its input is the activation whose norm OPT watched)."""
        return self.head

    def forward(self, x: Tensor) -> Tensor:  # (B, C, H, W) -> (B, num_classes)
        h = self.blocks(self.stem(x))  # (B, C', H', W')
        h = self.act(self.norm(h)).mean(dim=(2, 3))  # (B, C')
        return self.head(self.drop(h))
