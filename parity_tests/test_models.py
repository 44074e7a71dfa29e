"""Model zoo: registry behaviour, structure and parameter counts, and model-level parity.

Structure checks build every model on torch's meta device and under ``paddle.LazyGuard`` (no
memory, no init cost), so all 32 models x train/deploy run by default. Parity cases build
real weights through ``helpers.make_pair``; full-size RepVGG-B1g2 / D2se are slow, and
narrow "mini" RepVGGs with the same group map and SE layout cover those paths by default.
"""

import copy
import dataclasses
import importlib
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import paddle
import pytest
import torch

import paddle_rep
import torch_ref
from paddle_rep.core import interop
from paddle_rep.core.errors import UnknownModelError
from paddle_rep.models._specs import groups_map
from parity_tests import helpers
from parity_tests.helpers import assert_all_close, measure
from parity_tests.tolerances import tolerance

EXPECTED_MODELS = sorted([
    *(f"repvgg_{v}" for v in ("a0", "a1", "a2", "b0", "b1", "b1g2", "b1g4", "b2", "b2g2", "b2g4", "b3", "b3g2",
                              "b3g4", "d2se")),
    "repvggplus_l2pse",
    *(f"qarepvgg_{v}" for v in ("a0", "a1", "a2", "b0", "b1", "b1g2", "b1g4", "b2", "b2g4")),
    *(f"mobileone_s{v}" for v in range(5)),
    "od_resnet18", "od_resnet34", "od_resnet50", "od_resnet101",
    "od_mobilenetv2_050", "od_mobilenetv2_075", "od_mobilenetv2_100",
    "acnet_resnet18", "acnet_resnet34", "acnet_resnet56", "acnet_cifar_quick", "acnet_vgg16",
    "acnet_resnet50", "acnet_resnet110", "acnet_wrn16_8", "acnet_mobilenetv1",  # official counts: test_acnet_nets
    "dbb_resnet18", "dbb_resnet50", "dbb_mobilenet",
    "rep_tiny",  # the demo network, all three blocks in one small model
])
FRAMEWORKS = {"torch": torch_ref, "paddle": paddle_rep}


# ---------------------------------------------------------------- registry

def test_both_registries_list_the_same_models() -> None:
    assert torch_ref.list_models() == EXPECTED_MODELS
    assert paddle_rep.list_models() == EXPECTED_MODELS


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_list_models_filters_by_pattern(framework: str) -> None:
    lib = FRAMEWORKS[framework]
    assert lib.list_models("repvgg_b1*") == ["repvgg_b1", "repvgg_b1g2", "repvgg_b1g4"]
    assert lib.list_models("od_mobilenetv2_*") == ["od_mobilenetv2_050", "od_mobilenetv2_075", "od_mobilenetv2_100"]
    assert lib.list_models("nothing*") == []


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize(("name", "suggestion"), [("repvgg_ao", "repvgg_a0"), ("od_resnet19", "od_resnet18"),
                                                  ("acnet_vgg", "acnet_vgg16")])
def test_unknown_name_lists_close_matches(framework: str, name: str, suggestion: str) -> None:
    with pytest.raises(UnknownModelError) as info:
        FRAMEWORKS[framework].create_model(name)
    assert isinstance(info.value, ValueError)
    assert repr(name) in str(info.value) and suggestion in str(info.value)


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_unexpected_argument_is_a_value_error_naming_it(framework: str) -> None:
    with pytest.raises(ValueError, match="kernel_num"):
        FRAMEWORKS[framework].create_model("repvgg_a0", kernel_num=4)


