"""Reconstruction benchmark: uniform pruning to a MACs budget, without / with least squares (open, closed loop).

python experiments/reconstruction_benchmark.py CHECKPOINT [--model mobilenet_v1] [--budget 0.5] [--keep 0.689]
Prints search-val and test top-1 (Fashion-MNIST) for each variant, with calibration size and time.
"""

from __future__ import annotations

import argparse
import time

import torch
from omegaconf import OmegaConf

from amc.data import build_data, stack_dataset
from amc.networks import load_model_for_data
from amc.pruning.apply import keep_indices
from amc.pruning.reconstruction import OpenLoopReconstructor, closed_loop_overrides
from amc.pruning.slicing import slice_model
from amc.pruning.structure import analyse
from amc.settings import DataConfig, ModelConfig
from amc.strategy.budget import ActionWall, make_constraint
from amc.training.evaluation import evaluate, tensor_batches


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("checkpoint")
    parser.add_argument("--model", default="mobilenet_v1")
    parser.add_argument("--budget", type=float, default=0.5)
    parser.add_argument("--calibration", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model_cfg = ModelConfig(**OmegaConf.to_container(OmegaConf.load(f"conf/model/{args.model}.yaml")))
    data_cfg = DataConfig(**OmegaConf.to_container(OmegaConf.load("conf/data/fashion_mnist.yaml")))
    base = load_model_for_data(args.checkpoint, model_cfg, data_cfg).eval()
    data = build_data("fashion_mnist", augment=False)
    structure = analyse(base, (1, 1, 28, 28))
    wall = ActionWall(structure, make_constraint("flops", args.budget, structure), 0.2, 8)
    channels = wall.uniform()
    keep = keep_indices(base, structure, channels)
    calib = stack_dataset(data.train, limit=args.calibration)[0]
    splits = {s: stack_dataset(data.split(s)) for s in ("search-val", "test")}
    ratio = structure.macs(channels) / structure.macs(structure.widths)
    print(f"{args.model}: uniform channels {channels}, MACs {structure.macs(channels):,} = {ratio:.4f} of base")
    variants = {"base": lambda: base, "no reconstruction": lambda: slice_model(base, structure, keep)}
    variants["open loop"] = lambda: slice_model(
        base, structure, keep, OpenLoopReconstructor(base, structure, calib, 10).overrides(keep)
    )
    variants["closed loop"] = lambda: slice_model(
        base, structure, keep, closed_loop_overrides(base, structure, keep, calib, 10)
    )
    for name, build in variants.items():
        t0 = time.perf_counter()
        net = build().eval()
        seconds = time.perf_counter() - t0
        accs = {s: evaluate(net, tensor_batches(x, y, 500))["top1"] for s, (x, y) in splits.items()}
        print(f"| {name} | {accs['search-val']:.2f} | {accs['test']:.2f} | {seconds:.1f} s |")


if __name__ == "__main__":
    main()
