"""insert_blocks / fuse_back: blocks into any model, train, and back to the original architecture.

Models: paddle.vision resnet18 and mobilenet_v2 (num_classes=10) and a small user-style model
whose convs are called from custom forward code, some with a bias. Every model gets random BN
statistics and random conv biases (defaults would hide a wrong fold or a dropped bias).
"""

import copy

import numpy as np
import paddle
import pytest
import torch
from paddle import nn
from paddle.nn import functional as F

import paddle_rep
import torch_ref
from paddle_rep import SurgeryError, fuse_back, insert_blocks
from paddle_rep.core import interop
from paddle_rep.fusion import is_batch_norm
from parity_tests.helpers import (
    assert_all_close,
    assert_close,
    measure,
    measure_against_rounding,
    randomize_bn,
    seeded_input,
)
from torch_ref.vision import resnet18 as torch_resnet18

SHAPE = (2, 3, 32, 32)
SEED = 7
KINDS = ("acb", "repvgg", "qarepvgg", "dbb", "odconv", "mobileone")
FUSABLE = ("acb", "repvgg", "qarepvgg", "dbb", "mobileone")


class UserNet(nn.Layer):
    """Convs used from hand-written forward code: biased, grouped, 5x5, non-square, conv -> BN."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Conv2D(3, 16, 3, padding=1)  # bias, no BN
        self.conv_a = nn.Conv2D(16, 16, 3, stride=2, padding=1, bias_attr=False)
        self.norm_a = nn.BatchNorm2D(16)
        self.grouped = nn.Conv2D(16, 32, 3, padding=1, groups=4)  # bias
        self.wide = nn.Conv2D(32, 32, 5, padding=2, groups=32, bias_attr=False)  # depthwise 5x5
        self.norm_w = nn.BatchNorm2D(32)
        self.row = nn.Conv2D(32, 32, (1, 3), padding=(0, 1))  # not square: never converted
        self.head = nn.Linear(32, num_classes)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        x = F.relu(self.stem(x))
        x = F.relu(self.norm_a(self.conv_a(x)))
        x = self.grouped(x)
        x = x + F.relu(self.norm_w(self.wide(x)))
        x = self.row(x)
        return self.head(paddle.flatten(F.adaptive_avg_pool2d(x, 1), 1))


MODELS = {
    "resnet18": lambda: paddle.vision.models.resnet18(num_classes=10),
    "mobilenet_v2": lambda: paddle.vision.models.mobilenet_v2(num_classes=10),
    "user": UserNet,
}


def randomize(model: nn.Layer, seed: int) -> nn.Layer:
    """Random BN statistics and affine parameters, and random conv biases, from a seeded generator."""
    rng = np.random.default_rng(seed)
    with paddle.no_grad():
        for layer in model.sublayers():
            if is_batch_norm(layer):
                n = layer._mean.shape[0]
                layer._mean.set_value(rng.normal(0.0, 0.5, n).astype("float32"))
                layer._variance.set_value(rng.uniform(0.5, 2.0, n).astype("float32"))
                layer.weight.set_value(rng.uniform(0.5, 1.5, n).astype("float32"))
                layer.bias.set_value(rng.normal(0.0, 0.5, n).astype("float32"))
            elif isinstance(layer, nn.Conv2D) and layer.bias is not None:
                layer.bias.set_value(rng.normal(0.0, 0.5, layer.bias.shape).astype("float32"))
    return model


def build(name: str, seed: int = SEED) -> nn.Layer:
    paddle.seed(seed)
    return randomize(MODELS[name](), seed)


def eval_output(model: nn.Layer, x: np.ndarray) -> np.ndarray:
    model.eval()
    with paddle.no_grad():
        return model(paddle.to_tensor(x)).numpy()


def train_steps(model: nn.Layer, steps: int = 3) -> None:
    model.train()
    opt = paddle.optimizer.Momentum(learning_rate=0.01, momentum=0.9, parameters=model.parameters())
    rng = np.random.default_rng(SEED + 1)
    for _ in range(steps):
        x = paddle.to_tensor(rng.normal(0.0, 1.0, SHAPE).astype("float32"))
        labels = paddle.to_tensor(rng.integers(0, 10, (SHAPE[0],)))
        F.cross_entropy(model(x), labels).backward()
        opt.step()
        opt.clear_grad()


def structure(model: nn.Layer) -> list[tuple[str, str]]:
    return [(name, type(layer).__name__) for name, layer in model.named_sublayers()]


def shapes(model: nn.Layer) -> dict[str, list[int]]:
    return {k: list(v.shape) for k, v in model.state_dict().items()}


@pytest.mark.parametrize("to", KINDS)
@pytest.mark.parametrize("model_name", list(MODELS))
def test_converted_equals_original(model_name, to):
    original = build(model_name)
    x = seeded_input(SHAPE, "float32", SEED)
    converted, report = insert_blocks(original, to)
    assert report.inserted, report
    assert structure(original) != structure(converted)
    assert_close(f"{model_name}->{to} vs original", eval_output(converted, x), eval_output(original, x),
                 "converted_vs_original", "float32")


def _identity_bns(model: nn.Layer) -> list[nn.Layer]:
    """BNs that insert_blocks made to pass their input through (variance 1 - eps, mean 0)."""
    return [layer for layer in model.sublayers() if is_batch_norm(layer)
            and np.allclose(layer._variance.numpy(), 1.0 - layer._epsilon, rtol=0, atol=1e-12)]


@pytest.mark.parametrize("to", KINDS)
@pytest.mark.parametrize("model_name", list(MODELS))
def test_converted_equals_original_float64(model_name, to):
    """The function-preserving start of a float64 model, where float32 rounding cannot hide a small error."""
    original = build(model_name).to(dtype="float64")
    converted, _ = insert_blocks(original, to)
    x = seeded_input(SHAPE, "float64", SEED)
    assert_close(f"{model_name}->{to} vs original (float64)", eval_output(converted, x), eval_output(original, x),
                 "converted_vs_original", "float64")


@pytest.mark.parametrize("to", FUSABLE)
def test_converted_identity_bn_variance_control(to):
    """Identity BNs planted with variance 1 instead of 1 - eps (a 5e-6 scale per layer) fail the float64 check."""
    original = build("resnet18").to(dtype="float64")
    converted, _ = insert_blocks(original, to)
    identity = _identity_bns(converted)
    assert identity, "no identity BN found"
    with paddle.no_grad():
        for layer in identity:
            layer._variance.set_value(paddle.ones_like(layer._variance))
    x = seeded_input(SHAPE, "float64", SEED)
    result = measure("planted variance 1", eval_output(converted, x), eval_output(original, x),
                     "converted_vs_original", "float64")
    assert not result.ok, result


def test_converted_negative_control():
    """The start comparison must fail for a different weight set."""
    x = seeded_input(SHAPE, "float32", SEED)
    converted, _ = insert_blocks(build("resnet18"), "acb")
    other = build("resnet18", seed=SEED + 1)
    result = measure("acb vs other weights", eval_output(converted, x), eval_output(other, x),
                     "converted_vs_original", "float32")
    assert not result.ok, result


# DBB on the full-width ResNet-18 trains 26 M parameters (12 s); mobilenet_v2 covers DBB by default.
@pytest.mark.parametrize(("model_name", "to"), [
    pytest.param(m, t, id=f"{m}-{t}", marks=[pytest.mark.slow] if (m, t) == ("resnet18", "dbb") else [])
    for m in MODELS for t in FUSABLE])
def test_train_then_revert(model_name, to):
    original = build(model_name)
    x = seeded_input(SHAPE, "float32", SEED)
    start = eval_output(original, x)
    converted, report = insert_blocks(original, to)
    train_steps(converted)
    trained = eval_output(converted, x)
    assert not measure("training moved it", trained, start, "converted_vs_original", "float32").ok

    # The fusion math in float64 (a copy): exact up to float64 rounding.
    converted64 = copy.deepcopy(converted).to(dtype="float64")
    trained64 = eval_output(converted64, x.astype("float64"))
    deployed64, _ = fuse_back(converted64, example_input=paddle.to_tensor(x.astype("float64")))
    result64 = measure(f"{model_name}/{to} reverted vs trained (float64)", eval_output(deployed64, x.astype("float64")),
                       trained64, "reverted_vs_trained", "float64")

    deployed, revert_report = fuse_back(converted, example_input=paddle.to_tensor(x))
    assert sorted(revert_report.restored) == sorted(report.inserted)
    # float32: a whole net compounds rounding over up to 52 layers (mobilenet_v2 ACB: 1.3e-6 to 8.4e-5 rel
    # over 12 inputs), so past the fixed bound the trained net's own float32 error is the yardstick.
    result32 = measure_against_rounding(f"{model_name}/{to} reverted vs trained", eval_output(deployed, x), trained,
                                        "reverted_vs_trained", "float32", expected_exact=trained64)
    assert_all_close([result64, result32])
    assert structure(deployed) == structure(original)
    assert shapes(deployed) == shapes(original), "biases of bias-free convs should be folded into their BNs"
    assert sum(int(np.prod(s)) for s in shapes(deployed).values()) == sum(
        int(np.prod(s)) for s in shapes(original).values())

    fresh = MODELS[model_name]()
    missing, unexpected = fresh.set_state_dict(deployed.state_dict())
    assert not missing and not unexpected, (missing, unexpected)
    np.testing.assert_array_equal(eval_output(fresh, x), eval_output(deployed, x))


@pytest.mark.parametrize("to", [t if t != "dbb" else pytest.param(t, marks=pytest.mark.slow) for t in FUSABLE])
def test_revert_without_example_input_keeps_biases(to):  # dbb: a 26 M-parameter train step, slow
    original = build("resnet18")
    x = seeded_input(SHAPE, "float32", SEED)
    converted, report = insert_blocks(original, to)
    train_steps(converted, steps=1)
    deployed, revert_report = fuse_back(converted)
    assert set(revert_report.bias_kept) == set(report.inserted)
    for name in report.inserted:
        assert f"{name}.bias" in deployed.state_dict()
    assert structure(deployed) == structure(original)
    assert_close("reverted (biases kept) vs trained", eval_output(deployed, x), eval_output(converted, x),
                 "reverted_vs_trained", "float32")


def test_revert_keeps_bias_a_shared_bn_input_cannot_take():
    """UserNet's ``wide`` output feeds its BN only, ``grouped`` (biased) feeds an add and a conv."""
    converted, report = insert_blocks(build("user"), "acb")
    assert {"stem", "conv_a", "grouped", "wide"} <= set(report.inserted)
    assert "row" in report.skipped and "not square" in report.skipped["row"]
    _, revert_report = fuse_back(converted, example_input=paddle.to_tensor(seeded_input(SHAPE, "float32", 0)))
    assert revert_report.bias_folded == {"conv_a": "norm_a", "wide": "norm_w"}


