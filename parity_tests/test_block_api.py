"""Block behaviour beyond the numbers: deploy protocol, state-dict keys, init, argument checks."""

import subprocess
import sys

import numpy as np
import paddle
import pytest
import torch

import paddle_rep
import torch_ref
from paddle_rep.core import interop
from parity_tests import helpers

FUSABLE = [
    pytest.param(torch_ref.ACBlock, paddle_rep.ACBlock, (4, 8, 3), {"padding": 1},
                 ["fused_conv.weight", "fused_conv.bias"], id="acb"),
    pytest.param(torch_ref.RepVGGBlock, paddle_rep.RepVGGBlock, (16, 16, 3), {"padding": 1, "use_se": True},
                 ["se.down.weight", "se.down.bias", "se.up.weight", "se.up.bias", "rbr_reparam.weight",
                  "rbr_reparam.bias"], id="repvgg-se"),
    pytest.param(torch_ref.QARepVGGBlockV2, paddle_rep.QARepVGGBlockV2, (8, 8, 3), {"padding": 1},
                 ["rbr_reparam.weight", "rbr_reparam.bias"], id="qarepvgg"),
    pytest.param(torch_ref.MobileOneBlock, paddle_rep.MobileOneBlock, (16, 16, 3),
                 {"padding": 1, "groups": 16, "use_se": True, "num_conv_branches": 3},
                 ["se.reduce.weight", "se.reduce.bias", "se.expand.weight", "se.expand.bias", "reparam_conv.weight",
                  "reparam_conv.bias"], id="mobileone-se"),
    pytest.param(torch_ref.DiverseBranchBlock, paddle_rep.DiverseBranchBlock, (8, 16, 3), {"padding": 1},
                 ["dbb_reparam.weight", "dbb_reparam.bias"], id="dbb"),
]


@pytest.mark.parametrize(("torch_cls", "paddle_cls", "args", "kwargs", "deploy_keys"), FUSABLE)
def test_deploy_protocol(torch_cls, paddle_cls, args, kwargs, deploy_keys) -> None:
    """Fusing gives exactly the official deploy keys, is idempotent, and loads into deploy=True strictly."""
    torch_block, paddle_block = helpers.make_pair(lambda: torch_cls(*args, **kwargs),
                                                  lambda: paddle_cls(*args, **kwargs), "float64", seed=5)
    torch_block.eval()
    paddle_block.eval()
    assert list(torch_cls(*args, deploy=True, **kwargs).state_dict()) == deploy_keys
    assert list(paddle_cls(*args, deploy=True, **kwargs).state_dict()) == deploy_keys
    paddle_block.switch_to_deploy()
    first = {k: v.numpy().copy() for k, v in paddle_block.state_dict().items()}
    paddle_block.reparameterize()
    paddle_block.re_parameterize()
    assert paddle_block.is_repped and paddle_block.deploy
    assert list(paddle_block.state_dict()) == deploy_keys
    for key, value in paddle_block.state_dict().items():
        np.testing.assert_array_equal(value.numpy(), first[key], err_msg=key)
        assert value.dtype == paddle.float64, f"{key} lost its dtype"
    torch_block.switch_to_deploy()
    torch_block.switch_to_deploy()
    assert list(torch_block.state_dict()) == deploy_keys

    x = helpers.seeded_input((2, args[0], 8, 8), "float64", seed=5)
    fresh_torch = torch_cls(*args, deploy=True, **kwargs).double().eval()
    fresh_torch.load_state_dict(torch_block.state_dict(), strict=True)
    fresh_paddle = paddle_cls(*args, deploy=True, **kwargs)
    fresh_paddle.to(dtype="float64")
    fresh_paddle.eval()
    missing, unexpected = fresh_paddle.set_state_dict(paddle_block.state_dict())
    assert not missing and not unexpected
    actual, expected = helpers.eval_outputs(fresh_torch, fresh_paddle, x)
    helpers.assert_close("deploy=True outputs", actual, expected, "output", "float64")
    with paddle.no_grad():
        np.testing.assert_array_equal(fresh_paddle(paddle.to_tensor(x)).numpy(),
                                      paddle_block(paddle.to_tensor(x)).numpy())


