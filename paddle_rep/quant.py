"""Model transforms for RepVGG's quantization-aware training (upstream README "Solution C", step 2).

:func:`insert_bn` re-parameterizes a RepVGG / RepVGGplus / QARepVGG model and puts a BatchNorm back after
each fused conv: ``rbr_reparam`` becomes ``Sequential(conv=bias-free conv, bn=BN)`` (upstream
``tools/insert_bn.py``'s keys ``rbr_reparam.conv.weight``, ``rbr_reparam.bn.*``). The BN's running
mean and variance are the conv's per-channel output statistics over the given data, its ``weight``
is ``sqrt(var + eps)`` and its ``bias`` the mean plus the conv's old bias, so in eval mode the model
computes what the fused model computes. Quantization-aware training then has a BN to train, with
data-scaled statistics, on top of the fused kernel (twin of ``torch_ref/quant.py``).
"""

from collections.abc import Iterable

import numpy as np
import paddle
from paddle import nn

from .bn import BatchNorm2D
from .core.errors import SurgeryError
from .qarepvgg import QARepVGGBlockV2
from .reparam import reparameterize_model
from .repvgg import RepVGGBlock

# Blocks whose deploy form is one conv ``rbr_reparam`` (then an optional SE and the activation): RepVGG's
# and QARepVGG's. QARepVGG's post-sum BN is folded into that conv too (with SE it stays after the SE, so
# the inserted BN still sits right after the conv).
FUSED_CONV_BLOCKS = (RepVGGBlock, QARepVGGBlockV2)


def insert_bn(model: nn.Layer, data: np.ndarray | Iterable[np.ndarray], eps: float = 1e-5) -> nn.Layer:
    """A fused copy of ``model`` with a BN after every RepVGG fused conv, initialised so outputs are unchanged.

    Args:
        model: a RepVGG / RepVGGplus / QARepVGG model (training or deploy form; it is not modified).
        data: input batches ``[N, C, H, W]`` float32 (one array or an iterable of them) whose conv
            output statistics initialise the BNs.
        eps: the new BNs' epsilon.

    Returns:
        The new model, in eval mode.

    Raises:
        SurgeryError: the model holds no RepVGG or QARepVGG block, or ``data`` is empty.
    """
    fused = reparameterize_model(model, inplace=False)
    fused.eval()
    blocks = [layer for layer in fused.sublayers(include_self=True) if isinstance(layer, FUSED_CONV_BLOCKS)]
    if not blocks:
        raise SurgeryError(f"insert_bn found no RepVGGBlock or QARepVGGBlockV2 in {type(model).__name__}")
    sums = {id(block): [0.0, 0.0, 0] for block in blocks}

    def hook(block):
        def record(layer, inputs, output):
            bias = layer.bias.reshape([1, -1, 1, 1])
            y = (output - bias).astype("float64")
            entry = sums[id(block)]
            entry[0] = entry[0] + y.sum(axis=[0, 2, 3]).numpy()
            entry[1] = entry[1] + (y * y).sum(axis=[0, 2, 3]).numpy()
            entry[2] += y.shape[0] * y.shape[2] * y.shape[3]
        return record

    handles = [block.rbr_reparam.register_forward_post_hook(hook(block)) for block in blocks]
    with paddle.no_grad():
        for batch in [data] if isinstance(data, np.ndarray) else data:
            fused(paddle.to_tensor(np.ascontiguousarray(batch, dtype=np.float32)))
    for handle in handles:
        handle.remove()
    for block in blocks:
        total, squares, count = sums[id(block)]
        if not count:
            raise SurgeryError("insert_bn needs at least one batch of data")
        mean = total / count
        block.rbr_reparam = _conv_bn(block.rbr_reparam, mean, np.maximum(squares / count - mean ** 2, 0.0), eps)
    return fused


def _conv_bn(conv: nn.Conv2D, mean: np.ndarray, var: np.ndarray, eps: float) -> nn.Sequential:
    new = nn.Conv2D(conv._in_channels, conv._out_channels, conv._kernel_size, stride=conv._stride,
                    padding=conv._padding, dilation=conv._dilation, groups=conv._groups,
                    padding_mode=conv._padding_mode, bias_attr=False)
    new.weight.set_value(conv.weight)
    bn = BatchNorm2D(conv._out_channels, epsilon=eps)
    bn._mean.set_value(mean.astype(np.float32))
    bn._variance.set_value(var.astype(np.float32))
    bn.weight.set_value(np.sqrt(var + eps).astype(np.float32))
    bn.bias.set_value((mean + conv.bias.numpy().astype(np.float64)).astype(np.float32))
    layer = nn.Sequential(("conv", new), ("bn", bn))
    layer.eval()
    return layer


def fuse_inserted_bn(model: nn.Layer) -> nn.Layer:
    """The inverse of :func:`insert_bn`, in place: each ``rbr_reparam = Sequential(conv, bn)`` becomes one
    conv with bias again (the BN folded in, eval statistics); returns ``model`` in eval mode.

    Used to export a quantization-aware-trained model as a plain fused graph: the folded kernel of
    channel ``c`` is the trained kernel times ``gamma_c / sqrt(var_c + eps)``, so per-output-channel
    symmetric int8 puts it on the same grid as the trained kernel.

    Args:
        model: a model from :func:`insert_bn` (changed in place).

    Returns:
        ``model``, with plain fused convs, in eval mode.

    Raises:
        SurgeryError: the model holds no inserted BN.
    """
    blocks = [layer for layer in model.sublayers(include_self=True)
              if isinstance(layer, FUSED_CONV_BLOCKS)
              and isinstance(getattr(layer, "rbr_reparam", None), nn.Sequential)]
    if not blocks:
        raise SurgeryError(f"fuse_inserted_bn found no RepVGG block with an inserted BN in {type(model).__name__}")
    for block in blocks:
        conv, bn = block.rbr_reparam.conv, block.rbr_reparam.bn
        std = np.sqrt(bn._variance.numpy().astype(np.float64) + bn._epsilon)
        scale = bn.weight.numpy().astype(np.float64) / std
        fused = nn.Conv2D(conv._in_channels, conv._out_channels, conv._kernel_size, stride=conv._stride,
                          padding=conv._padding, dilation=conv._dilation, groups=conv._groups)
        fused.weight.set_value((conv.weight.numpy() * scale[:, None, None, None]).astype(np.float32))
        fused.bias.set_value((bn.bias.numpy() - bn._mean.numpy() * scale).astype(np.float32))
        block.rbr_reparam = fused
    model.eval()
    return model
