"""The int8 yardstick, small: the two families test_int8.py does not train (ACNet, RepVGGplus at small width),
trained briefly on the digits, per-channel PTQ on both int8 runtimes: top-1 agreement and accuracy within the
int8 bounds, and an int8 result that differs from float32 (a predictor silently running float32 fails).
The full yardstick (30 epochs, every method, four families) is ``python -m paddle_rep.apps.quantize.yardstick``."""

import pytest

from parity_tests.tolerances import tolerance

pytest.importorskip("onnxruntime.quantization")
pytest.importorskip("nncf")
pytest.importorskip("sklearn")


@pytest.mark.parametrize("family", ["ACNet (CIFAR ResNet-8)", "RepVGGplus"])
def test_per_channel_ptq_keeps_the_digits(family: str, tmp_path) -> None:
    from paddle_rep.apps.quantize.yardstick import run_family

    results = run_family(family, epochs=4, folder=tmp_path, methods=("PTQ per-channel",))
    reference, *int8 = results
    assert reference.top1 > 0.8, reference  # trained: the bounds mean something
    assert {r.backend for r in int8} == {"onnxruntime", "openvino"}
    for result in int8:
        assert 1 - result.agreement <= tolerance("int8_disagreement", "int8").rel, result
        assert reference.top1 - result.top1 <= tolerance("int8_accuracy_drop", "int8").rel, result
        assert result.median_error > 1e-5, result  # int8, not float32 in disguise
