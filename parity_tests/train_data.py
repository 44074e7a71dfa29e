"""Small image folders and label lists written from the shipped digits, for the training tests."""

from pathlib import Path

import numpy as np

from paddle_rep.apps.data import load_digits


def digit_images(classes: int = 4, per_class: int = 12, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``per_class`` 8x8 uint8 digit images of each of the first ``classes`` digits, and their labels."""
    data = load_digits(seed=seed)
    images = np.concatenate([data.x_train, data.x_test])[:, 0]
    labels = np.concatenate([data.y_train, data.y_test])
    picked = np.concatenate([np.flatnonzero(labels == c)[:per_class] for c in range(classes)])
    grey = images[picked]
    grey = (255 * (grey - grey.min()) / (grey.max() - grey.min())).astype(np.uint8)
    return grey, labels[picked]


def _save_png(array: np.ndarray, path: Path, size: int) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array, mode="L").resize((size, size), Image.NEAREST).save(path)


def write_image_folder(root: Path, classes: int = 4, per_class: int = 12, val_per_class: int = 3,
                       size: int = 8) -> Path:
    """``root/train/<digit>/*.png`` and ``root/val/<digit>/*.png``."""
    images, labels = digit_images(classes, per_class + val_per_class)
    seen: dict[int, int] = {}
    for image, label in zip(images, labels, strict=True):
        number = seen[int(label)] = seen.get(int(label), -1) + 1
        split = "train" if number < per_class else "val"
        _save_png(image, root / split / f"digit{label}" / f"{number:03d}.png", size)
    return root


def write_label_lists(root: Path, classes: int = 4, per_class: int = 12, val_per_class: int = 3,
                      size: int = 8) -> Path:
    """PaddleClas layout: ``root/images/*.png`` and ``train_list.txt`` / ``val_list.txt``."""
    images, labels = digit_images(classes, per_class + val_per_class)
    lines: dict[str, list[str]] = {"train": [], "val": []}
    seen: dict[int, int] = {}
    for i, (image, label) in enumerate(zip(images, labels, strict=True)):
        number = seen[int(label)] = seen.get(int(label), -1) + 1
        split = "train" if number < per_class else "val"
        _save_png(image, root / "images" / f"{i:04d}.png", size)
        lines[split].append(f"images/{i:04d}.png {label}")
    for split, entries in lines.items():
        (root / f"{split}_list.txt").write_text("\n".join(entries) + "\n")
    return root