@pytest.mark.parametrize(("torch_cls", "paddle_cls", "args", "kwargs", "deploy_keys"), FUSABLE)
def test_equivalent_kernel_is_differentiable(torch_cls, paddle_cls, args, kwargs, deploy_keys) -> None:
    torch_block, paddle_block = helpers.make_pair(lambda: torch_cls(*args, **kwargs),
                                                  lambda: paddle_cls(*args, **kwargs), "float32", seed=6)
    torch_kernel, _ = torch_block.get_equivalent_kernel_bias()
    paddle_kernel, _ = paddle_block.get_equivalent_kernel_bias()
    torch_kernel.square().sum().backward()
    paddle_kernel.square().sum().backward()
    torch_grads = {k: p.grad for k, p in torch_block.named_parameters() if p.grad is not None}
    paddle_grads = interop.to_torch({k: p.grad for k, p in paddle_block.named_parameters() if p.grad is not None},
                                    num_batches_tracked=None)
    assert torch_grads and set(paddle_grads) == set(torch_grads)
    helpers.assert_all_close([helpers.measure(k, paddle_grads[k], torch_grads[k], "param_grad", "float32")
                              for k in torch_grads])


def test_fusion_keeps_a_float64_torch_block_in_float64() -> None:
    block = torch_ref.ACBlock(2, 4, 3, padding=1).double().eval()
    block.switch_to_deploy()
    assert block.fused_conv.weight.dtype == torch.float64


@pytest.mark.parametrize("framework", ["torch", "paddle"])
def test_acb_gamma_initialisation(framework: str) -> None:
    module = torch_ref if framework == "torch" else paddle_rep

    def gammas(block) -> list[float]:
        return [float(helpers.as_numpy(bn.weight).mean()) for bn in (block.square_bn, block.ver_bn, block.hor_bn)]

    assert gammas(module.ACBlock(2, 4, 3, padding=1, reduce_gamma=True)) == pytest.approx([1 / 3] * 3)
    assert gammas(module.ACBlock(2, 4, 3, padding=1, gamma_init=0.5)) == pytest.approx([0.5] * 3)
    block = module.ACBlock(2, 4, 3, padding=1)
    block.single_init()
    assert gammas(block) == [1.0, 0.0, 0.0]
    with pytest.raises(ValueError, match="use_affine=True"):
        module.ACBlock(2, 4, 3, padding=1, use_affine=False, gamma_init=0.5)


HEADS = [  # (in, out, k, groups, kernel_num) -> which attention heads exist (upstream skip rules)
    pytest.param((16, 16, 3, 1, 4), (True, True, True), id="k3-kn4"),
    pytest.param((16, 16, 3, 1, 1), (True, True, False), id="k3-kn1"),
    pytest.param((16, 16, 1, 1, 1), (True, False, False), id="k1-kn1"),
    pytest.param((16, 16, 1, 1, 4), (True, False, True), id="k1-kn4"),
    pytest.param((16, 16, 3, 16, 4), (False, True, True), id="depthwise"),
    pytest.param((16, 32, 3, 16, 4), (True, True, True), id="groups-in-out2x"),
]


@pytest.mark.parametrize(("config", "expected"), HEADS)
def test_odconv_attention_heads_follow_upstream_skip_rules(config: tuple, expected: tuple) -> None:
    cin, cout, k, groups, kn = config
    for block in (torch_ref.ODConv2d(cin, cout, k, groups=groups, kernel_num=kn),
                  paddle_rep.ODConv2D(cin, cout, k, groups=groups, kernel_num=kn)):
        present = tuple(getattr(block.attention, name) is not None for name in ("filter_fc", "spatial_fc", "kernel_fc"))
        assert present == expected
    torch_block = torch_ref.ODConv2d(cin, cout, k, groups=groups, kernel_num=kn).eval()
    channel, filter_, spatial, kernel = torch_block.attention(torch.randn(2, cin, 5, 5))
    assert channel.shape == (2, cin, 1, 1)
    assert filter_ is None or filter_.shape == (2, cout, 1, 1)
    assert spatial is None or spatial.shape == (2, 1, 1, k, k)
    assert kernel is None or (kernel.shape == (2, kn) and torch.allclose(kernel.sum(1), torch.ones(2)))