@pytest.mark.parametrize("model_name", [pytest.param("resnet18", marks=pytest.mark.slow), "user"])
def test_odconv_trains_and_is_not_reverted(model_name):
    converted, report = insert_blocks(build(model_name), "odconv", kernel_num=2)
    before = [p.numpy().copy() for p in converted.parameters() if not p.stop_gradient]
    train_steps(converted, steps=2)
    after = [p.numpy() for p in converted.parameters() if not p.stop_gradient]
    assert any(not np.array_equal(a, b) for a, b in zip(after, before, strict=True))
    _, revert_report = fuse_back(converted)
    assert not revert_report.restored
    assert sorted(revert_report.skipped) == sorted(report.inserted)


def test_include_exclude_patterns():
    model = build("resnet18")
    _, report = insert_blocks(model, "repvgg", include="layer1.*", exclude=["*.conv2"])
    assert report.inserted == ["layer1.0.conv1", "layer1.1.conv1"]
    assert report.skipped["layer1.0.conv2"] == "excluded by '*.conv2'"
    assert report.skipped["layer2.0.conv1"] == "not matched by include"
    assert "conv1" in report.skipped  # the 7x7 stem: not eligible for RepVGG, matched by no include
    assert isinstance(model.layer1[0].conv1, nn.Conv2D), "inplace=False must leave the input untouched"


