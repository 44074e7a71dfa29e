"""Training recipes: the official hyper-parameters as presets, and their learning-rate and temperature curves.

Every value is a field of :class:`Recipe`; a preset is a named Recipe (:data:`RECIPES`) and any field
can be overridden (``paddle-rep train --override key=value``, or the dedicated flags). The curves are
pure functions of the global step, so a resumed run needs no scheduler state: the step is enough.

Sources (see ``docs/train-your-data.md`` for the table):

- ``repvgg``: DingXiaoH/RepVGG README training command and ``train/config.py``, ``train/optimizer.py``,
  ``train/lr_scheduler.py`` (timm ``CosineLRScheduler`` stepped per iteration after each step).
- ``repvgg_paper``: the paper's / README's original recipe (120 epochs, cosine 0.1 -> 0, no warm-up).
- ``repvgg_custom_l2``: ``repvgg`` with ``get_custom_L2`` in the loss instead of weight decay on the branches.
- ``repvggplus``: the README's RepVGGplus-L2pse command (aux heads weighted 0.1 in ``main.py``).
- ``odconv_resnet`` / ``odconv_mobilenetv2``: OSVAI/ODConv README commands and ``main.py``
  (``adjust_learning_rate`` once per epoch; temperature 30 -> 1 over 10 epochs).
- ``acnet_imagenet`` / ``acnet_cifar``: DingXiaoH/ACNet ``acnet/do_acnet.py`` (torch ``CosineAnnealingLR``
  stepped per iteration, no warm-up, weight decay on every parameter).
- ``digits``: this project's quick demo on the shipped digits (constant learning rate).
"""

import dataclasses
import math
from dataclasses import dataclass, field

from paddle_rep.core.schedules import get_temperature

SCHEDULES = ("timm_cosine", "epoch_cosine", "epoch_step", "iter_cosine", "constant")
LR_SCALINGS = ("linear", "none")


@dataclass(frozen=True)
class Recipe:
    """One training recipe. Learning rates are for ``reference_batch`` and scale with ``lr_scaling``."""

    name: str
    epochs: int
    batch_size: int  # global (all ranks together)
    lr: float  # at reference_batch
    schedule: str  # one of SCHEDULES
    reference_batch: int = 256
    lr_scaling: str = "linear"  # "linear": lr * global_batch / reference_batch (RepVGG main.py); "none"
    warmup_epochs: float = 0.0
    warmup_lr: float = 0.0  # scaled like lr
    min_lr: float = 0.0  # scaled like lr
    milestones: tuple[int, ...] = ()  # epoch_step: epochs where the lr is multiplied by gamma
    gamma: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 1e-4
    decay_1d: bool = True  # False: no decay on 1-D params and biases except ``*identity.weight`` (RepVGG)
    custom_l2: bool = False  # RepVGG get_custom_L2 in the loss (weight_decay * 0.5 * L2), no decay on branch convs
    label_smoothing: float = 0.0
    aux_weight: float = 0.1  # RepVGGplus auxiliary heads
    temp_epochs: int = 10  # ODConv: temperature temp_init -> 1 over this many epochs
    temp_init: float = 30.0
    image_size: int = 224  # training crop
    eval_size: int = 224  # evaluation crop
    eval_resize: int = 256  # shorter side before the evaluation centre crop
    min_crop_area: float = 0.08  # RandomResizedCrop scale lower bound
    source: str = field(default="", compare=False)

    def scaled(self, value: float, global_batch: int) -> float:
        """Scale ``value`` (a learning rate of this recipe) to ``global_batch``.

        Args:
            value: A learning rate for ``reference_batch``.
            global_batch: The run's global batch size.

        Returns:
            ``value`` unchanged with ``lr_scaling="none"``, else ``value * global_batch / reference_batch``.
        """
        if self.lr_scaling == "none":
            return value
        return value * global_batch / self.reference_batch


def _repvgg(**changes) -> Recipe:
    base = Recipe(name="repvgg", epochs=300, batch_size=256, lr=0.1, schedule="timm_cosine", warmup_epochs=5,
                  nesterov=True, weight_decay=1e-4, decay_1d=False, label_smoothing=0.1,
                  source="DingXiaoH/RepVGG README (train from scratch), train/config.py, optimizer.py, "
                         "lr_scheduler.py")
    return dataclasses.replace(base, **changes)


