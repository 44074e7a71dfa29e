"""MobileOne beyond the shared block and zoo suites: upstream's key names, timm's layout through the
converter, insert_blocks with several conv branches, argument checks and planted-fault controls.

The block parity cases are in block_cases.MOBILEONE_CASES, the zoo counts in test_models.MOBILEONE_TABLE.
"""

from pathlib import Path

import numpy as np
import paddle
import pytest
import torch

import paddle_rep
import torch_ref
from paddle_rep.apps.cli import main
from paddle_rep.apps.convert import convert_checkpoint, read_checkpoint
from paddle_rep.apps.convert.layouts import TIMM_MOBILEONE, TIMM_REPVGG, apply_layout, detect_layout
from paddle_rep.core import interop
from parity_tests import helpers
from parity_tests.block_cases import MOBILEONE_CASES
from parity_tests.test_block_parity import _pair, _seed

SMALL = 64

# Keys of upstream's module tree (apple/ml-mobileone mobileone.py), written from it: the stem has one
# conv branch, stages alternate depthwise (even index) and pointwise (odd index) blocks, s4 has SE on the
# last 5 pairs of stage 3 and on stage 4.
UPSTREAM_KEYS = {
    "mobileone_s0": ["stage0.rbr_conv.0.conv.weight", "stage0.rbr_scale.bn.running_var", "stage1.0.rbr_conv.3.bn.bias",
                     "stage1.1.rbr_skip.num_batches_tracked", "stage1.0.rbr_scale.conv.weight", "linear.weight"],
    "mobileone_s4": ["stage3.10.se.reduce.weight", "stage3.19.se.expand.bias", "stage4.1.se.reduce.bias",
                     "stage3.10.rbr_skip.running_mean", "stage2.15.rbr_conv.0.bn.weight"],
}
DEPLOY_KEYS = {"mobileone_s4": ["stage0.reparam_conv.weight", "stage3.10.se.reduce.weight",
                                "stage4.1.reparam_conv.bias", "linear.bias"]}


@pytest.mark.parametrize("name", sorted(UPSTREAM_KEYS))
def test_upstream_key_names(name: str) -> None:
    keys = set(helpers.torch_meta(name).state_dict())
    assert set(UPSTREAM_KEYS[name]) <= keys, sorted(set(UPSTREAM_KEYS[name]) - keys)
    if name == "mobileone_s4":  # SE starts at the 6th of stage 3's 10 pairs
        assert not any(k.startswith("stage3.9.se") for k in keys)
    deploy = set(helpers.torch_meta(name, deploy=True).state_dict())
    assert set(DEPLOY_KEYS.get(name, [])) <= deploy and not any("rbr_" in k for k in deploy)


def test_official_layout_and_deploy_state_dicts_load_strictly() -> None:
    """A train-form state dict (upstream names) and its fused form load strictly into both frameworks."""
    torch.manual_seed(0)
    model = torch_ref.create_model("mobileone_s1", num_classes=10).eval()
    helpers.randomize_bn(model, np.random.default_rng(0))
    deployed = torch_ref.reparameterize_model(model)
    x = helpers.seeded_input((2, 3, 32, 32), "float32", 1)
    for state, deploy in ((model.state_dict(), False), (deployed.state_dict(), True)):
        torch_model = torch_ref.create_model("mobileone_s1", num_classes=10, deploy=deploy).eval()
        torch_model.load_state_dict(state, strict=True)
        paddle_model = paddle_rep.create_model("mobileone_s1", num_classes=10, deploy=deploy)
        paddle_state = interop.from_torch(state)
        assert set(paddle_state) == set(paddle_model.state_dict()), "Paddle keys differ"
        paddle_model.set_state_dict(paddle_state)
        paddle_out, torch_out = helpers.eval_outputs(torch_model, paddle_model, x)
        helpers.assert_close(f"deploy={deploy}", paddle_out, torch_out, "output", "float32")


# ---------------------------------------------------------------- timm's layout through the converter


def official_to_timm(key: str) -> str:
    """timm byobnet MobileOne names, written from timm's module tree (not from layouts.py)."""
    head, _, rest = key.partition(".")
    if head == "stage0":
        key = "stem." + rest
    elif head.startswith("stage"):
        key = f"stages.{int(head[5:]) - 1}." + rest
    elif head == "linear":
        key = "head.fc." + rest
    for old, new in (("rbr_conv.", "conv_kxk."), ("rbr_scale.", "conv_scale."), ("rbr_skip.", "identity."),
                     ("se.reduce.", "attn.fc1."), ("se.expand.", "attn.fc2.")):
        key = key.replace(old, new)
    return key