def test_existing_blocks_are_not_converted_again():
    converted, first = insert_blocks(build("resnet18"), "acb")
    again, second = insert_blocks(converted, "odconv", include="layer1.*")
    assert not second.inserted
    assert second.skipped["layer1.0.conv1.square_conv"] == "part of an existing ACBlock"


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    (dict(to="ghostnet"), ValueError, "to must be one of"),
    (dict(to="acb", include="nothing.here"), SurgeryError, "'nothing.here' matches no Conv2D"),
    (dict(to="acb", exclude=["layer9*"]), SurgeryError, "'layer9\\*' matches no Conv2D"),
    (dict(to="repvgg", include=["conv1", "layer1.*"]), SurgeryError, "conv1: RepVGGBlock needs a 3x3"),
    (dict(to="acb", include="layer2.0.downsample.0"), SurgeryError, "layer2.0.downsample.0: 1x1 kernel"),
    (dict(to="acb", deploy=True), ValueError, "'deploy' is not supported"),
    (dict(to="repvgg", use_se=True), ValueError, "'use_se' is not supported"),
    (dict(to="odconv", kernel_size=3), ValueError, "'kernel_size' is copied"),
    (dict(to="odconv", kernel_nums=2), ValueError, "takes no argument 'kernel_nums'"),
    (dict(to="acb", include=""), ValueError, "include must be"),
], ids=["unknown-to", "include-matches-nothing", "exclude-matches-nothing", "explicit-stem-repvgg",
        "explicit-1x1-acb", "deploy", "use_se", "geometry-kwarg", "unknown-kwarg", "empty-pattern"])
