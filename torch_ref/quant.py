"""RepVGG's quantization-aware training, PyTorch reference (upstream README "Solution C"; twin of
``paddle_rep/quant.py`` and ``paddle_rep/apps/quantize/qat.py``).

Steps, as upstream's ``tools/insert_bn.py`` and ``quantization/repvgg_quantized.py`` lay them out:

1. :func:`insert_bn`: fuse, then put a BN after each fused conv, ``rbr_reparam = Sequential(conv, bn)``
   (keys ``rbr_reparam.conv.weight``, ``rbr_reparam.bn.*``, as in Paddle), its statistics measured on
   data and its affine set so that the eval output is unchanged.
2. :class:`WholeModelQuant` wraps a RepVGG with a ``QuantStub`` / ``DeQuantStub`` pair; ``quantlayers``
   is upstream's choice of what stays float: ``"all"`` (nothing), ``"exclud_first_and_linear"`` (the stem
   block and the classifier) or ``"exclud_first_and_last"`` (the stem block, the last stage and the
   classifier). Unlike upstream, the float parts also get ``qconfig = None``, so ``prepare_qat`` leaves
   their weights float instead of fake-quantizing layers that the stubs put outside the int8 region.
3. :meth:`WholeModelQuant.prepare_quant`: move each block's ReLU into its ``rbr_reparam`` (upstream's
   note: so that ``fuse_modules`` sees ``conv, bn, relu``), fuse them for QAT, the fbgemm QAT qconfig
   (weights qint8 per channel symmetric, activations quint8 affine with a 7-bit range), ``prepare_qat``.
4. :func:`quantization_aware_training`: SGD, then for the last ``freeze_steps`` the BN statistics and
   the observers are frozen (upstream ``freeze_quant_bn``, plus ``disable_observer``).
"""

import copy
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator

import numpy as np
import torch
import torch.ao.nn.intrinsic.qat as intrinsic_qat
import torch.nn.functional as F
from torch import nn
from torch.ao import quantization as tq

from .qarepvgg import QARepVGGBlockV2
from .reparam import reparameterize_model
from .repvgg import RepVGGBlock

QUANTLAYERS = ("all", "exclud_first_and_linear", "exclud_first_and_last")  # upstream's spellings


# Blocks whose deploy form is one conv ``rbr_reparam`` then SE and the activation (twin of paddle_rep.quant's).
FUSED_CONV_BLOCKS = (RepVGGBlock, QARepVGGBlockV2)


def _blocks(model: nn.Module) -> list[nn.Module]:
    return [module for module in model.modules() if isinstance(module, FUSED_CONV_BLOCKS)]


@torch.no_grad()
def insert_bn(model: nn.Module, data: np.ndarray | Iterable[np.ndarray], eps: float = 1e-5) -> nn.Module:
    """A fused copy of ``model`` with a BN after every RepVGG fused conv, initialised so outputs are unchanged.

    Args:
        model: a RepVGG / RepVGGplus / QARepVGG model (training or deploy form; it is not modified).
        data: input batches ``[N, C, H, W]`` float32 (one array or an iterable of them) whose conv
            output statistics initialise the BNs.
        eps: the new BNs' epsilon.

    Returns:
        The new model, in eval mode.

    Raises:
        ValueError: the model holds no RepVGG block, or ``data`` is empty.
    """
    fused = reparameterize_model(model, inplace=False)
    blocks = _blocks(fused)
    if not blocks:
        raise ValueError(f"insert_bn found no RepVGGBlock or QARepVGGBlockV2 in {type(model).__name__}")
    sums = {id(block): [0.0, 0.0, 0] for block in blocks}

    def hook(block: RepVGGBlock):
        def record(conv, inputs, output):
            y = (output - conv.bias.view(1, -1, 1, 1)).double()
            entry = sums[id(block)]
            entry[0] = entry[0] + y.sum(dim=(0, 2, 3))
            entry[1] = entry[1] + (y * y).sum(dim=(0, 2, 3))
            entry[2] += y.shape[0] * y.shape[2] * y.shape[3]
        return record

    handles = [block.rbr_reparam.register_forward_hook(hook(block)) for block in blocks]
    for batch in [data] if isinstance(data, np.ndarray) else data:
        fused(torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)))
    for handle in handles:
        handle.remove()
    for block in blocks:
        total, squares, count = sums[id(block)]
        if not count:
            raise ValueError("insert_bn needs at least one batch of data")
        mean = total / count
        block.rbr_reparam = _conv_bn(block.rbr_reparam, mean, (squares / count - mean ** 2).clamp(min=0.0), eps)
    return fused.eval()


def _conv_bn(conv: nn.Conv2d, mean: torch.Tensor, var: torch.Tensor, eps: float) -> nn.Sequential:
    new = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride, padding=conv.padding,
                    dilation=conv.dilation, groups=conv.groups, padding_mode=conv.padding_mode, bias=False)
    new.weight.copy_(conv.weight)
    bn = nn.BatchNorm2d(conv.out_channels, eps=eps)
    bn.running_mean.copy_(mean.float())
    bn.running_var.copy_(var.float())
    bn.weight.copy_((var + eps).sqrt().float())
    bn.bias.copy_((mean + conv.bias.double()).float())
    return nn.Sequential(OrderedDict(conv=new, bn=bn)).eval()