def test_odconv_weight_init_reaches_every_kernel() -> None:
    """Upstream inits each weight[i]; in Paddle a slice init would be a silent no-op (all zeros)."""
    paddle.seed(0)
    block = paddle_rep.ODConv2D(64, 128, 3, kernel_num=4)
    expected_std = np.sqrt(2.0 / (128 * 9))  # kaiming_normal_(mode="fan_out", nonlinearity="relu")
    weights = block.weight.numpy()
    for i in range(4):
        assert abs(weights[i].std() / expected_std - 1) < 0.05, f"kernel {i}: std {weights[i].std()}"
    torch.manual_seed(0)
    torch_weights = torch_ref.ODConv2d(64, 128, 3, kernel_num=4).weight.detach().numpy()
    assert abs(torch_weights.std() / expected_std - 1) < 0.05
    fc = block.attention.fc.weight.numpy()  # fan_out of a 1x1 conv = its output channels
    assert abs(fc.std() / np.sqrt(2.0 / fc.shape[0]) - 1) < 0.1


def test_odconv_temperature() -> None:
    for block in (torch_ref.ODConv2d(8, 8, 3), paddle_rep.ODConv2D(8, 8, 3)):
        assert block.attention.temperature == 1.0
        block.update_temperature(30)
        assert block.attention.temperature == 30.0


BAD_ARGUMENTS = [
    pytest.param("ACBlock", (4, 8, (3, 3)), {}, "kernel_size must be an int", id="acb-tuple-kernel"),
    pytest.param("ACBlock", (4, 8, 4), {"padding": 1}, "kernel_size must be odd", id="acb-even-kernel"),
    pytest.param("ACBlock", (4, 8, 3), {"groups": 3}, "in_channels=4 is not divisible by groups=3", id="acb-groups"),
    pytest.param("ACBlock", (4, 8, 3), {"padding_mode": "mirror"}, "padding_mode must be one of", id="acb-mode"),
    pytest.param("ACBlock", (4, 8, 3), {"stride": 0}, "stride must be >= 1", id="acb-stride0"),
    pytest.param("RepVGGBlock", (4, 8, 5), {"padding": 2}, "kernel_size=3, got 5", id="repvgg-k5"),
    pytest.param("RepVGGBlock", (4, 8, 3), {"padding": 0}, "padding=1, got 0", id="repvgg-p0"),
    pytest.param("RepVGGBlock", (4, 8, 3), {"padding": 1, "dilation": 2}, "dilation=1 only", id="repvgg-dilation"),
    pytest.param("RepVGGBlock", (8, 8, 3), {"padding": 1, "use_se": True}, "out_channels >= 16", id="repvgg-se-narrow"),
    pytest.param("RepVGGBlock", (6, 8, 3), {"padding": 1, "groups": 4}, "in_channels=6 is not divisible", id="rep-g"),
    pytest.param("QARepVGGBlockV2", (4, 8, 3), {"padding": 0}, "padding=1, got 0", id="qarepvgg-p0"),
    pytest.param("QARepVGGBlockV2", (4, 8, 3), {"padding": 1, "drop_path_ratio": 1.0}, "drop_path_ratio",
                 id="qarepvgg-drop-path"),
    pytest.param("ODConv", (8, 8, (3, 3)), {}, "kernel_size must be an int", id="odconv-tuple-kernel"),
    pytest.param("ODConv", (8, 6, 3), {"groups": 4}, "out_channels=6 is not divisible", id="odconv-groups"),
    pytest.param("ODConv", (8, 8, 3), {"kernel_num": 0}, "kernel_num must be >= 1", id="odconv-kernel-num"),
    pytest.param("ODConv", (8, 8, 3), {"reduction": 0}, "reduction must be > 0", id="odconv-reduction"),
]


@pytest.mark.parametrize(("name", "args", "kwargs", "message"), BAD_ARGUMENTS)
@pytest.mark.parametrize("framework", ["torch", "paddle"])
def test_invalid_arguments_name_the_argument(framework: str, name: str, args: tuple, kwargs: dict,
                                             message: str) -> None:
    cls = {("torch", "ODConv"): torch_ref.ODConv2d, ("paddle", "ODConv"): paddle_rep.ODConv2D}.get(
        (framework, name)) or getattr(torch_ref if framework == "torch" else paddle_rep, name)
    with pytest.raises(ValueError, match=message):
        cls(*args, **kwargs)


@pytest.mark.parametrize("name", ["ACBlock", "RepVGGBlock", "QARepVGGBlockV2", "DiverseBranchBlock", "MobileOneBlock",
                                  "ODConv"])
