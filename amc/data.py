"""One data layer for every entry point.

Each dataset yields three splits: ``train`` and ``search-val`` (a fixed, seeded split of the
official training set: AMC scores strategies on search-val, never on test) and the official
``test`` split. Small grayscale sets are held in memory as uint8 tensors; folder datasets
(ImageNet-style, Food-11) stream from disk.
"""

from __future__ import annotations

import gzip
import importlib.util
import os
import re
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, Subset

from amc.errors import ConfigError, DataNotFoundError

FMNIST_SYSTEM_ROOT = "/usr/share/datasets/fashion-mnist"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


@dataclass
class DataSplits:
    train: Dataset
    search_val: Dataset
    test: Dataset
    num_classes: int
    in_channels: int
    image_size: int

    def split(self, name: str) -> Dataset:
        table = {"train": self.train, "search-val": self.search_val, "search_val": self.search_val, "test": self.test}
        if name not in table:
            raise ConfigError(f"unknown split {name!r}; use train, search-val or test")
        return table[name]


class TensorImages(Dataset):
    """In-memory uint8 images ``[N, C, H, W]`` with normalisation and optional crop/flip augmentation."""

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        mean: Sequence[float],
        std: Sequence[float],
        augment: bool = False,
        pad: int = 2,
        flip: bool = True,
    ) -> None:
        self.images, self.labels = images, labels.long()
        self.mean = torch.tensor(mean).view(-1, 1, 1)
        self.std = torch.tensor(std).view(-1, 1, 1)
        self.augment, self.pad, self.flip = augment, pad, flip

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        x = self.images[index].float().div_(255)
        if self.augment:
            h, w = x.shape[1:]
            if self.pad:
                x = F.pad(x, (self.pad,) * 4)
                i, j = torch.randint(0, 2 * self.pad + 1, (2,)).tolist()
                x = x[:, i : i + h, j : j + w]
            if self.flip and torch.rand(()) < 0.5:
                x = x.flip(2)
        return (x - self.mean) / self.std, int(self.labels[index])

    def without_augmentation(self) -> TensorImages:
        return TensorImages(self.images, self.labels, self.mean.flatten().tolist(), self.std.flatten().tolist())


class Resized(Dataset):
    """A dataset whose images are resized to ``size``×``size`` (bilinear) as they are read."""

    def __init__(self, dataset: Dataset, size: int) -> None:
        self.dataset, self.size = dataset, size

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        x, y = self.dataset[index]
        return F.interpolate(x[None], size=(self.size, self.size), mode="bilinear", align_corners=False)[0], y


