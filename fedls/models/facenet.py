"""facenet-pytorch's InceptionResnetV1 as a face classifier (160 px RGB inputs)."""

from __future__ import annotations

import torch
from torch import nn

from fedls.models.base import Classifier


class FaceNetClassifier(Classifier):
    """InceptionResnetV1 trunk (random init unless a local weights file is loaded) whose 512-d
    batch-normalised embedding feeds ``head``. facenet-pytorch's ``pretrained='vggface2'``
    downloads weights at run time, so fedls never asks for it: pass ``--weights FILE``."""

    def __init__(self, num_classes: int, dropout: float = 0.6) -> None:
        super().__init__()
        from facenet_pytorch import InceptionResnetV1

        self.trunk = InceptionResnetV1(pretrained=None, classify=False, dropout_prob=dropout)
        self.num_classes = num_classes
        self.feature_dim = 512
        self.head = nn.Linear(512, num_classes)

    def features_and_hidden(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        t = self.trunk
        x = t.conv2d_4b(t.conv2d_4a(t.conv2d_3b(t.maxpool_3a(t.conv2d_2b(t.conv2d_2a(t.conv2d_1a(x)))))))
        hidden = []
        for stage in (t.repeat_1, nn.Sequential(t.mixed_6a, t.repeat_2), nn.Sequential(t.mixed_7a, t.repeat_3)):
            x = stage(x)
            hidden.append(x)
        x = t.avgpool_1a(t.block8(x))
        x = t.last_bn(t.last_linear(t.dropout(x).flatten(1)))
        return x, hidden
