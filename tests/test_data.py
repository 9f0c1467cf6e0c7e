"""The data layer: the fixed search-val split, Fashion-MNIST from the Debian package, Food-11 layout, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from amc.data import build_data, food11_label, search_val_split
from amc.errors import DataNotFoundError
from tests.conftest import FMNIST

needs_fmnist = pytest.mark.skipif(not FMNIST.is_dir(), reason="Debian's dataset-fashion-mnist is not installed")


def test_search_val_split_matches_the_benchmark_permutation():
    train, val = search_val_split(60_000, 5_000, seed=0)
    assert train[:5] == [36044, 10678, 57327, 55074, 21567]
    assert val[:5] == [30102, 43764, 35133, 50409, 21161]
    assert len(set(train) | set(val)) == 60_000 and not set(train) & set(val)


@needs_fmnist
def test_fashion_mnist_from_the_debian_package():
    data = build_data("fashion_mnist")
    assert (len(data.train), len(data.search_val), len(data.test)) == (55_000, 5_000, 10_000)
    assert (data.num_classes, data.in_channels, data.image_size) == (10, 1, 28)
    x, y = data.search_val[0]
    assert x.shape == (1, 28, 28) and 0 <= y < 10
    # search-val is not augmented: the same item twice is the same tensor
    assert torch.equal(data.search_val[3][0], data.search_val[3][0])
    mean = torch.stack([data.test[i][0] for i in range(2000)]).mean()
    assert abs(float(mean)) < 0.1  # normalised with the dataset's mean/std


def test_digits_is_small_and_split():
    data = build_data("digits", search_val_size=300)
    assert (len(data.train), len(data.search_val), len(data.test)) == (1200, 300, 297)
    assert data.train[0][0].shape == (1, 8, 8)


def test_food11_layout(food11_root):
    data = build_data("food11", root=str(food11_root), search_val_size=5, crop=64)
    assert data.num_classes == 11 and len(data.test) == 33
    labels = sorted(data.test.labels)
    assert labels == sorted(list(range(11)) * 3)
    x, _ = data.train[0]
    assert x.shape == (3, 64, 64)
    assert food11_label("/a/b/3_100.jpg") == 3 and food11_label("10_7.png") == 10


def test_food11_small_images_are_padded_to_the_crop(food11_root):
    data = build_data("food11", root=str(food11_root), search_val_size=5, crop=256)
    small = next(i for i, p in enumerate(data.test.paths) if p.name.endswith("_0.jpg"))
    assert data.test[small][0].shape == (3, 256, 256)  # CenterCrop pads what is smaller
    assert data.train[0][0].shape == (3, 256, 256)  # RandomCrop pads symmetrically


def test_missing_data_names_what_was_looked_for(tmp_path):
    with pytest.raises(DataNotFoundError, match="training"):
        build_data("food11", root=str(tmp_path / "nowhere"))
    with pytest.raises(DataNotFoundError, match="cifar10"):
        build_data("cifar10", root=str(tmp_path))


def test_digits_are_read_from_scikit_learns_file_as_load_digits_gives_them():
    """amc reads the digits from the file scikit-learn ships (importing scikit-learn costs seconds per process)."""
    from sklearn.datasets import load_digits

    from amc.data import digits_arrays

    images, labels = digits_arrays()
    reference = load_digits()
    assert images.shape == (1797, 8, 8) and labels.dtype.kind == "i"
    assert np.array_equal(images, reference.images) and np.array_equal(labels, reference.target)