class WholeModelQuant(nn.Module):
    """A RepVGG (with inserted BNs) between a ``QuantStub`` and a ``DeQuantStub`` (upstream ``RepVGGWholeQuant``).

    Args:
        model: a RepVGG from :func:`insert_bn` (``stage0`` ... ``stage4``, ``gap``, ``linear``).
        quantlayers: one of :data:`QUANTLAYERS` (see the module docstring).

    Raises:
        ValueError: an unknown ``quantlayers``, or a model without RepVGG's stages.
    """

    def __init__(self, model: nn.Module, quantlayers: str = "exclud_first_and_linear") -> None:
        super().__init__()
        if quantlayers not in QUANTLAYERS:
            raise ValueError(f"quantlayers must be one of {QUANTLAYERS}, got {quantlayers!r}")
        missing = [name for name in ("stage0", "stage1", "stage2", "stage3", "stage4", "gap", "linear")
                   if not hasattr(model, name)]
        if missing:
            raise ValueError(f"WholeModelQuant wraps a RepVGG; {type(model).__name__} lacks {missing}")
        self.quantlayers = quantlayers
        self.quant, self.dequant = tq.QuantStub(), tq.DeQuantStub()
        self.stage0, self.stage1, self.stage2 = model.stage0, model.stage1, model.stage2
        self.stage3, self.stage4, self.gap, self.linear = model.stage3, model.stage4, model.gap, model.linear

    def float_parts(self) -> list[nn.Module]:
        """The modules ``quantlayers`` leaves in float32.

        Returns:
            The float modules (``qconfig = None`` in :meth:`prepare_quant`).
        """
        return {"all": [], "exclud_first_and_linear": [self.stage0, self.linear],
                "exclud_first_and_last": [self.stage0, self.stage4, self.linear]}[self.quantlayers]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, classes]`` of images ``[B, 3, H, W]``; fake-quantized between the stubs once prepared.

        Args:
            x: Images, ``[B, 3, H, W]``.

        Returns:
            Logits, ``[B, num_classes]``.
        """
        everything = self.quantlayers == "all"
        out = self.stage0(self.quant(x)) if everything else self.quant(self.stage0(x))
        for stage in (self.stage1, self.stage2, self.stage3):
            for block in stage:
                out = block(out)
        if self.quantlayers == "exclud_first_and_last":
            out = self.dequant(out)
        for block in self.stage4:
            out = block(out)
        if self.quantlayers == "exclud_first_and_linear":
            out = self.dequant(out)
        out = self.linear(self.gap(out).flatten(1))
        return self.dequant(out) if everything else out

    def fuse_model(self) -> None:
        """Move each block's ReLU into ``rbr_reparam`` (after the BN) and fuse conv-BN-ReLU for QAT."""
        for block in _blocks(self):
            if isinstance(block.rbr_reparam, nn.Sequential) and isinstance(block.se, nn.Identity):
                block.rbr_reparam.add_module("relu", nn.ReLU())
                block.nonlinearity = nn.Identity()
                tq.fuse_modules_qat(block.rbr_reparam, ["conv", "bn", "relu"], inplace=True)

    def prepare_quant(self) -> None:
        """Fuse, set the fbgemm QAT qconfig (float parts: none) and ``prepare_qat`` in place."""
        self.train()
        self.fuse_model()
        self.qconfig = tq.get_default_qat_qconfig("fbgemm")
        for part in self.float_parts():
            part.qconfig = None
        tq.prepare_qat(self, inplace=True)

    def freeze_quant_bn(self) -> None:
        """Freeze the fused BNs' statistics and every observer (scales and zero points stop moving)."""
        self.apply(intrinsic_qat.freeze_bn_stats)
        self.apply(tq.disable_observer)


def quantization_aware_training(model: nn.Module, batches: Callable[[], Iterator[tuple[np.ndarray, np.ndarray]]],
                                steps: int = 200, freeze_steps: int = 50, lr: float = 1e-3, momentum: float = 0.9,
                                weight_decay: float = 4e-5, calibration_batches: int = 4,
                                quantlayers: str = "exclud_first_and_linear") -> WholeModelQuant:
    """Solution C on a RepVGG: insert BNs, wrap, prepare, train, freeze late; returns the QAT model in eval mode.

    Args:
        model: the trained float RepVGG (not modified).
        batches: called once per pass, yields ``(x [N, C, H, W] float32, y [N] int64)``.
        steps: optimizer steps.
        freeze_steps: the last steps run with BN statistics and observers frozen.
        lr: SGD learning rate (upstream README: 1e-3).
        momentum: SGD momentum.
        weight_decay: upstream README: 4e-5.
        calibration_batches: training batches that initialise the inserted BNs.
        quantlayers: see :class:`WholeModelQuant`.

    Returns:
        The fake-quantized model (not converted).
    """
    stream = _forever(batches)
    calibration = [next(stream)[0] for _ in range(calibration_batches)]
    wrapped = WholeModelQuant(insert_bn(copy.deepcopy(model), calibration), quantlayers)
    wrapped.prepare_quant()
    optimizer = torch.optim.SGD(wrapped.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    wrapped.train()
    for step in range(steps):
        if step == steps - freeze_steps:
            wrapped.freeze_quant_bn()
        x, y = next(stream)
        loss = F.cross_entropy(wrapped(torch.from_numpy(x)), torch.from_numpy(y).long())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return wrapped.eval()


def _forever(batches: Callable[[], Iterator]) -> Iterator:
    while True:
        empty = True
        for item in batches():
            empty = False
            yield item
        if empty:
            raise ValueError("the QAT training data yielded no batches")