def test_bad_input(kwargs, error, match):
    model = build("resnet18")
    before = structure(model)
    with pytest.raises(error, match=match):
        insert_blocks(model, inplace=True, **kwargs)
    assert structure(model) == before, "a refused conversion must not touch the model"


def test_explicit_non_square_conv_in_user_model():
    with pytest.raises(SurgeryError, match="row: kernel \\[1, 3\\] is not square"):
        insert_blocks(build("user"), "odconv", include=["row"])


# --- torch twin: the same conversion in both frameworks, weights moved through interop ---------

def torch_resnet18_pair() -> tuple[torch.nn.Module, nn.Layer]:
    torch.manual_seed(SEED)
    torch_model = torch_resnet18(num_classes=10)
    randomize_bn(torch_model, np.random.default_rng(SEED))
    paddle_model = paddle.vision.models.resnet18(num_classes=10)
    missing, unexpected = paddle_model.set_state_dict(interop.from_torch(torch_model.state_dict()))
    assert not missing and not unexpected, (missing, unexpected)
    return torch_model, paddle_model


def torch_eval(model: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    model.eval()
    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()


@pytest.mark.parametrize("to", [*FUSABLE, pytest.param("odconv", marks=pytest.mark.slow)])
def test_torch_twin_resnet18_parity(to):
    torch_model, paddle_model = torch_resnet18_pair()
    x = seeded_input(SHAPE, "float32", SEED)
    assert_close("original resnet18 paddle vs torch", eval_output(paddle_model, x), torch_eval(torch_model, x),
                 "network_output", "float32")
    torch_converted, torch_report = torch_ref.insert_blocks(torch_model, to)
    paddle_converted, paddle_report = insert_blocks(paddle_model, to)
    assert torch_report == paddle_report
    assert_close(f"torch {to} start vs torch original", torch_eval(torch_converted, x), torch_eval(torch_model, x),
                 "converted_vs_original", "float32")
    # Same weights in both converted models (their fresh branches were initialised independently).
    with torch.no_grad():
        for module in torch_converted.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm) and module.weight is not None:
                module.weight.add_(0.1)  # wake the silent branches so the comparison sees them
    missing, unexpected = paddle_converted.set_state_dict(interop.from_torch(torch_converted.state_dict()))
    assert not missing and not unexpected, (missing, unexpected)
    torch_out = torch_eval(torch_converted, x)
    assert_close(f"{to} converted paddle vs torch", eval_output(paddle_converted, x), torch_out, "network_output",
                 "float32")
    if to == "odconv":
        return
    torch_deployed, torch_revert = torch_ref.fuse_back(torch_converted, example_input=torch.from_numpy(x))
    paddle_deployed, paddle_revert = fuse_back(paddle_converted, example_input=paddle.to_tensor(x))
    assert torch_revert == paddle_revert
    assert set(torch_deployed.state_dict()) == set(torch_model.state_dict())
    assert_close(f"{to} reverted torch vs converted torch", torch_eval(torch_deployed, x), torch_out,
                 "reverted_vs_trained", "float32")
    assert_close(f"{to} reverted paddle vs torch", eval_output(paddle_deployed, x), torch_eval(torch_deployed, x),
                 "network_output", "float32")


