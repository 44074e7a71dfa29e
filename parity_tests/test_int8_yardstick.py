"""The int8 yardstick, small: the families test_int8.py does not train (ACNet, RepVGGplus at small width, DBB,
MobileOne; QARepVGG through the RepVGG-vs-QARepVGG comparison), trained briefly on the digits, per-channel PTQ
on both int8 runtimes: top-1 agreement and accuracy within the int8 bounds, and an int8 result that differs
from float32 (a predictor silently running float32 fails). MobileOne passes at 4 epochs; at the yardstick's
30 it loses 1.2 points on OpenVINO (past the bound; docs/int8.md). The negative control plants a function-preserving
channel scaling (RepVGG's fused-kernel spread, exaggerated): per-tensor int8 must fail the same bounds.
The full yardstick (30 epochs, every method, every family) is ``python -m paddle_rep.apps.quantize.yardstick``;
the comparison at full settings is its ``--compare repvgg-qarepvgg``.
"""

import math

import numpy as np
import paddle
import pytest

from parity_tests.tolerances import tolerance

pytest.importorskip("onnxruntime.quantization")
pytest.importorskip("nncf")
pytest.importorskip("sklearn")


def assert_int8_within_bounds(reference, int8) -> None:
    """The int8 bounds of the yardstick: agreement and accuracy drop (tolerance table), and int8 really ran."""
    assert reference.top1 > 0.8, reference  # trained: the bounds mean something
    assert {r.backend for r in int8} == {"onnxruntime", "openvino"}
    for result in int8:
        assert 1 - result.agreement <= tolerance("int8_disagreement", "int8").rel, result
        assert reference.top1 - result.top1 <= tolerance("int8_accuracy_drop", "int8").rel, result
        assert result.median_error > 1e-5, result  # int8, not float32 in disguise


# 4 epochs each; measured with --durations on the 2-core machine when quiet (under a load of 9: about 4x):
# ACNet 7.8 s, RepVGGplus 4.5 s, DBB 7.7 s, MobileOne 19.8 s (depthwise convs with 4 branches train slowly:
# in `slow`, to keep the default suite's time)
@pytest.mark.parametrize("family", ["ACNet (CIFAR ResNet-8)", "RepVGGplus", "DBB (ResNet-10, width 0.25)",
                                    pytest.param("MobileOne (4 conv branches)", marks=pytest.mark.slow)])
def test_per_channel_ptq_keeps_the_digits(family: str, tmp_path) -> None:
    from paddle_rep.apps.quantize.yardstick import run_family

    reference, *int8 = run_family(family, epochs=4, folder=tmp_path, methods=("PTQ per-channel",))
    assert_int8_within_bounds(reference, int8)


def test_repvgg_qarepvgg_comparison(tmp_path) -> None:
    """Both nets (same width, same training) stay within the int8 bounds, and the comparison's per-layer tables
    name the same fused layers: SQNR per weighted op in graph order (the stem kept float), kernel and activation
    ranges per conv."""
    from paddle_rep.apps.quantize.yardstick import COMPARISONS, compare, render_comparison

    compared = compare(COMPARISONS["repvgg-qarepvgg"], epochs=4, folder=tmp_path, methods=("PTQ per-channel",))
    assert [c.family for c in compared] == ["RepVGG", "QARepVGG"]
    for c in compared:
        reference, *int8 = c.results
        assert_int8_within_bounds(reference, int8)
        layers = [k.layer for k in c.kernels]
        assert layers == [a.layer for a in c.activations] == [name for name, _ in c.sqnr["PTQ per-channel"]]
        assert layers[0] == "stage0.rbr_reparam" and layers[-1] == "linear", layers
        sqnr = [db for _, db in c.sqnr["PTQ per-channel"]]
        assert math.isinf(sqnr[0]) and all(10 < db < 80 for db in sqnr[1:]), sqnr  # stem float, the rest int8
        assert all(k.spread >= 1 and a.crest >= 1 for k, a in zip(c.kernels, c.activations, strict=True))
    table = render_comparison(compared)
    assert "| stage4.0.rbr_reparam |" in table and "QARepVGG per-channel" in table


def test_planted_channel_scale_fails_per_tensor_int8(tmp_path) -> None:
    """Negative control: scale one output channel of a fused conv by 100 and the next conv's matching input
    channel by 1/100. The float model computes the same (ReLU is positively homogeneous), but one channel now
    sets the per-tensor weight scale and the others round to a few levels: per-tensor PTQ must fail the bounds
    that the clean model meets, kernel_ranges must flag the layer, and per-channel weights must recover part."""
    from paddle_rep.apps import Predictor, export
    from paddle_rep.apps.quantize.ptq import Int8Options
    from paddle_rep.apps.quantize.yardstick import _repvgg, digits3, kernel_ranges, measure, train
    from paddle_rep.reparam import reparameterize_model

    data = digits3()
    paddle.seed(0)
    fused = reparameterize_model(train(_repvgg(), data, 3))
    planted, following = fused.stage2[0].rbr_reparam, fused.stage3[0].rbr_reparam
    weight, bias, after = planted.weight.numpy(), planted.bias.numpy(), following.weight.numpy()
    weight[0], bias[0], after[:, 0] = weight[0] * 100, bias[0] * 100, after[:, 0] / 100
    planted.weight.set_value(weight)
    planted.bias.set_value(bias)
    following.weight.set_value(after)
    spreads = {k.layer: k.spread for k in kernel_ranges(fused)}
    assert spreads["stage2.0.rbr_reparam"] > 50 > max(v for k, v in spreads.items() if k.startswith("stage3")), spreads
    agreement = {}
    for name, options in (("per-tensor", Int8Options(per_channel=False, keep_float="first_and_linear")),
                          ("per-channel", Int8Options(keep_float="first_and_linear"))):
        exported = export(fused, tmp_path / name, data.x_train.shape[1:], onnx=True, calibration=data.x_train[:128],
                          int8_options=options, int8_backends=("onnxruntime",))
        with Predictor(exported, "onnxruntime") as predictor:
            reference = predictor(data.x_test)
        with Predictor(exported, "onnxruntime", precision="int8") as predictor:
            result = measure("planted", name, "onnxruntime", predictor(data.x_test), reference, data.y_test)
        agreement[name] = result.agreement
        if name == "per-tensor":
            float_top1 = float(np.mean(reference.argmax(1) == data.y_test))
            assert float_top1 > 0.8  # the plant kept the float model
            assert (1 - result.agreement > tolerance("int8_disagreement", "int8").rel
                    or float_top1 - result.top1 > tolerance("int8_accuracy_drop", "int8").rel), result
    assert agreement["per-channel"] > agreement["per-tensor"] + 0.2, agreement
