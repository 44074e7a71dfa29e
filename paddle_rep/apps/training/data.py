"""Training data: image folders, PaddleClas label lists or the shipped digits, behind one loader.

Layouts under ROOT (checked in this order):

- ImageNet style: ``train/<class>/*.jpg`` and ``val/<class>/*.jpg``; classes are the sorted folder
  names of ``train/`` (``val/`` must use the same names).
- PaddleClas style: ``train_list.txt`` and ``val_list.txt``, one ``relative/path label`` per line,
  paths relative to ROOT, integer labels from 0.

Augmentation is keyed, not stateful: sample ``i`` of epoch ``e`` draws its random-resized crop and
flip from ``numpy.random.default_rng([seed, e, i])``. So the batches are the same with any number
of worker processes, on any rank layout, and after a resume. :class:`ShardedBatchSampler` gives each
rank its contiguous part of every global batch (the order depends on ``(seed, epoch)`` only) and can
start in the middle of an epoch.
"""

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import numpy as np
import paddle

from paddle_rep.core.errors import DataError, MissingPackageError

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
LIST_FILES = {"train": "train_list.txt", "val": "val_list.txt"}


def import_pil() -> ModuleType:
    """Import PIL's Image module.

    Returns:
        ``PIL.Image``.

    Raises:
        MissingPackageError: Pillow is not installed (the message names the ``train`` extra).
    """
    try:
        from PIL import Image
    except ImportError as err:
        raise MissingPackageError("reading image folders needs Pillow: pip install 'paddle-rep[train]'",
                                  package="pillow", extra="train") from err
    return Image


@dataclass(frozen=True)
class Samples:
    """One split: image paths, their integer labels and the class names (index = label)."""

    paths: tuple[str, ...]
    labels: np.ndarray  # int64
    classes: tuple[str, ...]