def test_wrong_input_channels_is_a_clear_error(name: str) -> None:
    x = np.ones((2, 5, 6, 6), dtype=np.float32)
    torch_cls = torch_ref.ODConv2d if name == "ODConv" else getattr(torch_ref, name)
    paddle_cls = paddle_rep.ODConv2D if name == "ODConv" else getattr(paddle_rep, name)
    with pytest.raises(ValueError, match=r"expects 4 input channels, got shape \[2, 5, 6, 6\]"):
        torch_cls(4, 4, 3, padding=1)(torch.from_numpy(x))
    with pytest.raises(ValueError, match=r"expects 4 input channels, got shape \[2, 5, 6, 6\]"):
        paddle_cls(4, 4, 3, padding=1)(paddle.to_tensor(x))


def test_se_pools_globally_on_non_square_maps() -> None:
    """Upstream pools with a kernel as wide as the input: a 6x10 map fails there ("Output size is too small")."""
    torch.manual_seed(0)
    se = torch_ref.SEBlock(32, 2).eval()
    x = torch.randn(2, 32, 6, 10)
    scale = torch.sigmoid(se.up(torch.relu(se.down(x.mean((2, 3), keepdim=True)))))
    torch.testing.assert_close(se(x), x * scale, rtol=0, atol=1e-6)


def _stack(module):
    seq = torch.nn.Sequential if module is torch_ref else paddle.nn.Sequential
    od = torch_ref.ODConv2d if module is torch_ref else paddle_rep.ODConv2D
    return seq(module.ACBlock(3, 16, 3, padding=1), module.RepVGGBlock(16, 16, 3, padding=1, use_se=True),
               od(16, 16, 3, padding=1, kernel_num=2), module.RepVGGBlock(16, 32, 3, stride=2, padding=1))


def test_reparameterize_model_fuses_any_tree() -> None:
    torch_model, paddle_model = helpers.make_pair(lambda: _stack(torch_ref), lambda: _stack(paddle_rep),
                                                  "float32", seed=8)
    x = helpers.seeded_input((2, 3, 10, 12), "float32", seed=8)
    paddle_eval, torch_eval = helpers.eval_outputs(torch_model, paddle_model, x)
    torch_fused = torch_ref.reparameterize_model(torch_model)
    paddle_fused = paddle_rep.reparameterize_model(paddle_model)
    assert "0.square_conv.weight" in paddle_model.state_dict(), "inplace=False must leave the input alone"
    keys = list(torch_fused.state_dict())
    assert "0.fused_conv.weight" in keys and not any("rbr_dense" in k or "square" in k for k in keys)
    assert list(interop.to_torch(paddle_fused.state_dict())) == keys
    paddle_out, torch_out = helpers.eval_outputs(torch_fused, paddle_fused, x)
    helpers.assert_all_close([
        helpers.measure("torch fused vs eval", torch_out, torch_eval, "fused_vs_eval", "float32"),
        helpers.measure("paddle fused vs eval", paddle_out, paddle_eval, "fused_vs_eval", "float32"),
        helpers.measure("paddle vs torch fused", paddle_out, torch_out, "output", "float32"),
    ])


@pytest.mark.filterwarnings("ignore:The program will return to single-card operation")
def test_reparameterize_model_unwraps_data_parallel() -> None:
    """The fused model of a DataParallel-wrapped net has the plain keys in both frameworks."""
    torch_model, paddle_model = helpers.make_pair(lambda: _stack(torch_ref), lambda: _stack(paddle_rep),
                                                  "float32", seed=10)
    torch_fused = torch_ref.reparameterize_model(torch.nn.DataParallel(torch_model))
    paddle_fused = paddle_rep.reparameterize_model(paddle.DataParallel(paddle_model))
    assert list(torch_fused.state_dict())[0] == "0.fused_conv.weight"
    assert list(interop.to_torch(paddle_fused.state_dict())) == list(torch_fused.state_dict())
    x = helpers.seeded_input((2, 3, 10, 12), "float32", seed=10)
    actual, expected = helpers.eval_outputs(torch_fused, paddle_fused, x)
    helpers.assert_close("fused DataParallel nets", actual, expected, "output", "float32")


def test_paddleclas_export_loop_works() -> None:
    """PaddleClas calls re_parameterize() on each sublayer whose is_repped is False, before jit.save."""
    model = _stack(paddle_rep)
    model.eval()
    for layer in model.sublayers():
        if hasattr(layer, "re_parameterize") and not layer.is_repped:
            layer.re_parameterize()
    assert all(layer.is_repped for layer in model.sublayers() if hasattr(layer, "re_parameterize"))


