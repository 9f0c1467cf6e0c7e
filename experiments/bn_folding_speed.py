"""BN folding on torchvision's ResNet-18: the pairs side by side in an nn.Sequential (the old rule) against the
pairs found in the traced graph (amc.pruning.fusion.batchnorm_pairs), timed as the search evaluates a network.

    python experiments/bn_folding_speed.py [threads=2] [images=1000]

Prints the BNs folded and the seconds to evaluate the images (float32, channels_last, batch 125, 28-px 1-channel
input as on Fashion-MNIST), best of 5 rounds each, alternating the two networks.
"""

from __future__ import annotations

import copy
import sys
import time

import torch
import torch.nn as nn
from script_options import parse_options, positive_int

from amc.models import create_model
from amc.pruning.fusion import _sequential_pairs, batchnorm_pairs, fold_batchnorms


def main(argv: list[str]) -> None:
    options = parse_options(
        argv,
        {"threads": positive_int, "images": positive_int},
        {"threads": 2, "images": 1000},
        "python experiments/bn_folding_speed.py [threads=2] [images=1000]",
    )
    torch.set_num_threads(options["threads"])
    images = torch.randn(options["images"], 1, 28, 28).contiguous(memory_format=torch.channels_last)
    base = create_model("torchvision.models.resnet18", num_classes=10, in_channels=1).eval()
    nets = {}
    for rule, pairs in (("nn.Sequential neighbours", _sequential_pairs(base)), ("traced graph", batchnorm_pairs(base))):
        net = fold_batchnorms(copy.deepcopy(base), pairs).to(memory_format=torch.channels_last)
        left = sum(isinstance(m, nn.BatchNorm2d) for m in net.modules())
        nets[rule] = net
        print(f"{rule}: {len(pairs)} BNs folded, {left} left")
    best = dict.fromkeys(nets, float("inf"))
    with torch.inference_mode():
        for _ in range(5):
            for rule, net in nets.items():
                t0 = time.perf_counter()
                for batch in images.split(125):
                    net(batch)
                best[rule] = min(best[rule], time.perf_counter() - t0)
    for rule, seconds in best.items():
        print(f"{rule}: {seconds:.3f} s for {len(images)} images (best of 5, {torch.get_num_threads()} threads)")
    first, second = best.values()
    print(f"speed-up: {first / second:.2f}x")


if __name__ == "__main__":
    main(sys.argv[1:])