def scan_image_folder(split_dir: Path, classes: tuple[str, ...] | None = None) -> Samples:
    """Collect the images of ``split_dir/<class>/``.

    Args:
        split_dir: The split's folder (``train/`` or ``val/``).
        classes: The class names to label with (``train/``'s, for ``val/``); None takes the folders' sorted names.

    Returns:
        The split, in class then file-name order.

    Raises:
        DataError: No class folder, an empty class folder, or a class ``classes`` lacks (the folder is named).
    """
    found = tuple(sorted(p.name for p in split_dir.iterdir() if p.is_dir()))
    if not found:
        raise DataError(f"{split_dir}: no class folders (expected {split_dir}/<class>/<image>)", path=str(split_dir))
    if classes is not None:
        unknown = sorted(set(found) - set(classes))
        if unknown:
            raise DataError(f"{split_dir}: class folders not in train/: {unknown[:10]}", path=str(split_dir))
    classes = classes or found
    paths, labels = [], []
    for name in found:
        files = sorted(p for p in (split_dir / name).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if not files:
            raise DataError(f"{split_dir / name}: empty class folder (no {'/'.join(IMAGE_SUFFIXES)} files)",
                            path=str(split_dir / name))
        paths += [str(f) for f in files]
        labels += [classes.index(name)] * len(files)
    return Samples(tuple(paths), np.asarray(labels, dtype=np.int64), classes)


def read_label_list(root: Path, list_file: Path) -> Samples:
    """Read a PaddleClas label list (``relative/path label`` per line; blank lines are skipped).

    Args:
        root: The folder the paths are relative to.
        list_file: The list.

    Returns:
        The split; the classes are ``"0"`` to the largest label.

    Raises:
        DataError: A line that does not parse, a negative label or a missing image (with the line
            number), or a list without samples.
    """
    paths, labels = [], []
    for number, line in enumerate(list_file.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.strip().rsplit(maxsplit=1)
        if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
            raise DataError(f"{list_file}:{number}: expected 'relative/path label', got {line.strip()!r}",
                            path=str(list_file), line=number)
        label = int(parts[1])
        if label < 0:
            raise DataError(f"{list_file}:{number}: negative label {label}", path=str(list_file), line=number)
        image = root / parts[0]
        if not image.is_file():
            raise DataError(f"{list_file}:{number}: no such image {image}", path=str(list_file), line=number)
        paths.append(str(image))
        labels.append(label)
    if not paths:
        raise DataError(f"{list_file}: no samples", path=str(list_file))
    classes = tuple(str(i) for i in range(max(labels) + 1))
    return Samples(tuple(paths), np.asarray(labels, dtype=np.int64), classes)


def find_splits(root: str | Path) -> tuple[Samples, Samples]:
    """Find the train and val splits under ``root`` (see the module docstring for the layouts).

    Args:
        root: The data folder.

    Returns:
        ``(train, val)``.

    Raises:
        DataError: No such folder, neither layout, or a bad folder or list in it.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: no such data folder", path=str(root))
    if (root / "train").is_dir() and (root / "val").is_dir():
        train = scan_image_folder(root / "train")
        return train, scan_image_folder(root / "val", train.classes)
    lists = [root / name for name in LIST_FILES.values()]
    if all(p.is_file() for p in lists):
        return read_label_list(root, lists[0]), read_label_list(root, lists[1])
    raise DataError(f"{root}: expected train/ and val/ class folders, or {' and '.join(LIST_FILES.values())}",
                    path=str(root))


def check_labels(samples: Samples, num_classes: int) -> None:
    """Check that every label lies in ``[0, num_classes)``.

    Args:
        samples: The split.
        num_classes: The model's classes.

    Raises:
        DataError: Some labels lie outside; the first offenders are listed.
    """
    bad = np.flatnonzero((samples.labels < 0) | (samples.labels >= num_classes))
    if len(bad):
        shown = ", ".join(f"{samples.paths[i]} ({samples.labels[i]})" for i in bad[:5])
        raise DataError(f"{len(bad)} label(s) outside [0, {num_classes}) (--num-classes): {shown}")


@dataclass(frozen=True)
class Transform:
    """RandomResizedCrop + horizontal flip (training) or resize + centre crop (evaluation), then normalise."""

    train: bool
    size: int
    resize: int
    min_area: float = 0.08

    def _crop_box(self, width: int, height: int, rng: np.random.Generator) -> tuple[int, int, int, int]:
        # torchvision RandomResizedCrop.get_params: 10 tries of area / log-uniform aspect ratio, else centre.
        area = width * height
        log_ratio = (np.log(3 / 4), np.log(4 / 3))
        for _ in range(10):
            target = area * rng.uniform(self.min_area, 1.0)
            ratio = float(np.exp(rng.uniform(*log_ratio)))
            w, h = round(np.sqrt(target * ratio)), round(np.sqrt(target / ratio))
            if 0 < w <= width and 0 < h <= height:
                top, left = int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1))
                return left, top, left + w, top + h
        ratio = width / height
        if ratio < 3 / 4:
            w, h = width, round(width / (3 / 4))
        elif ratio > 4 / 3:
            h, w = height, round(height * (4 / 3))
        else:
            w, h = width, height
        left, top = (width - w) // 2, (height - h) // 2
        return left, top, left + w, top + h

    def __call__(self, image, rng: np.random.Generator) -> np.ndarray:
        image_module = import_pil()
        bilinear = image_module.BILINEAR
        if self.train:
            image = image.resize((self.size, self.size), bilinear, box=self._crop_box(*image.size, rng))
            if rng.random() < 0.5:
                image = image.transpose(image_module.FLIP_LEFT_RIGHT)
        else:
            width, height = image.size
            scale = self.resize / min(width, height)
            image = image.resize((max(1, round(width * scale)), max(1, round(height * scale))), bilinear)
            width, height = image.size
            left, top = (width - self.size) // 2, (height - self.size) // 2
            image = image.crop((left, top, left + self.size, top + self.size))
        array = np.asarray(image, dtype=np.float32) / 255.0
        array = (array - np.asarray(IMAGENET_MEAN, np.float32)) / np.asarray(IMAGENET_STD, np.float32)
        return array.transpose(2, 0, 1).copy()


class ImageDataset(paddle.io.Dataset):
    """Images from disk; a key is ``(index, epoch)``. Returns ``(image, label, index, ok)``.

    An image that does not decode gives ``ok=False`` and zeros; the training loop raises a
    :class:`DataError` naming the file, or skips it (``--skip-bad-images``). Worker processes
    never raise, so the error keeps its type and its file name.

    Args:
        samples: The split.
        transform: The augmentation (training) or evaluation transform.
        seed: The run's seed; with the epoch and the index it keys each sample's random draws.
    """

    def __init__(self, samples: Samples, transform: Transform, seed: int) -> None:
        super().__init__()
        self.samples, self.transform, self.seed = samples, transform, seed

    def __len__(self) -> int:
        return len(self.samples.paths)

    def __getitem__(self, key: tuple[int, int]):
        index, epoch = key
        label = self.samples.labels[index]
        image_module = import_pil()
        try:
            with image_module.open(self.samples.paths[index]) as image:
                image = image.convert("RGB")  # decodes the whole file: truncated data raises here
            array = self.transform(image, np.random.default_rng([self.seed, epoch, index]))
            ok = True
        except (OSError, SyntaxError, ValueError, image_module.DecompressionBombError):
            array = np.zeros((3, self.transform.size, self.transform.size), np.float32)
            ok = False
        return array, np.int64(label), np.int64(index), np.bool_(ok)


class ArrayDataset(paddle.io.Dataset):
    """In-memory arrays (the digits); same keys and items as :class:`ImageDataset`.

    Args:
        x: Images, ``[N, C, H, W]``.
        y: Labels, ``[N]``.
    """

    def __init__(self, x: np.ndarray, y: np.ndarray) -> None:
        super().__init__()
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, key: tuple[int, int]):
        index, _ = key
        return self.x[index], np.int64(self.y[index]), np.int64(index), np.bool_(True)


class ShardedBatchSampler(paddle.io.BatchSampler):
    """Global batches in a ``(seed, epoch)`` order, each split into one contiguous shard per rank.

    Rank ``r`` of ``W`` gets items ``[r * B / W, (r + 1) * B / W)`` of each global batch of size
    ``B``, so ``W`` ranks together see exactly what one process with batch ``B`` sees. Training
    drops the last incomplete global batch; evaluation (``shuffle=False``) keeps it and splits it as
    evenly as it can. :meth:`set_position` chooses the epoch and the first batch (for resuming).

    Args:
        size: Samples in the split.
        global_batch: Samples per global batch (all ranks together).
        rank: This process's rank.
        world_size: The number of ranks.
        seed: The run's seed (with the epoch it fixes the order).
        shuffle: Shuffle and drop the last incomplete batch (training); False keeps the order and every sample.

    Raises:
        ValueError: A shuffled global batch that does not split into ``world_size`` equal shards.
        DataError: Fewer training samples than one global batch.
    """

    def __init__(self, size: int, global_batch: int, rank: int = 0, world_size: int = 1, seed: int = 0,
                 shuffle: bool = True) -> None:
        if shuffle and global_batch % world_size:
            raise ValueError(f"global batch {global_batch} does not split into {world_size} equal shards")
        if shuffle and size < global_batch:
            raise DataError(f"{size} training samples make no batch of {global_batch}; lower --batch-size")
        self.size, self.global_batch, self.rank, self.world_size = size, global_batch, rank, world_size
        self.seed, self.shuffle = seed, shuffle
        self.epoch, self.start = 0, 0

    def set_position(self, epoch: int, start: int = 0) -> None:
        """Choose the epoch (and so the order) and the first global batch to yield.

        Args:
            epoch: The epoch.
            start: The index of the first global batch (for resuming within an epoch).
        """
        self.epoch, self.start = epoch, start

    def __len__(self) -> int:
        full = self.size // self.global_batch
        return (full if self.shuffle else -(-self.size // self.global_batch)) - self.start

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        if self.shuffle:
            order = np.random.default_rng([self.seed, self.epoch]).permutation(self.size)
        else:
            order = np.arange(self.size)
        for number in range(self.start, self.start + len(self)):
            batch = order[number * self.global_batch:(number + 1) * self.global_batch]
            part = np.array_split(batch, self.world_size)[self.rank]
            yield [(int(i), self.epoch) for i in part]


def collate(items: list) -> tuple[np.ndarray, ...]:
    """Stack ``(image, label, index, ok)`` items into four arrays.

    Args:
        items: The dataset's items of one batch.

    Returns:
        ``(images, labels, indices, oks)``.
    """
    images, labels, indices, oks = zip(*items, strict=True)
    return np.stack(images), np.asarray(labels), np.asarray(indices), np.asarray(oks)


def make_loader(dataset: paddle.io.Dataset, sampler: ShardedBatchSampler, workers: int) -> paddle.io.DataLoader:
    """Build a DataLoader over ``sampler``'s batches.

    Args:
        dataset: :class:`ImageDataset` or :class:`ArrayDataset`.
        sampler: The batches' keys.
        workers: Worker processes (0: load in this process).

    Returns:
        The loader; it yields :func:`collate`'s four arrays.
    """
    return paddle.io.DataLoader(dataset, batch_sampler=sampler, num_workers=workers, collate_fn=collate,
                                return_list=True, use_shared_memory=workers > 0)
