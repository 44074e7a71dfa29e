"""RepVGG's Solution C in both frameworks: the inserted-BN models agree like any model, the weight
fake-quant agrees at identical scales except where the two rules differ (measured here), and torch's
``torch.ao.quantization`` QAT flow (torch_ref/quant.py) trains and keeps accuracy on the digits.

The two fake-quant rules (docs/int8.md): torch's qint8 per-channel symmetric ``fake_quantize_per_channel_affine``
rounds halves to even and keeps codes in [-128, 127]; Paddle's rule here (``fake_quant_symmetric``, the
QAT weight quanter) rounds halves away from zero and clips to [-127, 127].
"""

import copy

import numpy as np
import paddle
import pytest

torch = pytest.importorskip("torch")

import paddle_rep  # noqa: E402
import torch_ref  # noqa: E402
from paddle_rep.apps.data import batches, load_digits  # noqa: E402
from paddle_rep.apps.quantize.qat import fake_quant_symmetric  # noqa: E402
from paddle_rep.models.repvgg import RepVGG  # noqa: E402
from paddle_rep.quant import insert_bn  # noqa: E402
from parity_tests import helpers  # noqa: E402
from parity_tests.tolerances import tolerance  # noqa: E402
from torch_ref import quant as torch_quant  # noqa: E402
from torch_ref.models.repvgg import RepVGG as TorchRepVGG  # noqa: E402

ARCH = dict(num_blocks=[1, 2, 1, 1], num_classes=10, width_multiplier=[0.5, 0.5, 0.5, 1])


def _pair(seed: int = 0, block: str = "repvgg"):
    if block == "repvgg":
        return helpers.make_pair(lambda: TorchRepVGG(**ARCH), lambda: RepVGG(**ARCH), "float32", seed)
    return helpers.make_pair(lambda: TorchRepVGG(**ARCH, block_cls=torch_ref.QARepVGGBlockV2),
                             lambda: RepVGG(**ARCH, block_cls=paddle_rep.QARepVGGBlockV2), "float32", seed)


@pytest.mark.parametrize("block", ["repvgg", "qarepvgg"])
def test_inserted_bn_models_agree_between_frameworks(block: str) -> None:
    torch_model, paddle_model = _pair(block=block)
    torch_model.eval()
    paddle_model.eval()
    x = helpers.seeded_input((6, 3, 16, 16), "float32", seed=3)
    data = [x[:3], x[3:]]
    torch_bn = torch_quant.insert_bn(torch_model, data)
    paddle_bn = insert_bn(paddle_model, data)
    torch_keys = {key for key in torch_bn.state_dict() if not key.endswith("num_batches_tracked")}
    from paddle_rep.core.interop import paddle_key_to_torch

    assert torch_keys == {paddle_key_to_torch(key) for key in paddle_bn.state_dict()}
    assert "stage0.rbr_reparam.bn.running_mean" in torch_keys and "stage0.rbr_reparam.conv.weight" in torch_keys
    probe = helpers.seeded_input((4, 3, 16, 16), "float32", seed=4)
    with torch.no_grad():
        expected = torch_bn(torch.from_numpy(probe)).numpy()
    with paddle.no_grad():
        actual = paddle_bn(paddle.to_tensor(probe)).numpy()
    helpers.assert_close("insert_bn logits", actual, expected, "output", "float32")
    for name in ("stage0", "stage2.1"):  # the inserted statistics themselves
        torch_stats = torch_bn.get_submodule(f"{name}.rbr_reparam.bn")
        paddle_stats = paddle_bn
        for part in name.split("."):
            paddle_stats = paddle_stats[int(part)] if part.isdigit() else getattr(paddle_stats, part)
        paddle_stats = paddle_stats.rbr_reparam.bn
        helpers.assert_close(f"{name} mean", paddle_stats._mean.numpy(), torch_stats.running_mean.numpy(),
                             "output", "float32")
        helpers.assert_close(f"{name} var", paddle_stats._variance.numpy(), torch_stats.running_var.numpy(),
                             "output", "float32")
    # negative control: one inserted statistic off shows in the logits
    paddle_bn.stage2[1].rbr_reparam.bn._mean.set_value(paddle_bn.stage2[1].rbr_reparam.bn._mean.numpy() + 0.5)
    with paddle.no_grad():
        moved = paddle_bn(paddle.to_tensor(probe)).numpy()
    assert not helpers.measure("moved", moved, expected, "output", "float32").ok


def _torch_fake_quant(w: np.ndarray, scale: np.ndarray) -> np.ndarray:
    zero = torch.zeros(len(scale), dtype=torch.int32)
    return torch.fake_quantize_per_channel_affine(torch.from_numpy(w), torch.from_numpy(scale), zero, 0,
                                                  -128, 127).numpy()


