"""Data-parallel training is exact, not merely close: two gloo ranks with half the batch each take the steps one
process takes on the whole batch, when both see the samples in the same order and the network has no BatchNorm
(per-rank batch statistics are the one thing DDP does not average; SyncBatchNorm needs CUDA)."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn as nn
from torch.utils.data import DistributedSampler, TensorDataset

from amc.data import DataSplits, make_loader
from amc.settings import TrainConfig
from amc.training.distributed import Dist
from amc.training.loop import Trainer

SAMPLES, BATCH, EPOCHS, SEED = 256, 32, 2, 7  # 256 = 8 whole batches: no rank pads its share


def schedule(batch_size: int) -> TrainConfig:
    return TrainConfig(
        epochs=EPOCHS, batch_size=batch_size, eval_batch_size=50, optimizer="sgd", lr=0.1, momentum=0.9, nesterov=True,
        weight_decay=1e-3, warmup_epochs=0.5, label_smoothing=0.1, num_workers=0, max_steps_per_epoch=None,
        channels_last=False, grad_clip_norm=None,
    )  # fmt: skip


def splits() -> DataSplits:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(SAMPLES + 100, 1, 8, 8, generator=g)
    y = (x[:, 0, :4].mean((1, 2)) > x[:, 0, 4:].mean((1, 2))).long() + 2 * (x[:, 0, :, :4].mean((1, 2)) > 0).long()
    train, held_out = TensorDataset(x[:SAMPLES], y[:SAMPLES]), TensorDataset(x[SAMPLES:], y[SAMPLES:])
    return DataSplits(train, held_out, held_out, num_classes=4, in_channels=1, image_size=8)


def network() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, stride=2, padding=1), nn.ReLU(),
        nn.Flatten(), nn.Linear(8 * 4 * 4, 4),
    )  # fmt: skip


def train_rank(rank: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        model = network()
        summary = Trainer(model, splits(), schedule(BATCH // 2), Dist(rank, 2), seed=SEED).fit()
        if rank == 0:
            torch.save({"state": model.state_dict(), "rows": summary["last"]}, out)
    finally:
        dist.destroy_process_group()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_ranks_take_the_steps_one_process_takes_on_the_whole_batch(tmp_path: Path):
    out = tmp_path / "two_ranks.pt"
    mp.spawn(train_rank, args=(free_port(), str(out)), nprocs=2, join=True)
    two = torch.load(out, weights_only=True)

    model = network()
    one = Trainer(model, splits(), schedule(BATCH), Dist(), seed=SEED)
    # the one process draws the global order the ranks split (rank r takes every 2nd index from r)
    one.sampler = DistributedSampler(one.data.train, num_replicas=1, rank=0, shuffle=True, seed=SEED)
    one.loader = make_loader(one.data.train, BATCH, shuffle=True, seed=SEED, sampler=one.sampler)
    last = one.fit()["last"]

    trained = model.state_dict()
    assert not torch.equal(trained["0.weight"], network().state_dict()["0.weight"])  # it did train
    for name, weight in trained.items():
        torch.testing.assert_close(two["state"][name], weight, rtol=1e-4, atol=1e-5, msg=name)
    assert two["rows"]["train_loss"] == pytest.approx(last["train_loss"], rel=1e-4)  # summed over ranks, not rank 0's
    # counted over every sample of both ranks; weights equal to float rounding may still flip one near-tie
    for key, samples in (("train_top1", SAMPLES), ("search_val_top1", 100), ("test_top1", 100)):
        assert two["rows"][key] == pytest.approx(last[key], abs=100 / samples + 1e-9), key
