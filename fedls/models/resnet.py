"""torchvision ResNets (random init, optional local weights), adapted to small inputs."""

from __future__ import annotations

import torch
from torch import nn

from fedls.models.base import Classifier


class ResNetClassifier(Classifier):
    """ResNet-18/50/152 whose ``head`` is torchvision's ``fc``.

    Inputs below 64 px use a 3×3 stride-1 stem without max-pooling (the usual CIFAR
    adaptation), so that 8–32 px images keep a spatial map in the last stage.
    """

    def __init__(self, depth: int, in_channels: int, num_classes: int, image_size: int) -> None:
        super().__init__()
        from torchvision import models

        builders = {18: models.resnet18, 50: models.resnet50, 152: models.resnet152}
        net = builders[depth](weights=None, num_classes=num_classes)
        if image_size < 64:
            net.conv1 = nn.Conv2d(in_channels, 64, 3, stride=1, padding=1, bias=False)
            net.maxpool = nn.Identity()
        elif in_channels != 3:
            net.conv1 = nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False)
        self.num_classes = num_classes
        self.feature_dim = net.fc.in_features
        self.stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
        self.stages = nn.ModuleList([net.layer1, net.layer2, net.layer3, net.layer4])
        self.pool = nn.Sequential(net.avgpool, nn.Flatten())
        self.head = net.fc

    def features_and_hidden(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        x = self.stem(x)
        hidden = []
        for stage in self.stages:
            x = stage(x)
            hidden.append(x)
        return self.pool(x), hidden
