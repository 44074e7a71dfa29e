"""The zoo's architecture, stated twice: the Paddle models and the torch reference state their tables
(stage depths, widths, strides, pool positions) independently, and this compares the two layer by layer.

Each model is built without weights (torch ``meta`` device, ``paddle.LazyGuard``) and reduced to the
ordered list of its structural layers: convs (channels, kernel, stride, padding, dilation, groups),
ODConvs, BNs, linears and pooling layers (kernel, stride, padding). A wrong stride in one framework's
inverted-residual table or a pool moved in one VGG table changes its list and fails here, which the
key -> shape comparison in ``test_models.py`` cannot see.
"""

import paddle
import pytest
import torch

import paddle_rep
import torch_ref
from paddle_rep.core.surgery_plan import symmetric_padding
from paddle_rep.odconv import ODConv2D
from torch_ref.odconv import ODConv2d

MODELS = torch_ref.list_models()  # test_models checks that both registries list the same names


# ODConv's attention pools in a module in torch, with a function in Paddle (pooling.py says why).
_ATTENTION_POOL = "attention.avgpool"


def _pair(value: object) -> tuple[int, int]:
    if isinstance(value, int):
        return value, value
    first, second = value
    return int(first), int(second)


def _torch_layers(model: torch.nn.Module) -> list[tuple]:
    layers = []
    for name, m in model.named_modules():
        if isinstance(m, torch.nn.Conv2d):
            desc = ("conv", m.in_channels, m.out_channels, _pair(m.kernel_size), _pair(m.stride),
                    symmetric_padding(list(m.padding)), _pair(m.dilation), m.groups)
        elif isinstance(m, ODConv2d):
            desc = ("odconv", m.in_planes, m.out_planes, m.kernel_size, m.stride, m.padding, m.dilation, m.groups,
                    m.kernel_num)
        elif isinstance(m, torch.nn.BatchNorm2d):
            desc = ("bn", m.num_features)
        elif isinstance(m, torch.nn.Linear):
            desc = ("linear", m.in_features, m.out_features)
        elif isinstance(m, (torch.nn.MaxPool2d, torch.nn.AvgPool2d)):
            kind = "maxpool" if isinstance(m, torch.nn.MaxPool2d) else "avgpool"
            desc = (kind, _pair(m.kernel_size), _pair(m.stride), _pair(m.padding))
        elif isinstance(m, torch.nn.AdaptiveAvgPool2d) and not name.endswith(_ATTENTION_POOL):
            desc = ("global_avg_pool", _pair(m.output_size))
        else:
            continue
        layers.append((name, desc))
    return layers


def _paddle_layers(model: paddle.nn.Layer) -> list[tuple]:
    from paddle_rep.pooling import AvgPool2D, GlobalAvgPool2D

    layers = []
    for name, m in model.named_sublayers():
        if isinstance(m, paddle.nn.Conv2D):
            cin, groups = m._in_channels, m._groups
            desc = ("conv", cin, m._out_channels, _pair(m._kernel_size), _pair(m._stride),
                    symmetric_padding(m._padding), _pair(m._dilation), groups)
        elif isinstance(m, ODConv2D):
            desc = ("odconv", m.in_planes, m.out_planes, m.kernel_size, m.stride, m.padding, m.dilation, m.groups,
                    m.kernel_num)
        elif isinstance(m, paddle.nn.BatchNorm2D):
            desc = ("bn", m._mean.shape[0])
        elif isinstance(m, paddle.nn.Linear):
            desc = ("linear", m.weight.shape[0], m.weight.shape[1])  # Paddle stores [in, out]
        elif isinstance(m, (paddle.nn.MaxPool2D, paddle.nn.AvgPool2D)):
            kind = "maxpool" if isinstance(m, paddle.nn.MaxPool2D) else "avgpool"
            stride = m.ksize if m.stride is None else m.stride  # None means "the kernel size", as in torch
            desc = (kind, _pair(m.ksize), _pair(stride), _pair(m.padding))
        elif isinstance(m, AvgPool2D):  # DBB's padding-counting pool (exact float64 backward)
            desc = ("avgpool", _pair(m.kernel_size), _pair(m.stride), _pair(m.padding))
        elif isinstance(m, GlobalAvgPool2D):
            desc = ("global_avg_pool", (1, 1))
        elif isinstance(m, paddle.nn.AdaptiveAvgPool2D):
            desc = ("global_avg_pool", _pair(m._output_size))
        else:
            continue
        layers.append((name, desc))
    return layers


def _torch_structure(name: str, **kwargs) -> list[tuple]:
    with torch.device("meta"):
        return _torch_layers(torch_ref.create_model(name, **kwargs))


def _paddle_structure(name: str, **kwargs) -> list[tuple]:
    with paddle.LazyGuard():
        return _paddle_layers(paddle_rep.create_model(name, **kwargs))


def _first_difference(paddle_layers: list[tuple], torch_layers: list[tuple]) -> str:
    for i, (p, t) in enumerate(zip(paddle_layers, torch_layers, strict=False)):
        if p != t:
            return f"layer {i}: paddle {p} != torch {t}"
    return f"lengths differ: paddle {len(paddle_layers)}, torch {len(torch_layers)}"


@pytest.mark.parametrize("deploy", [False, True], ids=["train", "deploy"])
@pytest.mark.parametrize("name", MODELS)
def test_layers_match_between_frameworks(name: str, deploy: bool) -> None:
    """Same structural layers, in the same order, with the same geometry."""
    torch_layers = _torch_structure(name, num_classes=7, deploy=deploy)
    paddle_layers = _paddle_structure(name, num_classes=7, deploy=deploy)
    assert len(torch_layers) > 3  # the walk found the model's layers
    assert paddle_layers == torch_layers, _first_difference(paddle_layers, torch_layers)


@pytest.mark.parametrize("name, table, edit", [
    pytest.param("od_mobilenetv2_050", "torch_ref.models.odconv_mobilenetv2.INVERTED_RESIDUAL_SETTING",
                 lambda rows: [rows[0], [6, 24, 2, 1], *rows[2:]], id="mobilenetv2-stride"),
    pytest.param("acnet_vgg16", "torch_ref.models.acnet.VGG_POOL_AFTER",
                 lambda pools: (2, 5, 7, 10, 13), id="vgg-pool-moved"),
    pytest.param("repvgg_a0", "torch_ref.models.repvgg.REPVGG_ARCHS",
                 lambda archs: {**archs, "repvgg_a0": {**archs["repvgg_a0"], "num_blocks": [2, 4, 13, 1]}},
                 id="repvgg-depth"),
    pytest.param("od_resnet50", "torch_ref.models.odconv_resnet.OD_RESNET_ARCHS",
                 lambda archs: {**archs, "od_resnet50": (archs["od_resnet50"][0], [3, 4, 5, 3])}, id="resnet-depth"),
])
def test_a_wrong_torch_table_is_caught(monkeypatch: pytest.MonkeyPatch, name: str, table: str, edit) -> None:
    """Negative control: one entry changed in the torch reference's own table changes only its side."""
    module_name, _, attr = table.rpartition(".")
    module = __import__(module_name, fromlist=[attr])
    expected = _paddle_structure(name, num_classes=7)
    assert _torch_structure(name, num_classes=7) == expected
    monkeypatch.setattr(module, attr, edit(getattr(module, attr)))
    assert _torch_structure(name, num_classes=7) != expected