def _paddle_fake_quant(w: np.ndarray, scale: np.ndarray) -> np.ndarray:
    return fake_quant_symmetric(paddle.to_tensor(w), paddle.to_tensor(scale), axis=0).numpy()


def test_weight_fake_quant_at_identical_scales() -> None:
    """At torch's own observed per-channel scales, the two rules agree except on code -128 (torch keeps it,
    Paddle's rule clips it to -127); both round halves to even."""
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(8, 16, 3)
    observer = torch.ao.quantization.get_default_qat_qconfig("fbgemm").weight()
    observer(conv.weight.detach())  # torch's observer picks the scales
    scale = observer.scale.numpy().astype(np.float32)
    assert np.all(observer.zero_point.numpy() == 0)
    w = conv.weight.detach().numpy()
    torch_q, paddle_q = _torch_fake_quant(w, scale), _paddle_fake_quant(w, scale)
    step = scale[:, None, None, None]
    codes = w / step
    # torch's symmetric scale is max|w| / 127.5, so the most negative weight of a channel may land on -128;
    # 1e-4 around a half: torch multiplies by 1 / scale, Paddle divides, so a near-tie may round apart
    edge = np.isclose(np.abs(codes - np.trunc(codes)), 0.5, atol=1e-4) | (np.round(codes) <= -128)
    np.testing.assert_array_equal(torch_q[~edge], paddle_q[~edge])  # same scale, same codes elsewhere
    differs = torch_q != paddle_q
    assert np.all(np.abs(torch_q - paddle_q)[differs] <= 1.0001 * np.broadcast_to(step, w.shape)[differs])
    # planted: exact half-way codes and the codes at the ends
    ties = np.array([[2.5, -2.5, 3.5, -3.5, 0.5, -0.5, -128.0, 127.0, -127.0, 1.25]], np.float32)
    unit = np.ones(1, np.float32)
    torch_t = _torch_fake_quant(ties, unit)
    paddle_t = _paddle_fake_quant(ties, unit)
    np.testing.assert_array_equal(torch_t, [[2, -2, 4, -4, 0, 0, -128, 127, -127, 1]])  # half to even
    np.testing.assert_array_equal(paddle_t, [[2, -2, 4, -4, 0, 0, -127, 127, -127, 1]])  # half to even, [-127, 127]
    assert np.abs(torch_t - paddle_t).max() == 1.0  # one step, at -128 only


def _trained_torch(x: np.ndarray, y: np.ndarray):
    torch.manual_seed(0)
    model = TorchRepVGG(**ARCH)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4)
    for epoch in range(3):
        model.train()
        for xb, yb in batches(x, y, 64, epoch):
            loss = torch.nn.functional.cross_entropy(model(torch.from_numpy(xb)), torch.from_numpy(yb).long())
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return model.eval()


def test_torch_qat_flow_keeps_accuracy() -> None:
    """insert_bn -> WholeModelQuant (exclud_first_and_linear) -> fuse -> fbgemm prepare_qat -> train ->
    freeze late: the fake-quantized model keeps the float model's top-1 on the held-out digits."""
    digits = load_digits()
    x_train, x_test = np.repeat(digits.x_train, 3, 1), np.repeat(digits.x_test, 3, 1)
    model = _trained_torch(x_train, digits.y_train)
    qat = torch_quant.quantization_aware_training(model, lambda: batches(x_train, digits.y_train, 64, 0), steps=12,
                                                  freeze_steps=4)
    fused = [m for m in qat.modules() if isinstance(m, torch.ao.nn.intrinsic.qat.ConvBnReLU2d)]
    assert len(fused) == 5 and not isinstance(qat.stage0.rbr_reparam, torch.ao.nn.intrinsic.qat.ConvBnReLU2d)
    assert type(qat.linear) is torch.nn.Linear  # left float (exclud_first_and_linear)
    assert all(m.freeze_bn for m in fused)  # frozen late
    with torch.no_grad():
        expected = model(torch.from_numpy(x_test)).numpy()
        fake = qat(torch.from_numpy(x_test)).numpy()
    drop = float(np.mean(expected.argmax(1) == digits.y_test) - np.mean(fake.argmax(1) == digits.y_test))
    assert drop <= tolerance("int8_accuracy_drop", "int8").rel, drop
    assert np.any(fake != expected)
    with pytest.raises(ValueError, match="quantlayers must be one of"):
        torch_quant.WholeModelQuant(copy.deepcopy(model), "first")