def test_timm_layout_detected_and_mapped() -> None:
    official = {k: v.numpy() for k, v in torch_ref.create_model("mobileone_s0", num_classes=10).state_dict().items()}
    block = torch_ref.MobileOneBlock(32, 32, 3, padding=1, groups=32, use_se=True, num_conv_branches=2)
    official.update({"stage3.1." + k: v.numpy() for k, v in block.state_dict().items()})
    foreign = {official_to_timm(k): v for k, v in official.items()}
    assert "stem.conv_kxk.0.conv.weight" in foreign and "stages.0.1.identity.running_var" in foreign
    assert detect_layout(list(foreign)) is TIMM_MOBILEONE
    mapped, renamed = apply_layout(foreign, TIMM_MOBILEONE)
    assert list(mapped) == list(official) and renamed == len(official)
    # timm's RepVGG layout is still told apart (its conv_kxk has no branch index).
    repvgg = {"stem.conv_kxk.conv.weight": 0, "stem.conv_1x1.conv.weight": 0, "stages.0.0.conv_kxk.bn.bias": 0}
    assert detect_layout(list(repvgg)) is TIMM_REPVGG


def test_timm_checkpoint_converts_with_deploy_and_verify(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    torch.manual_seed(0)
    model = torch_ref.create_model("mobileone_s0", num_classes=10).eval()
    helpers.randomize_bn(model, np.random.default_rng(0))
    src, dst = tmp_path / "timm_s0.pth", tmp_path / "s0_deploy.pdparams"
    torch.save({official_to_timm(k): v for k, v in model.state_dict().items()}, src)
    code = main(["convert", str(src), str(dst), "--arch", "mobileone_s0", "--deploy", "--verify",
                 "--input-size", str(SMALL)])
    out = capsys.readouterr().out
    assert code == 0, out
    keys = list(read_checkpoint(dst).state)
    assert any("reparam_conv" in k for k in keys) and not any("rbr_" in k for k in keys)
    back = tmp_path / "s0_deploy.pth"
    report = convert_checkpoint(dst, back, to="torch", arch="mobileone_s0", deploy=True, verify=True,
                                input_size=SMALL, progress=False)
    assert all(r["ok"] for r in report.verify)
    deployed = torch_ref.create_model("mobileone_s0", num_classes=10, deploy=True).eval()
    deployed.load_state_dict(torch.load(back, map_location="cpu", weights_only=True), strict=True)
    x = torch.from_numpy(helpers.seeded_input((2, 3, 32, 32), "float32", 3))
    with torch.no_grad():
        helpers.assert_close("converted deploy vs train", deployed(x).numpy(), model(x).numpy(), "fused_vs_eval",
                             "float32")


# ---------------------------------------------------------------- insert_blocks with several branches


def test_insert_blocks_with_conv_branches_keeps_output_and_fuses_back() -> None:
    paddle.seed(0)
    model = paddle.vision.models.mobilenet_v2(scale=0.25, num_classes=10)
    model.eval()
    x = paddle.to_tensor(helpers.seeded_input((2, 3, 32, 32), "float32", 5))
    with paddle.no_grad():
        before = model(x).numpy()
    converted, report = paddle_rep.insert_blocks(model, "mobileone", num_conv_branches=3)
    assert report.inserted and all(len(b.rbr_conv) == 3 for b in converted.sublayers()
                                   if isinstance(b, paddle_rep.MobileOneBlock))
    converted.eval()
    with paddle.no_grad():
        helpers.assert_close("converted", converted(x).numpy(), before, "fused_vs_eval", "float32")
    restored, back = paddle_rep.fuse_back(converted, example_input=x)
    assert sorted(back.restored) == sorted(report.inserted)
    with paddle.no_grad():
        helpers.assert_close("fused back", restored(x).numpy(), before, "fused_vs_eval", "float32")
    assert list(restored.state_dict()) == list(model.state_dict())


# ---------------------------------------------------------------- arguments


BAD = [
    ((8, 8, 3), {"padding": 0}, "padding=kernel_size // 2=1, got 0"),
    ((8, 8, 4), {"padding": 2}, "odd kernel_size, got 4"),
    ((8, 8, 3), {"padding": 1, "dilation": 2}, "dilation=1 only"),
    ((8, 8, 3), {"padding": 1, "use_se": True}, "out_channels >= 16"),
    ((8, 8, 3), {"padding": 1, "num_conv_branches": 0}, "num_conv_branches"),
    ((6, 8, 3), {"padding": 1, "groups": 4}, "in_channels=6 is not divisible"),
]


@pytest.mark.parametrize("framework", ["torch", "paddle"])
@pytest.mark.parametrize(("args", "kwargs", "match"), BAD, ids=[b[2].split()[0] for b in BAD])
def test_invalid_arguments_name_the_argument(framework: str, args: tuple, kwargs: dict, match: str) -> None:
    cls = torch_ref.MobileOneBlock if framework == "torch" else paddle_rep.MobileOneBlock
    with pytest.raises(ValueError, match=match):
        cls(*args, **kwargs)


@pytest.mark.parametrize("framework", ["torch", "paddle"])
def test_inference_mode_and_deploy_build_the_same_fused_block(framework: str) -> None:
    cls = torch_ref.MobileOneBlock if framework == "torch" else paddle_rep.MobileOneBlock
    a, b = cls(16, 16, 3, padding=1, inference_mode=True), cls(16, 16, 3, padding=1, deploy=True)
    assert a.inference_mode and b.is_repped and list(a.state_dict()) == list(b.state_dict())
    assert list(a.state_dict()) == ["reparam_conv.weight", "reparam_conv.bias"]


def test_variant_tables_agree() -> None:
    from paddle_rep.models import _specs
    from torch_ref.models import mobileone

    assert mobileone.MOBILEONE_VARIANTS == _specs.MOBILEONE_VARIANTS


def test_wrong_variant_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="variant must be one of"):
        torch_ref.models.mobileone.mobileone(variant="s9")


