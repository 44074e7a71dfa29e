"""The handwritten digits that scikit-learn ships (no download), as numpy arrays for either framework.

1797 grey 8x8 images of the digits 0-9. Images are scaled to [0, 1] and standardised with
the training split's mean and std; the split is stratified and seeded, so every run,
process and framework sees the same data.
"""

import inspect
from collections.abc import Callable, Iterator
from dataclasses import astuple, dataclass

import numpy as np

DIGITS_CLASSES = 10


@dataclass(frozen=True)
class Split:
    """The digits, split into a training and a test part.

    Attributes:
        x_train: Training images, ``[N, 1, 8, 8]`` float32 (three channels after :func:`digits_for_model`
            for an ImageNet-style model).
        y_train: Training labels, ``[N]`` int64.
        x_test: Test images, shaped like ``x_train``.
        y_test: Test labels.
    """

    x_train: np.ndarray  # [N, 1, 8, 8] float32
    y_train: np.ndarray  # [N] int64
    x_test: np.ndarray
    y_test: np.ndarray


def load_digits(test_fraction: float = 0.2, seed: int = 0) -> Split:
    """Load the digits, split into train and test; needs scikit-learn (the ``demo`` extra).

    Args:
        test_fraction: Share of each digit's images that goes to the test split.
        seed: Seed of the split.

    Returns:
        The split, standardised with the training part's mean and std.

    Raises:
        ImportError: scikit-learn is not installed.
    """
    try:
        from sklearn.datasets import load_digits as sklearn_digits
    except ImportError as err:
        raise ImportError("the digits data set needs scikit-learn: pip install 'paddle-rep[demo]'") from err
    digits = sklearn_digits()
    images = (digits.images / 16.0).astype(np.float32)[:, None]
    labels = digits.target.astype(np.int64)
    rng = np.random.default_rng(seed)
    test = np.zeros(len(labels), dtype=bool)
    for label in range(DIGITS_CLASSES):  # stratified: the same share of every digit in the test split
        index = np.flatnonzero(labels == label)
        test[rng.choice(index, size=round(len(index) * test_fraction), replace=False)] = True
    mean, std = images[~test].mean(), images[~test].std()
    images = (images - mean) / std
    return Split(images[~test], labels[~test], images[test], labels[test])


def digits_for_model(builder: Callable, num_classes: int = DIGITS_CLASSES, seed: int = 0) -> tuple[Split, dict]:
    """The digits and the constructor arguments for a registry ``builder``.

    A builder that takes ``in_channels`` gets one channel; an ImageNet-style model gets the
    grey images as three equal channels.

    Args:
        builder: A model builder of the registry (``num_classes`` and optionally ``in_channels``).
        num_classes: Classes of the model's head.
        seed: Seed of the split.

    Returns:
        ``(data, kwargs)``: the split, with channels to suit the builder, and the builder's arguments.

    Raises:
        ImportError: scikit-learn is not installed.
    """
    data = load_digits(seed=seed)
    kwargs = {"num_classes": num_classes}
    if "in_channels" in inspect.signature(builder).parameters:
        kwargs["in_channels"] = data.x_train.shape[1]
    else:
        data = Split(*(np.repeat(a, 3, axis=1) if a.ndim == 4 else a for a in astuple(data)))
    return data, kwargs


def batches(x: np.ndarray, y: np.ndarray, batch_size: int, epoch: int, seed: int = 0,
            drop_last: bool = True) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield one epoch of shuffled batches; the order depends only on ``(seed, epoch)``.

    Args:
        x: Images.
        y: Labels, one per image.
        batch_size: Samples per batch.
        epoch: The epoch, which with ``seed`` fixes the order.
        seed: The run's seed.
        drop_last: Leave out the last, short batch.

    Yields:
        ``(images, labels)`` batches.
    """
    order = np.random.default_rng([seed, epoch]).permutation(len(y))
    stop = len(y) - len(y) % batch_size if drop_last else len(y)
    for start in range(0, stop, batch_size):
        index = order[start:start + batch_size]
        yield x[index], y[index]