def test_fusion_accepts_sync_batchnorm() -> None:
    """SyncBatchNorm is not a BatchNorm2D and has no CPU kernel: fuse-only check."""
    torch_block, block = helpers.make_pair(lambda: torch_ref.RepVGGBlock(8, 8, 3, padding=1),
                                           lambda: paddle_rep.RepVGGBlock(8, 8, 3, padding=1), "float32", seed=9)
    block.eval()
    torch_block.eval()
    torch_block.switch_to_deploy()  # the oracle: the torch reference's own fusion, not the function under test
    expected = interop.from_torch(torch_block.state_dict())
    synced = paddle.nn.SyncBatchNorm.convert_sync_batchnorm(block)
    assert isinstance(synced.rbr_dense.bn, paddle.nn.SyncBatchNorm)
    synced.switch_to_deploy()
    helpers.assert_all_close([
        helpers.measure("SyncBN fused weight", synced.rbr_reparam.weight, expected["rbr_reparam.weight"],
                        "fused_kernel", "float32"),
        helpers.measure("SyncBN fused bias", synced.rbr_reparam.bias, expected["rbr_reparam.bias"],
                        "fused_kernel", "float32"),
    ])


@pytest.mark.parametrize(("statement", "forbidden"), [
    ("import torch_ref; torch_ref.ACBlock(2, 2, 3)", "paddle"),
    ("import paddle_rep; paddle_rep.ACBlock(2, 2, 3); paddle_rep.reparameterize_model", "torch"),
])
def test_frameworks_do_not_import_each_other(statement: str, forbidden: str) -> None:
    code = f"import sys; {statement}; assert {forbidden!r} not in sys.modules"
    subprocess.run([sys.executable, "-W", "ignore", "-c", code], check=True)


def test_qarepvgg_se_keeps_the_post_bn_after_fusion() -> None:
    """Upstream folds the post-sum BN through the SE at deploy (0.98 max abs off in our check); here it stays."""
    torch_block, paddle_block = helpers.make_pair(lambda: torch_ref.QARepVGGBlockV2(32, 32, 3, padding=1, use_se=True),
                                                  lambda: paddle_rep.QARepVGGBlockV2(32, 32, 3, padding=1, use_se=True),
                                                  "float64", seed=8)
    deploy_keys = list(torch_ref.QARepVGGBlockV2(32, 32, 3, padding=1, use_se=True, deploy=True).state_dict())
    assert deploy_keys[-7:-5] == ["rbr_reparam.weight", "rbr_reparam.bias"] and deploy_keys[-5] == "bn.weight"
    x = helpers.seeded_input((2, 32, 6, 6), "float64", seed=8)
    before, _ = helpers.eval_outputs(torch_block, paddle_block, x)
    torch_block.switch_to_deploy()
    paddle_block.switch_to_deploy()
    assert list(torch_block.state_dict()) == deploy_keys
    after, _ = helpers.eval_outputs(torch_block, paddle_block, x)
    helpers.assert_close("SE block fused vs branches", after, before, "fused_vs_eval", "float64")


def test_qarepvgg_drop_path_only_where_the_identity_is() -> None:
    """Upstream drops the conv branches per sample only in blocks with an identity; eval mode never drops."""
    torch.manual_seed(0)
    with_identity = torch_ref.QARepVGGBlockV2(8, 8, 3, padding=1, drop_path_ratio=0.5).train()
    without = torch_ref.QARepVGGBlockV2(8, 16, 3, padding=1, drop_path_ratio=0.5).train()
    x = torch.randn(16, 8, 5, 5)
    for block in (with_identity, without):
        block.bn = torch.nn.Identity()  # so the output shows the branch sum itself
    with torch.no_grad():
        out = with_identity(x)
        dropped = [torch.allclose(out[i], torch.relu(x[i])) for i in range(16)]
        assert any(dropped) and not all(dropped), "expected some samples to keep only the identity"
        assert torch.allclose(without(x), torch.relu(without.rbr_dense(x) + without.rbr_1x1(x)), atol=1e-6)
        with_identity.eval()
        dense = with_identity.rbr_dense(x) + with_identity.rbr_1x1(x)
        assert torch.allclose(with_identity(x), torch.relu(dense + x), atol=1e-6)