class SharedBNInput(nn.Layer):
    """The conv output feeds its BN and, through a functional add, the output: no fold is valid."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2D(3, 3, 3, padding=1, bias_attr=False)
        self.bn = nn.BatchNorm2D(3)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        y = self.conv(x)
        return self.bn(y) + y


def test_revert_refuses_a_fold_that_changes_the_output():
    paddle.seed(SEED)
    converted, _ = insert_blocks(randomize(SharedBNInput(), SEED), "acb")
    with paddle.no_grad():
        converted.conv.square_bn.bias.set_value(paddle.full([3], 0.5))  # a fused bias to fold
    x = paddle.to_tensor(seeded_input(SHAPE, "float32", SEED))
    with pytest.raises(SurgeryError, match="folding conv biases into BNs changed the output"):
        fuse_back(converted, example_input=x)
    deployed, report = fuse_back(converted)
    assert list(report.bias_kept) == ["conv"]
    assert_close("biases kept", eval_output(deployed, x.numpy()), eval_output(converted, x.numpy()),
                 "reverted_vs_trained", "float32")


_FAMILIES = ("acb", "repvgg", "qarepvgg", "dbb", "odconv", "mobileone")


@pytest.mark.parametrize("framework", ["paddle", "torch"])
def test_no_family_converts_inside_another(framework: str) -> None:
    # A model made of one block of each family: inserting any family must leave every conv inside
    # them alone (a QARepVGG block's 3x3 once became a RepVGGBlock inside the QARepVGG block).
    lib = paddle_rep if framework == "paddle" else torch_ref
    insert = insert_blocks if framework == "paddle" else torch_ref.insert_blocks
    seq = paddle.nn.Sequential if framework == "paddle" else torch.nn.Sequential
    blocks = [lib.ACBlock(4, 4, 3, padding=1), lib.RepVGGBlock(4, 4, 3, padding=1),
              lib.QARepVGGBlockV2(4, 4, 3, padding=1), lib.DiverseBranchBlock(4, 4, 3, padding=1),
              (lib.ODConv2D if framework == "paddle" else lib.ODConv2d)(4, 4, 3, padding=1),
              lib.MobileOneBlock(4, 4, 3, padding=1)]
    assert len(blocks) == len(_FAMILIES)
    for to in _FAMILIES:
        _, report = insert(seq(*blocks), to, inplace=False)
        assert not report.inserted, f"{framework} {to}: {report.inserted}"
        assert report.skipped and all(why.startswith("part of an existing") for why in report.skipped.values())