def test_pure_python_parts_import_without_a_framework() -> None:
    """The registry and specs import neither framework, and torch_ref's zoo never imports paddle."""
    script = (
        "import sys\n"
        "import paddle_rep.models._registry, paddle_rep.models._specs\n"
        "assert 'paddle' not in sys.modules and 'torch' not in sys.modules, 'registry imported a framework'\n"
        "import torch_ref\n"
        "torch_ref.create_model('acnet_cifar_quick')\n"
        f"assert len(torch_ref.list_models()) == {len(paddle_rep.list_models())}\n"  # the same zoo in both
        "assert 'paddle' not in sys.modules, 'torch_ref.models imported paddle'\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


# ---------------------------------------------------------------- structure and parameter counts

def _torch_shapes_as_paddle(model: torch.nn.Module) -> dict[str, list[int]]:
    shapes = {}
    for key, value in model.state_dict().items():
        target = interop.torch_key_to_paddle(key)
        if target is not None:
            shape = list(value.shape)
            shapes[target] = shape[::-1] if key.endswith(".weight") and len(shape) == 2 else shape
    return shapes


@pytest.mark.parametrize("deploy", [False, True], ids=["train", "deploy"])
@pytest.mark.parametrize("name", EXPECTED_MODELS)
def test_structure_matches_between_frameworks(name: str, deploy: bool) -> None:
    """Same trainable count and the same key -> shape map after the interop mapping."""
    kwargs = {"num_classes": 7, "deploy": deploy}
    torch_model, paddle_model = helpers.torch_meta(name, **kwargs), helpers.paddle_lazy(name, **kwargs)
    assert helpers.paddle_trainable(paddle_model) == helpers.torch_trainable(torch_model)
    expected = _torch_shapes_as_paddle(torch_model)
    actual = {k: list(v.shape) for k, v in paddle_model.state_dict().items()}
    assert set(actual) == set(expected), f"keys differ: {sorted(set(actual) ^ set(expected))[:10]}"
    wrong = {k: (actual[k], expected[k]) for k in expected if actual[k] != expected[k]}
    assert not wrong, f"shapes differ (paddle, torch): {wrong}"


# docs/reference_figures.md, RepVGG: trainable params (train, deploy) and state-dict keys (train incl.
# num_batches_tracked, deploy), verified against the official code.
REPVGG_TABLE = {
    "repvgg_a0": (9_108_968, 8_309_384), "repvgg_a1": (14_092_264, 12_789_864),
    "repvgg_a2": (28_210_600, 25_499_944), "repvgg_b0": (15_817_960, 14_339_048),
    "repvgg_b1": (57_415_016, 51_829_480), "repvgg_b1g2": (45_782_376, 41_360_104),
    "repvgg_b1g4": (39_966_056, 36_125_416), "repvgg_b2": (89_022_376, 80_315_112),
    "repvgg_b2g2": (70_846_376, 63_956_712), "repvgg_b2g4": (61_758_376, 55_777_512),
    "repvgg_b3": (123_085_288, 110_960_872), "repvgg_b3g2": (96_911_848, 87_404_776),
    "repvgg_b3g4": (83_825_128, 75_626_728), "repvgg_d2se": (133_334_836, 120_387_572),
}
REPVGG_KEYS = {"a": (351, 46), "b": (453, 58), "d": (985, 290)}
# QARepVGG (V2 blocks): trainable params (train, deploy), from running the official cxxgtxy/QARepVGG
# create_QARepVGGBlockV2_* builders; keys (train incl. num_batches_tracked, deploy).
QAREPVGG_TABLE = {
    "qarepvgg_a0": (9_103_304, 8_309_384), "qarepvgg_a1": (14_084_712, 12_789_864),
    "qarepvgg_a2": (28_199_272, 25_499_944), "qarepvgg_b0": (15_808_616, 14_339_048),
    "qarepvgg_b1": (57_396_328, 51_829_480), "qarepvgg_b1g2": (45_763_688, 41_360_104),
    "qarepvgg_b1g4": (39_947_368, 36_125_416), "qarepvgg_b2": (88_999_016, 80_315_112),
    "qarepvgg_b2g4": (61_735_016, 55_777_512),
}
QAREPVGG_KEYS = {"a": (266, 46), "b": (338, 58)}
REP_TINY_COUNTS = (66_331, 63_307)  # (train, deploy), 10 classes, 1 input channel


@pytest.mark.parametrize("name", sorted(REPVGG_TABLE))
def test_repvgg_official_parameter_and_key_counts(name: str) -> None:
    for deploy, expected in zip((False, True), REPVGG_TABLE[name], strict=True):
        torch_model, paddle_model = helpers.torch_meta(name, deploy=deploy), helpers.paddle_lazy(name, deploy=deploy)
        assert helpers.torch_trainable(torch_model) == expected, f"torch deploy={deploy}"
        assert helpers.paddle_trainable(paddle_model) == expected, f"paddle deploy={deploy}"
        assert len(torch_model.state_dict()) == REPVGG_KEYS[name[len("repvgg_")]][int(deploy)]


@pytest.mark.parametrize("name", sorted(QAREPVGG_TABLE))
def test_qarepvgg_official_parameter_and_key_counts(name: str) -> None:
    """Deploy counts equal RepVGG's: the same fused 3x3 convs."""
    for deploy, expected in zip((False, True), QAREPVGG_TABLE[name], strict=True):
        torch_model, paddle_model = helpers.torch_meta(name, deploy=deploy), helpers.paddle_lazy(name, deploy=deploy)
        assert helpers.torch_trainable(torch_model) == expected, f"torch deploy={deploy}"
        assert helpers.paddle_trainable(paddle_model) == expected, f"paddle deploy={deploy}"
        assert len(torch_model.state_dict()) == QAREPVGG_KEYS[name[len("qarepvgg_")]][int(deploy)]
    assert QAREPVGG_TABLE[name][1] == REPVGG_TABLE[name[2:]][1]


# MobileOne: trainable params and state-dict keys (train incl. num_batches_tracked; deploy), from running
# the official apple/ml-mobileone mobileone(variant=...) and reparameterize_model.
MOBILEONE_TABLE = {
    "mobileone_s0": (5_293_272, 2_078_504, 1323, 88), "mobileone_s1": (4_825_192, 4_764_840, 562, 88),
    "mobileone_s2": (7_884_648, 7_808_168, 562, 88), "mobileone_s3": (10_170_600, 10_078_312, 562, 88),
    "mobileone_s4": (14_951_248, 14_838_352, 610, 136),
}


@pytest.mark.parametrize("name", sorted(MOBILEONE_TABLE))
def test_mobileone_official_parameter_and_key_counts(name: str) -> None:
    train, deploy, train_keys, deploy_keys = MOBILEONE_TABLE[name]
    for deploy_, expected, keys in ((False, train, train_keys), (True, deploy, deploy_keys)):
        torch_model, paddle_model = helpers.torch_meta(name, deploy=deploy_), helpers.paddle_lazy(name, deploy=deploy_)
        assert helpers.torch_trainable(torch_model) == expected, f"torch deploy={deploy_}"
        assert helpers.paddle_trainable(paddle_model) == expected, f"paddle deploy={deploy_}"
        assert len(torch_model.state_dict()) == keys, f"torch keys deploy={deploy_}"
# DBB nets: (trainable params, state-dict keys incl. num_batches_tracked) in train and deploy form, from
# running the official DingXiaoH/DiverseBranchBlock convnet_utils.build_model after switch_conv_bn_impl('DBB')
# (and switch_deploy_flag(True)); 1000 classes.
DBB_TABLE = {
    "dbb_resnet18": ((26_288_296, 586), (11_684_712, 42)),
    "dbb_resnet50": ((40_684_456, 784), (25_530_472, 108)),
    "dbb_mobilenet": ((4_372_183, 414), (4_221_032, 56)),
}


@pytest.mark.parametrize("name", sorted(DBB_TABLE))
def test_dbb_official_parameter_and_key_counts(name: str) -> None:
    for deploy, (params, keys) in zip((False, True), DBB_TABLE[name], strict=True):
        torch_model, paddle_model = helpers.torch_meta(name, deploy=deploy), helpers.paddle_lazy(name, deploy=deploy)
        assert helpers.torch_trainable(torch_model) == params, f"torch deploy={deploy}"
        assert helpers.paddle_trainable(paddle_model) == params, f"paddle deploy={deploy}"
        assert len(torch_model.state_dict()) == keys, f"torch keys deploy={deploy}"


# Exact trainable parameter and state-dict key counts (kernel_num 1 / 2 / 4), from running the
# official OSVAI/ODConv models/od_resnet.py and models/od_mobilenetv2.py on torch's meta device;
# each rounds to the README's "Params" column (millions, 2 decimals; od_resnet34 is not in it).
ODCONV_TABLE = [
    ("od_resnet18", 1, 11_943_944, 314, 11.94), ("od_resnet18", 4, 44_901_640, 346, 44.90),
    ("od_resnet34", 1, 22_290_168, 602, None), ("od_resnet34", 4, 85_551_288, 666, None),
    ("od_resnet50", 1, 28_635_112, 832, 28.64), ("od_resnet50", 4, 90_670_888, 928, 90.67),
    ("od_resnet101", 1, 50_818_769, 1682, 50.82), ("od_resnet101", 2, 90_441_623, 1880, 90.44),
    ("od_mobilenetv2_100", 1, 4_940_185, 824, 4.94), ("od_mobilenetv2_100", 4, 11_512_149, 926, 11.51),
    ("od_mobilenetv2_075", 1, 3_507_113, 824, 3.51), ("od_mobilenetv2_075", 4, 7_496_013, 926, 7.50),
    ("od_mobilenetv2_050", 1, 2_425_537, 824, 2.43), ("od_mobilenetv2_050", 4, 4_435_501, 926, 4.44),
]


@pytest.mark.parametrize(("name", "kernel_num", "count", "keys", "millions"), ODCONV_TABLE,
                         ids=[f"{n}-kn{k}" for n, k, *_ in ODCONV_TABLE])
def test_odconv_official_parameter_counts(name: str, kernel_num: int, count: int, keys: int,
                                          millions: float | None) -> None:
    torch_model = helpers.torch_meta(name, kernel_num=kernel_num)
    paddle_model = helpers.paddle_lazy(name, kernel_num=kernel_num)
    assert helpers.torch_trainable(torch_model) == count
    assert helpers.paddle_trainable(paddle_model) == count
    assert len(torch_model.state_dict()) == keys
    if millions is not None:  # the table above agrees with the published figure
        assert round(count / 1e6, 2) == millions


def test_every_zoo_model_has_an_exact_count() -> None:
    """Every registered model is pinned by one of the exact-count tests (none is left to chance)."""
    pinned = set(REPVGG_TABLE) | set(QAREPVGG_TABLE) | set(DBB_TABLE) | set(MOBILEONE_TABLE)
    pinned |= {n for n, *_ in ODCONV_TABLE}
    pinned |= {n for n in EXPECTED_MODELS if n.startswith("acnet_")}
    pinned.add("repvggplus_l2pse")  # exact train/deploy counts in test_repvggplus.py
    assert pinned | {"rep_tiny"} == set(EXPECTED_MODELS)


def test_rep_tiny_parameter_count() -> None:
    """The demo network has no upstream; its count is pinned so a changed layer is noticed."""
    for deploy, expected in ((False, REP_TINY_COUNTS[0]), (True, REP_TINY_COUNTS[1])):
        kwargs = {"num_classes": 10, "in_channels": 1, "deploy": deploy}
        assert helpers.torch_trainable(helpers.torch_meta("rep_tiny", **kwargs)) == expected
        assert helpers.paddle_trainable(helpers.paddle_lazy("rep_tiny", **kwargs)) == expected


# Output height (= width) of each stage for one fixed input (224x224; 32x32 for the CIFAR nets),
# written from the upstream architectures: ResNet/RepVGG 112-56-28-14-7, MobileNetV2's strides
# (1, 2, 2, 2, 1, 2, 1 per setting row) and CIFAR nets' pools. A stride or pool moved in the
# shared spec tables changes one of these while counts, parity and the output shape stay.
_RESNET = {"conv1": 112, "bn1": 112, "relu": 112, "maxpool": 56, "layer1": 56, "layer2": 28, "layer3": 14,
           "layer4": 7, "avgpool": 1}
_REPVGG = {"stage0": 112, "stage1": 56, "stage2": 28, "stage3": 14, "stage4": 7, "gap": 1}
_MOBILENET = {f"features.{i}": size for i, size in enumerate(
    [112, 112, 56, 56, 28, 28, 28, 14, 14, 14, 14, 14, 14, 14, 7, 7, 7, 7, 7])} | {"features": 7}
STAGE_SIZES = {
    **{n: _REPVGG for n in REPVGG_TABLE},
    **{n: _REPVGG for n in QAREPVGG_TABLE},
    **{n: _REPVGG for n in MOBILEONE_TABLE},
    **{n: _RESNET for n in ("od_resnet18", "od_resnet34", "od_resnet50", "od_resnet101")},
    **{n: _MOBILENET for n in ("od_mobilenetv2_050", "od_mobilenetv2_075", "od_mobilenetv2_100")},
    "acnet_resnet18": {"conv1": 112, "stage1": 56, "stage2": 28, "stage3": 14, "stage4": 7, "gap": 1},
    "acnet_resnet34": {"conv1": 112, "stage1": 56, "stage2": 28, "stage3": 14, "stage4": 7, "gap": 1},
    "acnet_resnet56": {"stage1": 32, "stage2": 16, "stage3": 8, "gap": 1},
    "acnet_cifar_quick": {"conv1": 32, "conv2": 15, "conv3": 7},
    "acnet_vgg16": {**{f"stem.conv{i}": s for i, s in zip(range(1, 14), [32, 32, 16, 16, 8, 8, 8, 4, 4, 4, 2, 2, 2],
                                                             strict=True)},
                    **{f"stem.maxpool{i}": s for i, s in zip(range(1, 6), [16, 8, 4, 2, 1], strict=True)},
                    "stem": 1},
    "acnet_resnet50": {"conv1": 112, "maxpool": 56, "stage1": 56, "stage2": 28, "stage3": 14, "stage4": 7, "gap": 1},
    "acnet_resnet110": {"stage1": 32, "stage2": 16, "stage3": 8, "gap": 1},
    "acnet_wrn16_8": {"conv1": 32, "stage1": 32, "stage2": 16, "stage3": 8, "last_bn": 8, "gap": 1},
    # MobileNetV1: a stride-2 stem, then stride 2 in depthwise blocks 1, 3, 5 and 11 (0-based).
    "acnet_mobilenetv1": {"conv1": 112, **{f"stem.{i}": s for i, s in enumerate(
        [112, 56, 56, 28, 28, 14, 14, 14, 14, 14, 14, 7, 7])}, "stem": 7, "gap": 1},
    **{n: {"stage0": 56, "stage1": 56, "stage2": 28, "stage3": 14, "stage4": 7, "gap": 1}
       for n in ("dbb_resnet18", "dbb_resnet50")},
    "dbb_mobilenet": {"conv1": 112, **{f"stem.{i}": s for i, s in enumerate(
        [112, 56, 56, 28, 28, 14, 14, 14, 14, 14, 14, 7, 7])}, "stem": 7, "gap": 1},
    "repvggplus_l2pse": {"stage0": 112, "stage1": 56, "stage2": 28, "stage3_first": 14, "stage3_second": 14,
                         "stage4": 7, "gap": 1},
}
_CIFAR_NETS = ("acnet_resnet56", "acnet_resnet110", "acnet_wrn16_8", "acnet_cifar_quick", "acnet_vgg16")


def test_every_zoo_model_has_stage_sizes() -> None:
    """No model escapes the stride/pool check (rep_tiny, the demo net, has no upstream to state them)."""
    assert set(STAGE_SIZES) | {"rep_tiny"} == set(EXPECTED_MODELS)


def _stage_key(name: str) -> str:
    parts = name.split(".")
    return ".".join(parts[:2]) if parts[0] in ("features", "stem") and len(parts) > 1 else parts[0]


def _stage_sizes(model: torch.nn.Module, x: torch.Tensor) -> dict[str, int]:
    """Spatial size of each stage's output (a ModuleList stage: its last block's)."""
    sizes: dict[str, int] = {}

    def hook(name: str):
        def record(module, inputs, output) -> None:
            if isinstance(output, torch.Tensor) and output.dim() == 4:
                assert output.shape[2] == output.shape[3], f"{name}: {tuple(output.shape)}"
                sizes[_stage_key(name)] = int(output.shape[2])
        return record

    for name, module in model.named_modules():
        key = _stage_key(name) if name else ""
        if name and (name == key or (isinstance(model.get_submodule(key), torch.nn.ModuleList)
                                     and name.count(".") == key.count(".") + 1)):
            module.register_forward_hook(hook(name))
    model(x)
    return sizes


@pytest.mark.parametrize("name", sorted(STAGE_SIZES))
def test_stage_feature_map_sizes(name: str) -> None:
    size = 32 if name in _CIFAR_NETS else 224
    with torch.device("meta"):
        model = torch_ref.create_model(name).eval()
        sizes = _stage_sizes(model, torch.empty(2, 3, size, size))
    assert sizes == STAGE_SIZES[name]


def _conv(cin: int, cout: int, k: int, bias: bool = False) -> int:
    return cin * cout * k * k + (cout if bias else 0)


def _acnet_counts(name: str, num_classes: int) -> tuple[int, int]:
    """(train, deploy) trainable counts by hand: an ACB trains k*k + k*1 + 1*k kernels and three BNs
    (6*out) and deploys as the plain k*k conv plus a bias; every other layer is counted as in a
    plain network. Independent of the model code on purpose."""
    acbs: list[tuple[int, int, int]] = []  # (in, out, k)
    plain = 0
    if name in ("acnet_resnet18", "acnet_resnet34"):
        blocks = (2, 2, 2, 2) if name == "acnet_resnet18" else (3, 4, 6, 3)
        plain += _conv(3, 64, 7) + 2 * 64
        cin = 64
        for stage, (planes, n) in enumerate(zip((64, 128, 256, 512), blocks, strict=True)):
            for i in range(n):
                acbs += [(cin, planes, 3), (planes, planes, 3)]
                if i == 0 and stage > 0:
                    plain += _conv(cin, planes, 1) + 2 * planes  # 1x1 projection + BN
                cin = planes
        plain += 512 * num_classes + num_classes
    elif name == "acnet_resnet56":
        acbs.append((3, 16, 3))
        cin = 16
        for stage, width in enumerate((16, 32, 64)):
            if stage > 0:
                plain += _conv(cin, width, 1) + 2 * width
            for i in range(9):
                acbs += [(cin if i == 0 else width, width, 3), (width, width, 3)]
            cin = width
        plain += 64 * num_classes + num_classes
    elif name == "acnet_cifar_quick":
        acbs += [(3, 32, 5), (32, 32, 5), (32, 64, 5)]
        plain += (576 * 64 + 64) + (64 * num_classes + num_classes)
    elif name == "acnet_vgg16":
        widths = (3, 64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512)
        acbs += [(a, b, 3) for a, b in zip(widths[:-1], widths[1:], strict=True)]
        plain += (512 * 512 + 512) + (512 * num_classes + num_classes)
    train = plain + sum(cin * cout * (k * k + 2 * k) + 6 * cout for cin, cout, k in acbs)
    deploy = plain + sum(_conv(cin, cout, k, bias=True) for cin, cout, k in acbs)
    return train, deploy


_ACNET_HAND_COUNTED = ("acnet_resnet18", "acnet_resnet34", "acnet_resnet56", "acnet_cifar_quick", "acnet_vgg16")


@pytest.mark.parametrize("name", _ACNET_HAND_COUNTED)
def test_acnet_parameter_counts(name: str) -> None:
    """No official table: deploy = the plain network plus one bias per fused conv; train adds the
    asymmetric kernels and BNs; Paddle equals torch."""
    for deploy, expected in zip((False, True), _acnet_counts(name, 1000), strict=True):
        torch_model = helpers.torch_meta(name, num_classes=1000, deploy=deploy)
        paddle_model = helpers.paddle_lazy(name, num_classes=1000, deploy=deploy)
        assert helpers.torch_trainable(torch_model) == expected, f"deploy={deploy}"
        assert helpers.paddle_trainable(paddle_model) == expected, f"deploy={deploy}"


def test_acnet_resnet18_deploys_to_torchvision_size() -> None:
    """Sanity anchor: torchvision's ResNet-18 has 11,689,512 params; fusing its 16 block 3x3 convs'
    BNs (2 per channel) into biases (1 per channel) removes 64*4 + 128*4 + 256*4 + 512*4 = 3840."""
    assert helpers.torch_trainable(helpers.torch_meta("acnet_resnet18", deploy=True)) == 11_689_512 - 3840


# ---------------------------------------------------------------- model-level parity

NUM_CLASSES = 10
EVAL_SIZE = 32  # 2x3x32x32 eval inputs: the last stage of every model is 1x1


@dataclass(frozen=True)
class Case:
    id: str
    build: Callable[..., object]  # build(framework, deploy=False) -> model
    slow: bool = False
    odconv: bool = False
    # Training-mode BN normalises over the batch; on random weights and noise inputs some
    # channels vary little across the batch, which amplifies rounding. float64 train steps run
    # at 32x32, float32 ones at 64x64 (2x2 last maps) against float64 twins. ODConv's attention
    # BN normalises over n = B = 4 values; od_mobilenetv2_100 kn4 is ill-conditioned even in
    # float64 (torch alone moves 6.8e-5 under a 1e-15 input perturbation), so its float64
    # train step is an expected failure; its float32 one runs.
    cifar: bool = False
    train_float64: bool = True
    train_kind: str = "model_train"  # the float64 train-step tolerance entry (see tolerances.py)
    zero_grad_suffixes: tuple[str, ...] = ()  # exactly-zero gradients (QARepVGG's 3x3 BN bias)
    # gradients a later train-mode BN (all but) cancels, on the step's largest gradient (DBB's inner BNs)
    step_scaled_suffixes: tuple[str, ...] = ()

    @property
    def train_size(self) -> int:
        return 32 if self.cifar else 64


def _registry_case(case_id: str, name: str, slow: bool = False, cifar: bool = False, train_float64: bool = True,
                   train_kind: str = "model_train", **kwargs) -> Case:
    odconv = name.startswith("od_")
    if odconv:
        kwargs["dropout"] = 0.0  # dropout masks are framework-specific RNG

    def build(framework: str, deploy: bool = False):
        return FRAMEWORKS[framework].create_model(name, num_classes=NUM_CLASSES, deploy=deploy, **kwargs)

    zero = ("rbr_dense.bn.bias",) if name.startswith("qarepvgg") else ()
    return Case(case_id, build, slow=slow, odconv=odconv, cifar=cifar, train_float64=train_float64,
                train_kind=train_kind, zero_grad_suffixes=zero)


def _mini_repvgg_case(case_id: str, num_blocks: tuple[int, ...], groups: int, use_se: bool,
                      train_kind: str = "model_train", qa: bool = False) -> Case:
    """A narrow RepVGG with an official depth, group map and SE layout: the B1g2 / D2se code paths, cheaply.

    ``qa``: QARepVGG's blocks (``block_cls=QARepVGGBlockV2``), as upstream's QARepVGG builders.
    """

    def build(framework: str, deploy: bool = False):
        package = torch_ref if framework == "torch" else paddle_rep
        block_cls = package.QARepVGGBlockV2 if qa else package.RepVGGBlock
        repvgg = importlib.import_module(f"{package.__name__}.models").RepVGG
        return repvgg(list(num_blocks), num_classes=NUM_CLASSES, width_multiplier=[0.25, 0.25, 0.25, 0.5],
                      override_groups_map=groups_map(groups), deploy=deploy, use_se=use_se, block_cls=block_cls)

    return Case(case_id, build, train_kind=train_kind, zero_grad_suffixes=("rbr_dense.bn.bias",) if qa else ())


def _mini_mobileone_case(case_id: str) -> Case:
    """A narrow MobileOne with two conv branches and upstream's SE layout (depthwise and pointwise SE blocks)."""

    def build(framework: str, deploy: bool = False):
        package = torch_ref if framework == "torch" else paddle_rep
        mobileone = importlib.import_module(f"{package.__name__}.models.mobileone").MobileOne
        return mobileone((1, 2, 2, 1), num_classes=NUM_CLASSES, width_multipliers=(0.25, 0.25, 0.25, 0.25),
                         use_se=True, num_conv_branches=2, deploy=deploy)

    return Case(case_id, build)


def _mini_dbb_case(case_id: str, mobilenet: bool) -> Case:
    """A narrow DBB net with upstream's layout (ResNet-18 at width 1/4, or MobileNet at width 1/8): every
    DBB form (stride 2, 7x7 / 1x1 ConvBN, projection shortcuts, the depthwise form), cheaply."""

    def build(framework: str, deploy: bool = False):
        models = importlib.import_module(f"{FRAMEWORKS[framework].__name__}.models.dbb")
        if mobilenet:
            return models.DBBMobileNet(NUM_CLASSES, tuple(c // 8 for c in models.MOBILE_CHANNELS), deploy=deploy)
        return models.DBBResNet(models.BasicBlock, (2, 2, 2, 2), NUM_CLASSES, width_multiplier=0.25, deploy=deploy)

    return Case(case_id, build, step_scaled_suffixes=DBB_CANCELLED)


# DBB's BNs inside a branch (dbb_avg's and dbb_1x1_kxk's first) meet a train-mode BN after a pad and a
# pool / conv: on the 1x1 and 2x2 maps of the last stages at these input sizes the pad and pool spread
# them evenly, so the next BN removes their shift and scale and their exact gradients are 0 (as the
# depthwise conv1, see block_cases); elsewhere they are merely small.
DBB_CANCELLED = ("dbb_avg.bn.bn.bias", "dbb_avg.bn.bn.weight", "dbb_1x1_kxk.bn1.bn.bias",
                 "dbb_1x1_kxk.bn1.bn.weight", "dbb_1x1_kxk.conv1.weight")
_FEW = "model_train_few_values"
_ATTENTION = "model_train_odconv_attention"
CASES = [
    _registry_case("repvgg_a0", "repvgg_a0"),
    _mini_repvgg_case("mini_b1g2", (4, 6, 16, 1), groups=2, use_se=False),
    _mini_repvgg_case("mini_d2se", (8, 14, 24, 1), groups=1, use_se=True, train_kind=_FEW),
    _mini_repvgg_case("mini_qa_b1g2", (4, 6, 16, 1), groups=2, use_se=False, qa=True),
    _mini_mobileone_case("mini_mobileone"),
    _registry_case("mobileone_s0", "mobileone_s0", slow=True, train_kind=_FEW),
    _mini_dbb_case("mini_dbb_resnet18", mobilenet=False),
    _mini_dbb_case("mini_dbb_mobilenet", mobilenet=True),
    dataclasses.replace(_registry_case("dbb_resnet18", "dbb_resnet18", slow=True), step_scaled_suffixes=DBB_CANCELLED),
    _registry_case("repvgg_b1g2", "repvgg_b1g2", slow=True),
    _registry_case("qarepvgg_a0", "qarepvgg_a0", slow=True),
    _registry_case("repvgg_d2se", "repvgg_d2se", slow=True, train_kind=_FEW),
    _registry_case("od_resnet18_kn1", "od_resnet18", kernel_num=1),
    _registry_case("od_resnet18_kn4", "od_resnet18", kernel_num=4, train_kind=_ATTENTION),
    _registry_case("od_resnet50_kn1", "od_resnet50", slow=True, kernel_num=1, train_kind=_ATTENTION),
    _registry_case("od_mobilenetv2_050", "od_mobilenetv2_050", train_kind=_ATTENTION),
    _registry_case("od_mobilenetv2_100_kn4", "od_mobilenetv2_100", slow=True, kernel_num=4, train_float64=False),
    _registry_case("acnet_resnet18", "acnet_resnet18"),
    _registry_case("acnet_resnet56", "acnet_resnet56", slow=True, cifar=True, train_kind=_FEW),
    _registry_case("acnet_cifar_quick", "acnet_cifar_quick", cifar=True, train_kind=_FEW),
    _registry_case("acnet_vgg16", "acnet_vgg16", slow=True, cifar=True, train_kind=_FEW),
]
CASE_PARAMS = [pytest.param(c, id=c.id, marks=[pytest.mark.slow] if c.slow else []) for c in CASES]
OD_CASE_PARAMS = [p for p in CASE_PARAMS if p.values[0].odconv]

_PAIRS: dict[tuple[str, str], tuple[torch.nn.Module, paddle.nn.Layer]] = {}


@pytest.fixture(scope="module", params=CASE_PARAMS)
def case(request: pytest.FixtureRequest):
    """Module-scoped, so pytest runs every test of one case together and builds its pair once."""
    yield request.param
    _PAIRS.clear()  # the big cases hold hundreds of MB


@pytest.fixture(scope="module", params=OD_CASE_PARAMS)
def od_case(request: pytest.FixtureRequest):
    yield request.param
    _PAIRS.clear()


def _pair(case: Case, dtype: str) -> tuple[torch.nn.Module, paddle.nn.Layer]:
    """One seeded pair per (case, dtype); tests that train or fuse work on copies."""
    key = (case.id, dtype)
    if key not in _PAIRS:
        _PAIRS[key] = helpers.make_pair(lambda: case.build("torch"), lambda: case.build("paddle"), dtype, seed=0)
    return _PAIRS[key]


def _torch_eval(model: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    model.eval()
    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()


def _paddle_eval(model: paddle.nn.Layer, x: np.ndarray) -> np.ndarray:
    model.eval()
    with paddle.no_grad():
        return model(paddle.to_tensor(x)).numpy()


def _input(case: Case, dtype: str, batch: int = 2, seed: int = 0) -> np.ndarray:
    return helpers.seeded_input((batch, 3, EVAL_SIZE, EVAL_SIZE), dtype, seed)


def test_eval_outputs_match(case: Case) -> None:
    torch_model, paddle_model = _pair(case, "float32")
    x = _input(case, "float32")
    actual, expected = helpers.eval_outputs(torch_model, paddle_model, x)
    result = measure(f"{case.id} eval logits", actual, expected, "output", "float32")
    # Negative control: a torch model with other weights must fail the same comparison.
    torch.manual_seed(1)
    other = case.build("torch").eval()
    helpers.randomize_bn(other, np.random.default_rng(1))
    with torch.no_grad():
        control = measure("control", actual, other(torch.from_numpy(x)).numpy(), "output", "float32")
    assert not control.ok, f"different weights passed the comparison: {control}"
    assert_all_close([result])


def test_fused_outputs_match(case: Case) -> None:
    """Fused == own eval in each framework, and fused Paddle == fused torch."""
    torch_model, paddle_model = _pair(case, "float32")
    x = _input(case, "float32")
    paddle_eval, torch_eval = helpers.eval_outputs(torch_model, paddle_model, x)
    torch_fused = torch_ref.reparameterize_model(torch_model)
    paddle_fused = paddle_rep.reparameterize_model(paddle_model)
    paddle_out, torch_out = helpers.eval_outputs(torch_fused, paddle_fused, x)
    assert_all_close([
        measure("torch fused vs eval", torch_out, torch_eval, "fused_vs_eval", "float32"),
        measure("paddle fused vs eval", paddle_out, paddle_eval, "fused_vs_eval", "float32"),
        measure("paddle fused vs torch fused", paddle_out, torch_out, "output", "float32"),
    ])


def test_fused_state_dict_loads_strictly_into_deploy_model(case: Case) -> None:
    """The fused state dict loads strictly into create_model(name, deploy=True) in both frameworks
    (and the torch one maps onto the Paddle deploy model); the deploy model computes the same."""
    torch_model, paddle_model = _pair(case, "float32")
    x = _input(case, "float32")
    torch_fused = torch_ref.reparameterize_model(torch_model)
    paddle_fused = paddle_rep.reparameterize_model(paddle_model)
    torch_deploy = case.build("torch", deploy=True)
    torch_deploy.load_state_dict(torch_fused.state_dict(), strict=True)
    paddle_deploy = case.build("paddle", deploy=True)
    missing, unexpected = paddle_deploy.set_state_dict(paddle_fused.state_dict())
    assert not missing and not unexpected, f"missing {missing}, unexpected {unexpected}"
    from_torch = case.build("paddle", deploy=True)
    missing, unexpected = from_torch.set_state_dict(interop.from_torch(torch_fused.state_dict()))
    assert not missing and not unexpected, f"from torch: missing {missing}, unexpected {unexpected}"
    np.testing.assert_array_equal(_torch_eval(torch_deploy, x), _torch_eval(torch_fused, x),
                                  err_msg="torch deploy model != fused model")
    np.testing.assert_array_equal(_paddle_eval(paddle_deploy, x), _paddle_eval(paddle_fused, x),
                                  err_msg="paddle deploy model != fused model")


def _measure_grad(what: str, actual, expected, kind: str, dtype: str) -> helpers.Comparison:
    """``measure``, except that a gradient that is exactly zero in torch (a dead ReLU unit, e.g.
    a 1-neuron SE squeeze) must be exactly zero in Paddle too."""
    expected_np = helpers.as_numpy(expected)
    if np.any(expected_np):
        return measure(what, actual, expected, kind, dtype)
    tol = tolerance(kind, dtype)
    max_abs = float(np.abs(helpers.as_numpy(actual)).max(initial=0.0))
    return helpers.Comparison(f"{what} (all-zero reference)", max_abs, 0.0, 0.0, tol.rel, tol.reason)


def _head_names(model: torch.nn.Module) -> list[str]:
    head = [name for name, m in model.named_modules() if isinstance(m, torch.nn.Linear)][-1]
    return [f"{head}.weight", f"{head}.bias"]


def _train_pair(case: Case, dtype: str) -> tuple[torch.nn.Module, paddle.nn.Layer]:
    torch_model, paddle_model = _pair(case, dtype)
    return copy.deepcopy(torch_model), copy.deepcopy(paddle_model)


def _train_inputs(case: Case, dtype: str) -> tuple[np.ndarray, np.ndarray]:
    size = case.train_size if dtype == "float32" else 32
    x = helpers.seeded_input((4, 3, size, size), dtype, seed=1)
    upstream = np.random.default_rng(5).normal(0.0, 1.0, (4, NUM_CLASSES)).astype(dtype)
    return x, upstream


def test_train_step_matches_float64(case: Case, request: pytest.FixtureRequest) -> None:
    """Training-mode output, input gradient and every parameter gradient, in float64."""
    if not case.train_float64:  # run, not skipped: a change in its conditioning shows up as XPASS
        request.applymarker(pytest.mark.xfail(reason="ill-conditioned in training mode even in float64 (see Case)",
                                              strict=False))
    torch_model, paddle_model = _train_pair(case, "float64")
    x, upstream = _train_inputs(case, "float64")
    torch_step = helpers.torch_train_step(torch_model, x, upstream)
    paddle_step = helpers.paddle_train_step(paddle_model, x, upstream)
    assert set(paddle_step.param_grads) == set(torch_step.param_grads)
    kind = case.train_kind
    results = [measure("train output", paddle_step.output, torch_step.output, kind, "float64"),
               measure("input grad", paddle_step.input_grad, torch_step.input_grad, kind, "float64")]
    zero = helpers.zero_grad_names(torch_step.param_grads, case.zero_grad_suffixes)
    results += [helpers.measure_zero_grad(f"grad {k}", paddle_step.param_grads[k], torch_step, k, "float64")
                for k in zero]
    scaled = helpers.zero_grad_names(torch_step.param_grads, case.step_scaled_suffixes)
    results += [helpers.measure_step_scaled_grad(f"grad {k}", paddle_step.param_grads[k], torch_step, k, "float64")
                for k in scaled]
    results += [_measure_grad(f"grad {k}", paddle_step.param_grads[k], torch_step.param_grads[k], kind,
                              "float64") for k in sorted(torch_step.param_grads) if k not in zero and k not in scaled]
    assert_all_close(results)


# Every ReLU / ReLU6 of the four runs follows torch float32's masks (helpers.pinned_train_steps):
# without that, one pre-activation within rounding of zero flipping in one run moved whole-model
# input gradients by ~1e-2 (ACNet ResNet-56: Paddle 3.3e-2 against torch's 9.6e-6), a coin toss
# that depends on the machine. With masks pinned, Paddle's own float32-vs-float64 error on whole
# ODConv models in training mode is still 5-17x torch's, so the yardstick's own-error check fails
# them. Located (tools/odconv_float32_ops.py, docs/odconv-float32.md): two Paddle CPU float32 kernels
# accumulate less accurately than torch's, the reductions (mean over H*W, the sum in a broadcast
# multiply's backward: in order, error growing with the length; torch sums in a cascade) and
# batch_norm's training statistics (float32; torch accumulates in double). ODConv's attention BN
# normalises B pooled values that differ little against their mean, which amplifies both; running
# just those two in float64 brings Paddle to torch's level (median ratio 1.0 on od_resnet18 kn1),
# at a cost (BN 2.7x slower) no float32 formulation in paddle_rep avoids. Strict, so a change shows
# up as XPASS. Each value: the Paddle / torch own float32 error as measured.
_KERNELS = ("Paddle's CPU float32 reductions (mean, broadcast-multiply backward) and batch_norm statistics "
            "accumulate less accurately than torch's (docs/odconv-float32.md), amplified by a train-mode BN "
            "after values that barely vary (ODConv's attention BN over B values; located for ODConv only)")
_FLOAT32_OWN_ERROR = {
    "od_resnet18_kn1": "3.5e-3 rel against torch's 2.1e-4",
    "od_resnet18_kn4": "4.4e-2 against 8.0e-3",
    "od_mobilenetv2_050": "2.0 against 0.68",
    "od_resnet50_kn1": "9.2e-2 against 8.2e-3",
    "od_mobilenetv2_100_kn4": "60 against 6.2",
    # Not ODConv's attention BN: MobileOne's depthwise 1x1 scale branch (a per-channel scalar before a
    # train-mode BN, a cancelling gradient) amplifies the same kernels; float64 agrees to 1.2e-8 rel.
    "mobileone_s0": "on depthwise scale-branch gradients up to 33x torch's (input gradient 6.6e-4 against 3.3e-4)",
    # DBB MobileNet: not located separately; the depthwise conv1's gradient passes through a train-mode BN
    # that undoes its scale (block_cases: step_scaled_suffixes), which amplifies the same BN statistics.
    "mini_dbb_mobilenet": "3.2e-4 against 1.8e-5 (stem.5.depthwise.dbb_1x1_kxk.conv1.weight)",
}
# The held cases run in `slow` (od_resnet18 kn4 alone takes ~10 s): their float64 steps, run by
# default, are what shows the models agree.
_F32_CASE_PARAMS = [pytest.param(c, id=c.id, marks=[pytest.mark.slow] if c.slow or c.id in _FLOAT32_OWN_ERROR else [])
                    for c in CASES]


@pytest.mark.parametrize("case", _F32_CASE_PARAMS, indirect=True)
def test_train_step_matches_float32(case: Case, request: pytest.FixtureRequest) -> None:
    """Training-mode output, input gradient and every parameter gradient in float32.

    Whole models in training mode are ill-conditioned in float32 (BN over channels that barely
    vary across the batch; ODConv's attention BN over only B values), so each comparison falls
    back to float32's own rounding error, measured against float64 twins of both models.
    """
    if case.id in _FLOAT32_OWN_ERROR:
        request.applymarker(pytest.mark.xfail(
            reason=f"Paddle's own float32 error {_FLOAT32_OWN_ERROR[case.id]}: {_KERNELS}", strict=True))
    torch_model, paddle_model = _train_pair(case, "float32")
    torch_exact = copy.deepcopy(torch_model).double()
    paddle_exact = copy.deepcopy(paddle_model)
    paddle_exact.to(dtype="float64")
    x, upstream = _train_inputs(case, "float32")
    steps = helpers.pinned_train_steps(torch_model, paddle_model, torch_exact, paddle_exact, x, upstream)

    def compare(what: str, kind: str, pick) -> helpers.Comparison:
        torch32, paddle32, torch64, paddle64 = (pick(step) for step in steps)
        if not np.any(helpers.as_numpy(torch32)):  # a dead unit (1-neuron SE squeeze): zero in both
            return _measure_grad(what, paddle32, torch32, kind, "float32")
        return helpers.measure_against_rounding(f"{case.id} {what}", paddle32, torch32, kind, "float32",
                                                paddle64, torch64)

    results = [compare("train output", "output", lambda s: s.output),
               compare("input grad", "input_grad", lambda s: s.input_grad)]
    zero = helpers.zero_grad_names(steps[0].param_grads, case.zero_grad_suffixes)
    results += [helpers.measure_zero_grad(f"grad {k}", steps[1].param_grads[k], steps[0], k, "float32")
                for k in zero]
    scaled = helpers.zero_grad_names(steps[0].param_grads, case.step_scaled_suffixes)
    results += [helpers.measure_step_scaled_grad(f"grad {k}", steps[1].param_grads[k], steps[0], k, "float32")
                for k in scaled]
    results += [compare(f"grad {k}", "param_grad", lambda s, k=k: s.param_grads[k])
                for k in sorted(steps[0].param_grads) if k not in zero and k not in scaled]
    assert_all_close(results)


def test_odconv_temperature_matches(od_case: Case) -> None:
    """net_update_temperature reaches every ODConv in both frameworks (T = 30, the schedule's start)."""
    torch_pair, paddle_pair = _pair(od_case, "float32")
    x = _input(od_case, "float32")
    at_one = _torch_eval(torch_pair, x)
    torch_model, paddle_model = copy.deepcopy(torch_pair), copy.deepcopy(paddle_pair)
    torch_model.net_update_temperature(30.0)
    paddle_model.net_update_temperature(30.0)
    temps = {layer.temperature for layer in paddle_model.sublayers() if hasattr(layer, "temperature")}
    assert temps == {30.0}
    actual, expected = helpers.eval_outputs(torch_model, paddle_model, x)
    assert not measure("T=30 vs T=1", expected, at_one, "output", "float32").ok, "temperature had no effect"
    assert_all_close([measure("eval logits at T=30", actual, expected, "output", "float32")])


# The default parity cases already build and run repvgg_a0, od_resnet18, od_mobilenetv2_050,
# acnet_resnet18 and acnet_cifar_quick eagerly; these two add the remaining cheap families.
_FORWARD_DEFAULT = ("acnet_resnet56", "od_mobilenetv2_100")


@pytest.mark.parametrize("name", [n if n in _FORWARD_DEFAULT else pytest.param(n, marks=pytest.mark.slow)
                                  for n in EXPECTED_MODELS])
def test_every_model_runs_a_forward_pass(name: str) -> None:
    """Real (eager) construction and a forward pass in both frameworks, train and deploy."""
    x = helpers.seeded_input((1, 3, 32, 32), "float32", 0)
    for deploy in (False, True):
        torch_model = torch_ref.create_model(name, num_classes=NUM_CLASSES, deploy=deploy).eval()
        paddle_model = paddle_rep.create_model(name, num_classes=NUM_CLASSES, deploy=deploy)
        paddle_model.eval()
        with torch.no_grad():
            assert tuple(torch_model(torch.from_numpy(x)).shape) == (1, NUM_CLASSES)
        with paddle.no_grad():
            assert tuple(paddle_model(paddle.to_tensor(x)).shape) == (1, NUM_CLASSES)


@pytest.mark.parametrize("dtype", helpers.DTYPES)
def test_train_step_near_bound_control(dtype: str) -> None:
    """One Paddle kernel x (1 + 1e-4) and one BN eps 1e-4 (in both float32 and its float64 twin, as a
    porting bug would be) fail the whole-model train-step comparison, float32 yardstick included."""
    case = next(c for c in CASES if c.id == "repvgg_a0")
    torch_model, paddle_model = helpers.make_pair(lambda: case.build("torch"), lambda: case.build("paddle"), dtype,
                                                  seed=0)

    def plant(model: paddle.nn.Layer) -> None:
        kernel = next(p for p in model.parameters() if len(p.shape) == 4 and not p.stop_gradient)
        with paddle.no_grad():
            kernel.set_value(kernel * (1.0 + 1e-4))
        next(m for m in model.sublayers() if hasattr(m, "_epsilon"))._epsilon = 1e-4

    x, upstream = _train_inputs(case, dtype)
    if dtype == "float64":
        plant(paddle_model)
        torch_step = helpers.torch_train_step(torch_model, x, upstream)
        paddle_step = helpers.paddle_train_step(paddle_model, x, upstream)
        results = [measure("train output", paddle_step.output, torch_step.output, case.train_kind, dtype),
                   measure("input grad", paddle_step.input_grad, torch_step.input_grad, case.train_kind, dtype)]
        results += [measure(f"grad {k}", paddle_step.param_grads[k], torch_step.param_grads[k], case.train_kind,
                            dtype) for k in sorted(torch_step.param_grads) if np.any(torch_step.param_grads[k])]
    else:
        torch_exact = copy.deepcopy(torch_model).double()
        paddle_exact = copy.deepcopy(paddle_model)
        paddle_exact.to(dtype="float64")
        plant(paddle_model)
        plant(paddle_exact)
        x64, up64 = x.astype(np.float64), upstream.astype(np.float64)
        t32, p32 = helpers.torch_train_step(torch_model, x, upstream), helpers.paddle_train_step(paddle_model, x,
                                                                                                 upstream)
        t64, p64 = helpers.torch_train_step(torch_exact, x64, up64), helpers.paddle_train_step(paddle_exact, x64,
                                                                                               up64)
        results = [helpers.measure_against_rounding(f"{case.id} grad {k}", p32.param_grads[k], t32.param_grads[k],
                                                    "param_grad", dtype, p64.param_grads[k], t64.param_grads[k])
                   for k in sorted(t32.param_grads) if np.any(t32.param_grads[k])]
        results.append(helpers.measure_against_rounding(f"{case.id} train output", p32.output, t32.output, "output",
                                                        dtype, p64.output, t64.output))
    assert results and any(not r.ok for r in results), "planted faults passed the train-step comparison"