RECIPES: dict[str, Recipe] = {
    "repvgg": _repvgg(),
    "repvgg_paper": _repvgg(name="repvgg_paper", epochs=120, warmup_epochs=0, label_smoothing=0.0,
                            source="RepVGG paper / README: 120 epochs, cosine 0.1 -> 0, batch 256, wd 1e-4"),
    "repvgg_custom_l2": _repvgg(name="repvgg_custom_l2", custom_l2=True,
                                source="DingXiaoH/RepVGG repvgg.py get_custom_L2 with the README recipe"),
    "repvggplus": _repvgg(name="repvggplus", weight_decay=4e-5, image_size=256, eval_size=320, eval_resize=320,
                          source="DingXiaoH/RepVGG README, RepVGGplus-L2pse command; aux loss weight 0.1 (main.py)"),
    "odconv_resnet": Recipe(name="odconv_resnet", epochs=100, batch_size=256, lr=0.1, schedule="epoch_step",
                            milestones=(30, 60, 90), weight_decay=1e-4,
                            source="OSVAI/ODConv README (ResNet) and main.py adjust_learning_rate, get_temperature"),
    "odconv_mobilenetv2": Recipe(name="odconv_mobilenetv2", epochs=150, batch_size=256, lr=0.05,
                                 schedule="epoch_cosine", weight_decay=4e-5,
                                 source="OSVAI/ODConv README (MobileNetV2) and main.py"),
    "acnet_imagenet": Recipe(name="acnet_imagenet", epochs=100, batch_size=256, lr=0.1, schedule="iter_cosine",
                             weight_decay=1e-4, source="DingXiaoH/ACNet acnet/do_acnet.py (sres18/34/50)"),
    "acnet_cifar": Recipe(name="acnet_cifar", epochs=400, batch_size=128, lr=0.1, schedule="iter_cosine",
                          reference_batch=128, weight_decay=1e-4, image_size=32, eval_size=32, eval_resize=32,
                          source="DingXiaoH/ACNet acnet/do_acnet.py (vc; src56 uses lr 0.2, wrnc16plain wd 5e-4)"),
    "digits": Recipe(name="digits", epochs=3, batch_size=64, lr=0.05, schedule="constant", lr_scaling="none",
                     weight_decay=1e-4, temp_epochs=1, image_size=8, eval_size=8, eval_resize=8,
                     source="paddle-rep's digits demo"),
}


def default_recipe(arch: str, has_data: bool) -> str:
    """Pick the preset used when ``--recipe`` is not given: the family's, or ``digits`` without ``--data``.

    Args:
        arch: The registry name of the model.
        has_data: Whether ``--data`` was given.

    Returns:
        The preset's name.
    """
    if not has_data:
        return "digits"
    if arch.startswith("repvggplus"):
        return "repvggplus"
    if arch.startswith("repvgg"):
        return "repvgg"
    if arch.startswith("od_mobilenetv2"):
        return "odconv_mobilenetv2"
    if arch.startswith("od_"):
        return "odconv_resnet"
    if arch in ("acnet_resnet18", "acnet_resnet34", "acnet_resnet50", "acnet_mobilenetv1"):
        return "acnet_imagenet"
    if arch.startswith("acnet_"):
        return "acnet_cifar"
    return "repvgg_paper"


