"""The standard vision models, written the torchvision way with torch.nn (torchvision itself is
not a dependency), and their ONNX exports. Used by tests/engine/test_onnx_zoo.py and
bench/bench_onnx.py.

    build(name, num_classes=..., seed=...)   a model in eval mode with random weights; every
                                              BatchNorm has random running statistics and
                                              affine parameters, so folding them matters
    export(model, path, exporter, opset, size)  "legacy" (TorchScript, dynamo=False) or
                                              "dynamo"; input "input" (N, 3, size, size) with a
                                              dynamic batch axis, output "output"

Layouts follow torchvision (torchvision/models/{resnet,mobilenetv2,squeezenet,vgg}.py): the
same layers in the same order, so the exported graphs have the same node patterns. One
deliberate difference: VGG's adaptive average pool keeps the feature map's own size
(size // 32) instead of 7x7, because the legacy exporter refuses an adaptive pool whose output
does not divide its input (2x2 -> 7x7 at 64x64) and a 7x7 pool at small inputs only replicates
values; `hidden` shrinks VGG's two 4096-wide classifier layers for quick tests.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn


def _conv_bn(cin: int, cout: int, k: int, stride: int = 1, groups: int = 1, act: type | None = nn.ReLU6):
    layers = [nn.Conv2d(cin, cout, k, stride, (k - 1) // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
    return nn.Sequential(*layers, act(inplace=True)) if act else nn.Sequential(*layers)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + identity)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.relu(self.bn3(self.conv3(out)) + identity)


class ResNet(nn.Module):
    def __init__(self, block: type, layers: list[int], num_classes: int = 1000):
        super().__init__()
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = self._layer(block, 64, layers[0])
        self.layer2 = self._layer(block, 128, layers[1], 2)
        self.layer3 = self._layer(block, 256, layers[2], 2)
        self.layer4 = self._layer(block, 512, layers[3], 2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * block.expansion, num_classes)

    def _layer(self, block: type, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(nn.Conv2d(self.inplanes, planes * block.expansion, 1, stride, bias=False),
                                       nn.BatchNorm2d(planes * block.expansion))
        layers = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand_ratio: int):
        super().__init__()
        hidden = int(round(cin * expand_ratio))
        self.use_res_connect = stride == 1 and cin == cout
        layers = [_conv_bn(cin, hidden, 1)] if expand_ratio != 1 else []
        layers += [_conv_bn(hidden, hidden, 3, stride, groups=hidden),
                   nn.Conv2d(hidden, cout, 1, 1, 0, bias=False), nn.BatchNorm2d(cout)]
        self.conv = nn.Sequential(*layers)

    def forward(self, x):
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


def _divisible(v: float, divisor: int = 8) -> int:
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new_v + divisor if new_v < 0.9 * v else new_v


class MobileNetV2(nn.Module):
    def __init__(self, num_classes: int = 1000, width_mult: float = 1.0):
        super().__init__()
        setting = [[1, 16, 1, 1], [6, 24, 2, 2], [6, 32, 3, 2], [6, 64, 4, 2], [6, 96, 3, 1],
                   [6, 160, 3, 2], [6, 320, 1, 1]]
        cin = _divisible(32 * width_mult)
        self.last_channel = _divisible(1280 * max(1.0, width_mult))
        features: list[nn.Module] = [_conv_bn(3, cin, 3, 2)]
        for t, c, n, s in setting:
            cout = _divisible(c * width_mult)
            for i in range(n):
                features.append(InvertedResidual(cin, cout, s if i == 0 else 1, t))
                cin = cout
        features.append(_conv_bn(cin, self.last_channel, 1))
        self.features = nn.Sequential(*features)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(self.last_channel, num_classes))

    def forward(self, x):
        x = nn.functional.adaptive_avg_pool2d(self.features(x), (1, 1))
        return self.classifier(torch.flatten(x, 1))


class Fire(nn.Module):
    def __init__(self, cin: int, squeeze: int, expand1x1: int, expand3x3: int):
        super().__init__()
        self.squeeze = nn.Conv2d(cin, squeeze, 1)
        self.squeeze_activation = nn.ReLU(inplace=True)
        self.expand1x1 = nn.Conv2d(squeeze, expand1x1, 1)
        self.expand1x1_activation = nn.ReLU(inplace=True)
        self.expand3x3 = nn.Conv2d(squeeze, expand3x3, 3, padding=1)
        self.expand3x3_activation = nn.ReLU(inplace=True)

    def forward(self, x):
        x = self.squeeze_activation(self.squeeze(x))
        return torch.cat([self.expand1x1_activation(self.expand1x1(x)),
                          self.expand3x3_activation(self.expand3x3(x))], 1)


class SqueezeNet11(nn.Module):
    def __init__(self, num_classes: int = 1000):
        super().__init__()
        pool = lambda: nn.MaxPool2d(3, 2, ceil_mode=True)  # noqa: E731
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, 3, 2), nn.ReLU(inplace=True), pool(),
            Fire(64, 16, 64, 64), Fire(128, 16, 64, 64), pool(),
            Fire(128, 32, 128, 128), Fire(256, 32, 128, 128), pool(),
            Fire(256, 48, 192, 192), Fire(384, 48, 192, 192), Fire(384, 64, 256, 256),
            Fire(512, 64, 256, 256))
        self.classifier = nn.Sequential(nn.Dropout(0.5), nn.Conv2d(512, num_classes, 1), nn.ReLU(inplace=True),
                                        nn.AdaptiveAvgPool2d((1, 1)))

    def forward(self, x):
        return torch.flatten(self.classifier(self.features(x)), 1)


class VGG(nn.Module):
    def __init__(self, cfg: list, num_classes: int = 1000, pool: int = 7, hidden: int = 4096):
        super().__init__()
        layers: list[nn.Module] = []
        cin = 3
        for v in cfg:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(cin, v, 3, padding=1), nn.BatchNorm2d(v), nn.ReLU(inplace=True)]
                cin = v
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((pool, pool))
        self.classifier = nn.Sequential(
            nn.Linear(512 * pool * pool, hidden), nn.ReLU(True), nn.Dropout(),
            nn.Linear(hidden, hidden), nn.ReLU(True), nn.Dropout(), nn.Linear(hidden, num_classes))

    def forward(self, x):
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


class Mixed(nn.Module):
    """A small network holding every op kind the import maps (not a torchvision model): the
    opset sweep of the tests exports it at every opset with both exporters."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1, bias=False), nn.BatchNorm2d(8), nn.Hardswish())
        self.dw = nn.Conv2d(8, 8, 3, 1, 1, groups=8)
        self.grouped = nn.Conv2d(8, 8, 2, 1, 0, groups=2)
        self.pw = nn.Conv2d(16, 12, 1)
        self.norm = nn.LayerNorm(12)
        self.attn_in = nn.Linear(12, 12)
        self.head = nn.Linear(12, num_classes)
        self.scale = nn.Parameter(torch.rand(1, 8, 1, 1) + 0.5)

    def forward(self, x):
        x = self.stem(x)
        a = nn.functional.relu6(self.dw(x)) * torch.sigmoid(x) - self.scale
        b = self.grouped(nn.functional.pad(nn.functional.leaky_relu(x, 0.1), (0, 1, 1, 0)))
        b = nn.functional.hardsigmoid(b) + torch.tanh(b) / 2 + nn.functional.elu(b, 0.7)
        y = nn.functional.gelu(self.pw(torch.cat([a, b], 1)))
        y = nn.functional.max_pool2d(y, 3, 2, 1, ceil_mode=True)
        y = nn.functional.avg_pool2d(y, 3, 2, 1, ceil_mode=True, count_include_pad=False)
        p, q = torch.chunk(y, 2, dim=1)
        y = torch.cat([q, p], 1) / (0.5 + torch.sigmoid(y.mean(dim=(2, 3), keepdim=True)))
        t = y.flatten(2).transpose(1, 2)                      # (N, HW, C)
        t = torch.softmax(self.attn_in(self.norm(t)), dim=1)   # softmax over the positions
        return self.head(t.mean(dim=1)).view(x.size(0), -1)