# ---------------------------------------------------------------- planted-fault controls


def test_planted_dropped_scale_branch_fails_the_fused_check() -> None:
    """A fusion that forgets the 1x1 scale branch must change the fused output beyond the table."""
    case = next(c for c in MOBILEONE_CASES if c.id == "mobileone-identity")
    torch_block, paddle_block = _pair(case, "float64")
    x = helpers.seeded_input(case.input_shape, "float64", _seed(case))
    paddle_eval, _ = helpers.eval_outputs(torch_block, paddle_block, x)
    with paddle.no_grad():
        paddle_block.rbr_scale.bn.weight.set_value(paddle.zeros_like(paddle_block.rbr_scale.bn.weight))
        paddle_block.rbr_scale.bn.bias.set_value(paddle.zeros_like(paddle_block.rbr_scale.bn.bias))
    paddle_block.switch_to_deploy()
    paddle_fused, _ = helpers.eval_outputs(torch_block, paddle_block, x)
    assert not helpers.measure("fused without scale", paddle_fused, paddle_eval, "fused_vs_eval", "float64").ok


@pytest.mark.parametrize("dtype", helpers.DTYPES)
def test_planted_scale_branch_gradient_fault_is_caught(dtype: str) -> None:
    """The all-but-cancelled gradient measure fails a difference of 1e-3 x the step's largest gradient."""
    case = next(c for c in MOBILEONE_CASES if c.id == "mobileone-depthwise-nb4")
    assert case.step_scaled_suffixes == ("rbr_scale.conv.weight",)
    torch_block, _ = _pair(case, dtype)
    x = helpers.seeded_input(case.input_shape, dtype, _seed(case))
    upstream = np.random.default_rng(1).normal(0.0, 1.0, (case.batch, case.out_channels, *case.hw)).astype(dtype)
    step = helpers.torch_train_step(torch_block, x, upstream)
    name = "rbr_scale.conv.weight"
    yardstick = max(np.abs(np.asarray(g)).max() for g in step.param_grads.values())
    exact = np.asarray(step.param_grads[name])
    assert helpers.measure_step_scaled_grad("same", exact, step, name, dtype).ok
    assert not helpers.measure_step_scaled_grad("planted", exact + 1e-3 * yardstick, step, name, dtype).ok