def resolve(name: str, overrides: dict | None = None) -> Recipe:
    """Take the preset ``name`` with ``overrides`` (field -> value) applied.

    Args:
        name: A preset's name.
        overrides: Field values to change; ints are accepted for float fields, a single value for tuple fields.

    Returns:
        The recipe.

    Raises:
        ValueError: An unknown preset or field, a value of the wrong type, or an invalid schedule,
            LR scaling, epoch count or batch size.
    """
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; choose one of {sorted(RECIPES)}")
    recipe = RECIPES[name]
    fields = {f.name: f for f in dataclasses.fields(Recipe)}
    changes = {}
    for key, value in (overrides or {}).items():
        if key not in fields or key in ("name", "source"):
            raise ValueError(f"unknown recipe field {key!r}; fields: {sorted(set(fields) - {'name', 'source'})}")
        current = getattr(recipe, key)
        if isinstance(current, tuple):
            value = tuple(value) if isinstance(value, list | tuple) else (value,)
        elif isinstance(current, bool):
            value = bool(value)
        elif isinstance(current, float) and isinstance(value, int | float):
            value = float(value)
        elif type(current) is not type(value):
            raise ValueError(f"recipe field {key!r} needs a {type(current).__name__}, got {value!r}")
        changes[key] = value
    recipe = dataclasses.replace(recipe, **changes)
    if recipe.schedule not in SCHEDULES:
        raise ValueError(f"recipe schedule must be one of {SCHEDULES}, got {recipe.schedule!r}")
    if recipe.lr_scaling not in LR_SCALINGS:
        raise ValueError(f"recipe lr_scaling must be one of {LR_SCALINGS}, got {recipe.lr_scaling!r}")
    if recipe.epochs < 1 or recipe.batch_size < 1:
        raise ValueError(f"epochs and batch_size must be >= 1, got {recipe.epochs}, {recipe.batch_size}")
    return recipe


def _timm_cosine(t: int, base: float, total: int, warmup: int, warmup_lr: float, min_lr: float) -> float:
    # timm CosineLRScheduler(t_initial=total, warmup_t=warmup, cycle_limit=1, t_in_epochs=False), warmup_prefix
    # off: the cosine runs on the raw t, so it resumes below base at t = warmup.
    if t < warmup:
        return warmup_lr + t * (base - warmup_lr) / warmup
    if t >= total:
        return min_lr
    return min_lr + 0.5 * (base - min_lr) * (1 + math.cos(math.pi * t / total))


def learning_rate(recipe: Recipe, step: int, iters_per_epoch: int, global_batch: int) -> float:
    """Compute the learning rate of the optimizer step ``step`` (0-based, global) under ``recipe``.

    Args:
        recipe: The recipe (its ``schedule`` picks the curve).
        step: The optimizer step.
        iters_per_epoch: Optimizer steps per epoch.
        global_batch: The run's global batch size (the rates scale with it, see :meth:`Recipe.scaled`).

    Returns:
        The learning rate.
    """
    base = recipe.scaled(recipe.lr, global_batch)
    epoch = step // iters_per_epoch
    total = recipe.epochs * iters_per_epoch
    if recipe.schedule == "constant":
        return base
    if recipe.schedule == "timm_cosine":
        # RepVGG main.py calls lr_scheduler.step_update(epoch * num_steps + idx) after each step, so step
        # g >= 1 runs with the value at g - 1 (and step 0 with the value at 0).
        warmup = int(recipe.warmup_epochs * iters_per_epoch)
        return _timm_cosine(max(step - 1, 0), base, total, warmup, recipe.scaled(recipe.warmup_lr, global_batch),
                            recipe.scaled(recipe.min_lr, global_batch))
    if recipe.schedule == "epoch_cosine":  # ODConv adjust_learning_rate(optimizer, epoch, 0, ...) once per epoch
        return base * (1 + math.cos(math.pi * epoch / recipe.epochs)) / 2
    if recipe.schedule == "epoch_step":
        return base * recipe.gamma ** sum(1 for m in recipe.milestones if m <= epoch)
    # iter_cosine: torch CosineAnnealingLR(T_max=epochs * iters, eta_min) stepped after every iteration
    min_lr = recipe.scaled(recipe.min_lr, global_batch)
    return min_lr + (base - min_lr) * (1 + math.cos(math.pi * min(step, total) / total)) / 2


def temperature(recipe: Recipe, step: int, iters_per_epoch: int) -> float:
    """ODConv's attention temperature for optimizer step ``step``.

    ODConv ``main.py`` sets ``get_temperature(batch_idx + 1, epoch, ...)`` before each batch of the
    first ``temp_epoch`` epochs and leaves it (exactly 1.0 by then) afterwards.

    Args:
        recipe: The recipe (``temp_epochs``, ``temp_init``).
        step: The optimizer step.
        iters_per_epoch: Optimizer steps per epoch.

    Returns:
        The temperature.
    """
    epoch, index = divmod(step, iters_per_epoch)
    if epoch >= recipe.temp_epochs:
        return 1.0
    return get_temperature(index + 1, epoch, iters_per_epoch, temp_epoch=recipe.temp_epochs,
                           temp_init=recipe.temp_init)