VGG11 = [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"]
MODELS = ("resnet18", "resnet50", "mobilenet_v2", "squeezenet1_1", "vgg11_bn", "mixed")


def _randomize_batchnorm(model: nn.Module, gen: torch.Generator) -> None:
    """Random running statistics and affine parameters, kept moderate so activations stay O(1)
    through deep stacks (a real trained network's statistics match its activations)."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=gen) * 0.1)
            m.running_var.copy_(torch.rand(n, generator=gen) * 0.5 + 0.75)
            m.weight.data.copy_(torch.rand(n, generator=gen) * 0.5 + 0.5)
            m.bias.data.copy_(torch.randn(n, generator=gen) * 0.1)


def build(name: str, num_classes: int = 1000, seed: int = 0, size: int = 224, hidden: int = 4096) -> nn.Module:
    """`name` (one of MODELS) with random weights, in eval mode. `size` matters only for VGG
    (its pool keeps the size // 32 feature map)."""
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    if name == "resnet18":
        model = ResNet(BasicBlock, [2, 2, 2, 2], num_classes)
    elif name == "resnet50":
        model = ResNet(Bottleneck, [3, 4, 6, 3], num_classes)
    elif name == "mobilenet_v2":
        model = MobileNetV2(num_classes)
    elif name == "squeezenet1_1":
        model = SqueezeNet11(num_classes)
    elif name == "mixed":
        model = Mixed(num_classes)
    elif name == "vgg11_bn":
        model = VGG(VGG11, num_classes, pool=max(1, size // 32), hidden=hidden)
    else:
        raise ValueError(f"unknown model {name!r}; one of {MODELS}")
    with torch.no_grad():
        _randomize_batchnorm(model, gen)
    return model.eval()


def export(model: nn.Module, path: str, exporter: str, opset: int, size: int, optimize: bool = True) -> str:
    """The model exported to `path` with input "input" (N, 3, size, size), N dynamic. With
    optimize=False the exporter leaves its graph unfolded: BatchNormalization nodes stay (both
    exporters fold them into the convolutions otherwise) and shapes are computed by node chains."""
    x = torch.randn(2, 3, size, size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if exporter == "legacy":
            torch.onnx.export(model, (x,), path, dynamo=False, opset_version=opset, input_names=["input"],
                              do_constant_folding=optimize,
                              output_names=["output"], dynamic_axes={"input": {0: "N"}, "output": {0: "N"}})
        elif exporter == "dynamo":
            batch = torch.export.Dim("N", min=1, max=1024)
            torch.onnx.export(model, (x,), path, dynamo=True, opset_version=opset, input_names=["input"],
                              output_names=["output"], dynamic_shapes={"x": {0: batch}}, verbose=False,
                              external_data=False, optimize=optimize)
        else:
            raise ValueError(f"exporter must be 'legacy' or 'dynamo', got {exporter!r}")
    return path