# ---------------------------------------------------------------- Fashion-MNIST (IDX files)
def read_idx(path: Path) -> torch.Tensor:
    """Read an IDX file (optionally gzipped) into a uint8 tensor."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    zero, dtype, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype != 0x08:
        raise DataNotFoundError(f"{path} is not a uint8 IDX file")
    shape = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    return torch.from_numpy(np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape).copy())


def _find_idx(roots: Sequence[Path], stem: str) -> Path | None:
    for root in roots:
        for folder in (root, root / "FashionMNIST" / "raw", root / "raw"):
            for name in (stem, stem + ".gz"):
                if (folder / name).is_file():
                    return folder / name
    return None


def fashion_mnist_files(root: str | None, download: bool = False) -> list[Path]:
    """The four IDX files under ``root`` (Debian's copy when ``root`` is null), downloaded there if asked.

    A ``root`` that lacks them is an error, never a silent fall-back to another copy.
    """
    roots = [Path(root) if root else Path(FMNIST_SYSTEM_ROOT)]
    files = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
    found = [_find_idx(roots, f) for f in files]
    if None in found and download and root:
        from torchvision.datasets import FashionMNIST

        for train in (True, False):
            FashionMNIST(root, train=train, download=True)
        found = [_find_idx(roots, f) for f in files]
    if None in found:
        raise DataNotFoundError(
            f"Fashion-MNIST not found: looked for {files[0]}[.gz] and its 3 siblings in {roots[0]}; "
            "install it with `apt-get install dataset-fashion-mnist` (it goes to "
            f"{FMNIST_SYSTEM_ROOT}), or set data.root=DIR (data.download=true fetches it on an online machine)"
        )
    return found  # type: ignore[return-value]


def load_fashion_mnist(root: str | None, download: bool = False) -> tuple[torch.Tensor, ...]:
    """Return (train images, train labels, test images, test labels) as uint8 tensors."""
    return tuple(read_idx(p) for p in fashion_mnist_files(root, download))


def require_data(name: str, root: str | None, download: bool = False) -> None:
    """Fail now, before anything trains, when a dataset is not where the config says (looks, loads nothing)."""
    if name == "fashion_mnist":
        fashion_mnist_files(root, download)
    elif name in ("cifar10", "cifar100"):
        batches = "cifar-10-batches-py" if name == "cifar10" else "cifar-100-python"
        if not root:
            raise DataNotFoundError(f"{name} needs data.root=DIR (the folder holding {batches}/)")
        if not download and not (Path(root) / batches).is_dir():
            raise DataNotFoundError(f"{name} not found: no {Path(root) / batches}/ (data.root)")
    elif name in ("imagefolder", "food11"):
        splits = ("train", "val") if name == "imagefolder" else ("training", "validation")
        for split in splits:
            if not (Path(root or "") / split).is_dir():
                raise DataNotFoundError(f"{name} data needs {Path(root or '') / split}/ (data.root)")


# ---------------------------------------------------------------- folder datasets
def food11_label(path: str | os.PathLike) -> int:
    """Food-11 label = the file name's prefix before ``_`` (``3_100.jpg`` → 3)."""
    match = re.match(r"(\d+)_", Path(path).name)
    if match is None:
        raise DataNotFoundError(
            f"cannot read a Food-11 label from file name {Path(path).name!r} (want <label>_<n>.jpg)"
        )
    return int(match.group(1))


def list_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


class ImageFiles(Dataset):
    """Images listed explicitly, with labels (or -1 when unlabelled) and a PIL transform."""

    def __init__(self, paths: Sequence[Path], labels: Sequence[int], transform: Callable | None) -> None:
        self.paths, self.labels, self.transform = list(paths), list(labels), transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        from PIL import Image

        with Image.open(self.paths[index]) as img:
            x = img.convert("RGB")
        return (self.transform(x) if self.transform else x), self.labels[index]


def food11_split(root: Path, split: str, transform: Callable | None) -> ImageFiles:
    folder = root / split
    if not folder.is_dir():
        raise DataNotFoundError(
            f"Food-11 folder {folder} not found; data.root must hold training/, validation/ and testing/ "
            "with images named <label>_<n>.jpg (the course's food-11 archive)"
        )
    paths = list_images(folder)
    if not paths:
        raise DataNotFoundError(f"no images in {folder}")
    labels = [-1] * len(paths) if split == "testing" else [food11_label(p) for p in paths]
    return ImageFiles(paths, labels, transform)


def food11_transforms(crop: int, rotation: float = 15.0) -> tuple[Callable, Callable]:
    """The course's transforms: no normalisation, no resize; symmetric padding for small images."""
    import torchvision.transforms as T

    train = T.Compose(
        [
            T.RandomCrop(crop, pad_if_needed=True, padding_mode="symmetric"),
            T.RandomHorizontalFlip(),
            T.RandomRotation(rotation),
            T.ToTensor(),
        ]
    )
    test = T.Compose([T.CenterCrop(crop), T.ToTensor()])
    return train, test


# ---------------------------------------------------------------- the split and the builder
def search_val_split(n: int, search_val_size: int, seed: int = 0) -> tuple[list[int], list[int]]:
    """Fixed split of ``n`` training indices: the last ``search_val_size`` of a seeded permutation."""
    if not 0 < search_val_size < n:
        raise ConfigError(f"search_val_size must be in (0, {n}), got {search_val_size}")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    return perm[: n - search_val_size], perm[n - search_val_size :]


def _limit(dataset: Dataset, limit: int | None) -> Dataset:
    if limit is None or limit >= len(dataset):  # type: ignore[arg-type]
        return dataset
    return Subset(dataset, range(limit))


def build_data(
    name: str,
    root: str | None = None,
    search_val_size: int = 5000,
    split_seed: int = 0,
    augment: bool = True,
    download: bool = False,
    crop: int | None = None,
    train_limit: int | None = None,
    search_val_limit: int | None = None,
    test_limit: int | None = None,
    resize: int | None = None,
    **_: object,
) -> DataSplits:
    """Train / search-val / test of a dataset: fashion_mnist, digits, cifar10, cifar100, imagefolder or food11.

    :param resize: image side in pixels when a model needs another size than the dataset's own (e.g. a
        torchvision network that cannot take 8-px digits); bilinear, after augmentation.
    """
    builders = {
        "fashion_mnist": _fashion_mnist,
        "digits": _digits,
        "cifar10": _cifar,
        "cifar100": _cifar,
        "imagefolder": _imagefolder,
        "food11": _food11,
    }
    if name not in builders:
        raise ConfigError(f"unknown dataset {name!r}; known: {', '.join(builders)}")
    train_full, train_plain, test, info = builders[name](name, root, augment, download, crop)
    if resize and int(resize) != info["image_size"]:
        train_full, train_plain, test = (Resized(d, int(resize)) for d in (train_full, train_plain, test))
        info = {**info, "image_size": int(resize)}
    train_idx, val_idx = search_val_split(len(train_full), search_val_size, split_seed)
    return DataSplits(
        train=_limit(Subset(train_full, train_idx), train_limit),
        search_val=_limit(Subset(train_plain, val_idx), search_val_limit),
        test=_limit(test, test_limit),
        **info,
    )


def _fashion_mnist(name, root, augment, download, crop):
    x_train, y_train, x_test, y_test = load_fashion_mnist(root, download)
    stats = ([0.2860], [0.3530])
    train = TensorImages(x_train.unsqueeze(1), y_train, *stats, augment=augment)
    return train, train.without_augmentation(), TensorImages(x_test.unsqueeze(1), y_test, *stats), _info(10, 1, 28)


def digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 8x8 digits, (images 0..16 as float, labels): read from the file scikit-learn ships, without
    importing scikit-learn (which imports SciPy: seconds in every process of a smoke run); ``load_digits`` where
    the file is not found."""
    spec = importlib.util.find_spec("sklearn")
    folders = spec.submodule_search_locations if spec is not None else None
    path = Path(next(iter(folders)), "datasets", "data", "digits.csv.gz") if folders else None
    if path is None or not path.is_file():
        from sklearn.datasets import load_digits

        digits = load_digits()
        return digits.images, digits.target
    table = np.loadtxt(path, delimiter=",")
    return table[:, :-1].reshape(-1, 8, 8), table[:, -1].astype(np.int64)


def _digits(name, root, augment, download, crop):
    pixels, target = digits_arrays()
    images = torch.from_numpy((pixels * (255 / 16)).round().astype(np.uint8)).unsqueeze(1)
    labels = torch.from_numpy(target)
    perm = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))
    test_idx, train_idx = perm[:297], perm[297:]  # a fixed test split: sklearn's digits has none
    stats = ([0.3], [0.38])
    train = TensorImages(images[train_idx], labels[train_idx], *stats, augment=augment, pad=1, flip=False)
    test = TensorImages(images[test_idx], labels[test_idx], *stats)
    return train, train.without_augmentation(), test, _info(10, 1, 8)


def _cifar(name, root, augment, download, crop):
    import torchvision.datasets as D
    import torchvision.transforms as T

    cls = D.CIFAR10 if name == "cifar10" else D.CIFAR100
    norm = T.Normalize((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))
    plain = T.Compose([T.ToTensor(), norm])
    aug = T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToTensor(), norm]) if augment else plain
    if not root:
        raise DataNotFoundError(f"{name} needs data.root=DIR (the folder holding its python batches)")
    try:
        return (
            cls(root, train=True, transform=aug, download=download),
            cls(root, train=True, transform=plain, download=False),
            cls(root, train=False, transform=plain, download=download),
            _info(10 if name == "cifar10" else 100, 3, 32),
        )
    except RuntimeError:
        raise DataNotFoundError(
            f"{name} not found under {root} (looked for torchvision's {cls.base_folder}/ batches); "
            "copy it there or pass data.download=true on an online machine"
        ) from None


def _imagefolder(name, root, augment, download, crop):
    import torchvision.datasets as D
    import torchvision.transforms as T

    root_path = Path(root or "")
    for split in ("train", "val"):
        if not (root_path / split).is_dir():
            raise DataNotFoundError(f"ImageFolder data needs {root_path / split}/<class>/<image> folders (data.root)")
    crop = crop or 224
    norm = T.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    plain = T.Compose([T.Resize(int(crop * 256 / 224)), T.CenterCrop(crop), T.ToTensor(), norm])
    aug = T.Compose([T.RandomResizedCrop(crop), T.RandomHorizontalFlip(), T.ToTensor(), norm]) if augment else plain
    train = D.ImageFolder(root_path / "train", aug)
    return (
        train,
        D.ImageFolder(root_path / "train", plain),
        D.ImageFolder(root_path / "val", plain),
        _info(len(train.classes), 3, crop),
    )


def _food11(name, root, augment, download, crop):
    root_path = Path(root or "")
    crop = crop or 256
    train_tf, test_tf = food11_transforms(crop)
    train = food11_split(root_path, "training", train_tf if augment else test_tf)
    plain = food11_split(root_path, "training", test_tf)
    test = food11_split(root_path, "validation", test_tf)
    return train, plain, test, _info(11, 3, crop)


def _info(num_classes: int, in_channels: int, image_size: int) -> dict[str, int]:
    return {"num_classes": num_classes, "in_channels": in_channels, "image_size": image_size}


DATASET_INFO = {
    "fashion_mnist": _info(10, 1, 28),
    "digits": _info(10, 1, 8),
    "cifar10": _info(10, 3, 32),
    "cifar100": _info(100, 3, 32),
    "imagefolder": _info(1000, 3, 224),
    "food11": _info(11, 3, 256),
}


def dataset_info(name: str, crop: int | None = None) -> dict[str, int]:
    """Classes, channels and image size of a dataset without loading it (ImageFolder: ImageNet's 1000)."""
    if name not in DATASET_INFO:
        raise ConfigError(f"unknown dataset {name!r}; known: {', '.join(DATASET_INFO)}")
    info = dict(DATASET_INFO[name])
    if crop:
        info["image_size"] = int(crop)
    return info


def make_loader(dataset: Dataset, batch_size: int, shuffle: bool, num_workers: int = 0, seed: int = 0, sampler=None):
    """A DataLoader whose shuffling is reproducible from ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle and sampler is None,
        sampler=sampler,
        num_workers=num_workers,
        generator=generator,
        persistent_workers=num_workers > 0,
        drop_last=False,
    )


def stack_dataset(
    dataset: Dataset, limit: int | None = None, batch_size: int = 1000
) -> tuple[torch.Tensor, torch.Tensor]:
    """Materialise a (deterministic) dataset as ``(inputs, labels)`` tensors — for repeated evaluation."""
    if limit is not None:
        dataset = _limit(dataset, limit)
    xs, ys = [], []
    for x, y in DataLoader(dataset, batch_size=batch_size, shuffle=False):
        xs.append(x)
        ys.append(torch.as_tensor(y))
    return torch.cat(xs), torch.cat(ys)


def calibration_images(
    data_kwargs: dict, count: int, augment: bool = False, seed: int = 0, splits: DataSplits | None = None
) -> torch.Tensor:
    """The first ``count`` train-split images, never search-val or test: what least squares is fitted on.

    :param splits: the caller's already built (non-augmented) splits, reused unless ``augment``.
    :param augment: draw them through the training augmentation (seeded by ``seed``).
    """
    if augment or splits is None:
        splits = build_data(**{**data_kwargs, "augment": augment})
    torch.manual_seed(seed)
    return stack_dataset(splits.train, limit=count)[0]
