"""The model: HU in, six logits out, with all preprocessing inside (``../shared/docs/model-contract.md``).

``IchResNet`` = ``Preprocess`` (clip, resize, windows, normalise) -> torchvision ResNet trunk ->
global average pooling -> linear or Linear-ReLU-Linear head. ``model.trunk[-1]`` (layer4) is the last
convolutional block, the target layer of reference Grad-CAM.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from ich_viewer.core.contract import CLASSES
from ich_viewer.core.windows import SIGMOID_EPSILON as SIGMOID_EPS  # the display and the model share eps
from training.config import Config, WindowConfig

ARCHS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")


def resize_hu(hu: torch.Tensor, size: int) -> torch.Tensor:
    """The one resize used both when preparing the cache and inside the graph (so they agree)."""
    return F.interpolate(hu, size=(size, size), mode="bilinear", align_corners=False, antialias=True)


class Preprocess(nn.Module):
    """HU [N,1,H,W] -> normalised window channels [N,W,S,S]."""

    def __init__(self, size: int, windows: list[WindowConfig], clip: tuple[float, float] | None,
                 mean: float = 0.5, std: float = 0.25):
        super().__init__()
        self.size, self.clip = size, None if clip is None else (float(clip[0]), float(clip[1]))
        self.functions = [w.function for w in windows]
        centers = torch.tensor([float(w.center) for w in windows]).view(1, -1, 1, 1)
        widths = torch.tensor([float(w.width) for w in windows]).view(1, -1, 1, 1)
        learned = [w.learned for w in windows]
        if any(learned) and not all(learned):
            raise ValueError("windows are either all learned or all fixed")
        if all(learned) and learned:
            self.center, self.log_width = nn.Parameter(centers), nn.Parameter(widths.log())
        else:
            self.register_buffer("center", centers)
            self.register_buffer("log_width", widths.log())
        self.mean, self.std = mean, std

    def forward(self, hu: torch.Tensor) -> torch.Tensor:
        if self.clip is not None:
            hu = hu.clamp(self.clip[0], self.clip[1])
        hu = resize_hu(hu, self.size)
        width = self.log_width.exp()
        channels = []
        for i, function in enumerate(self.functions):
            c, w = self.center[:, i:i + 1], width[:, i:i + 1]
            if function == "sigmoid":
                slope = 2.0 / w * math.log(1.0 / SIGMOID_EPS - 1.0)
                channels.append(torch.sigmoid(slope * (hu - c)))
            else:
                channels.append(((hu - (c - w / 2)) / w).clamp(0.0, 1.0))
        return (torch.cat(channels, dim=1) - self.mean) / self.std


class IchResNet(nn.Module):
    def __init__(self, config: Config):
        super().__init__()
        m = config.model
        if m.arch not in ARCHS:
            raise ValueError(f"arch must be one of {', '.join(ARCHS)}, not {m.arch!r}")
        windows = config.windows
        pretrained = m.pretrained != "none"
        self.preprocess = Preprocess(m.size, windows, m.clip, *input_statistics(m.pretrained))
        net = getattr(torchvision.models, m.arch)(weights=None)
        if pretrained:
            net.load_state_dict(_imagenet_state(m.arch, m.pretrained))
        if len(windows) != 3:
            conv = nn.Conv2d(len(windows), 64, 7, 2, 3, bias=False)
            with torch.no_grad():  # keep pretrained filters meaningful: average them over RGB
                conv.weight.copy_(net.conv1.weight.mean(1, keepdim=True).repeat(1, len(windows), 1, 1))
            net.conv1 = conv
        self.trunk = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool, net.layer1, net.layer2, net.layer3,
                                   net.layer4)
        features = net.fc.in_features
        n = len(CLASSES)
        if m.head == "linear":
            self.head = nn.Sequential(nn.Dropout(m.dropout), nn.Linear(features, n))
        elif m.head == "mlp":
            self.head = nn.Sequential(nn.Linear(features, m.hidden), nn.ReLU(), nn.Dropout(m.dropout),
                                      nn.Linear(m.hidden, n))
        else:
            raise ValueError(f"head must be linear or mlp, not {m.head!r}")
        self.head_kind = m.head

    @property
    def cam_layer(self) -> nn.Module:
        """The last convolutional block: reference Grad-CAM's target layer."""
        return self.trunk[-1]

    def features(self, hu: torch.Tensor) -> torch.Tensor:
        return self.trunk(self.preprocess(hu))

    def forward(self, hu: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(hu).mean(dim=(2, 3)))


def input_statistics(pretrained: str) -> tuple[float, float]:
    """The windows' normalisation: ImageNet's with pretrained weights (ImageNet's, or ``training.pretrain``'s,
    which uses these same statistics so that its trunk fits), else centred [0, 1] windows."""
    return (0.449, 0.226) if pretrained != "none" else (0.5, 0.25)


def build_model(config: Config) -> IchResNet:
    """The public constructor: logits [N, 6] from HU [N, 1, H, W]."""
    return IchResNet(config)


def _imagenet_state(arch: str, pretrained: str) -> dict:
    if pretrained != "imagenet":
        path = Path(pretrained)
        if not path.is_file():
            raise FileNotFoundError(f"pretrained weights {path} not found")
        return torch.load(path, map_location="cpu", weights_only=True)
    weights = torchvision.models.get_model_weights(arch).IMAGENET1K_V1
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
    if not cached.is_file():
        raise FileNotFoundError(
            f"ImageNet weights for {arch} are not in the local cache ({cached}); this tool never downloads. "
            f"Copy {Path(weights.url).name} there, or set model.pretrained to a .pth file, or to none.")
    return torch.load(cached, map_location="cpu", weights_only=True)
