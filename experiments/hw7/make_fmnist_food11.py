"""Write Fashion-MNIST as 3-channel PNGs in the Food-11 layout: the real stand-in for Food-11 here.

training/<label>_<n>.png (from the official train split), validation/<label>_<n>.png and
testing/<nnnn>.png (unlabelled) from the official test split. Labels 0..9 (Fashion-MNIST's 10 classes).
Usage: python experiments/hw7/make_fmnist_food11.py OUT [--train 10000 --val 2000 --test 1000]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image

from amc.data import load_fashion_mnist


def write(images, labels, folder: Path, labelled: bool) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    counts: dict[int, int] = {}
    for i, (img, label) in enumerate(zip(images, labels, strict=True)):
        rgb = Image.fromarray(img.numpy()).convert("RGB")
        if labelled:
            n = counts.get(int(label), 0)
            counts[int(label)] = n + 1
            rgb.save(folder / f"{int(label)}_{n}.png")
        else:
            rgb.save(folder / f"{i:04d}.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out", type=Path)
    parser.add_argument("--train", type=int, default=10_000)
    parser.add_argument("--val", type=int, default=2_000)
    parser.add_argument("--test", type=int, default=1_000)
    args = parser.parse_args()
    if args.out.exists() and any(args.out.iterdir()):
        raise SystemExit(f"error: {args.out} exists and is not empty")
    x_train, y_train, x_test, y_test = load_fashion_mnist(None)
    write(x_train[: args.train], y_train[: args.train], args.out / "training", True)
    write(x_test[: args.val], y_test[: args.val], args.out / "validation", True)
    end = args.val + args.test
    write(x_test[args.val : end], y_test[args.val : end], args.out / "testing", False)
    print(f"wrote {args.train} / {args.val} / {args.test} images under {args.out}")


if __name__ == "__main__":
    main()
