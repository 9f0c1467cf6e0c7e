"""Channel ranking that accounts for reconstruction: greedy backward elimination on the least-squares problem.

AMC ranks channels by the L1 norm of their weights and refits the consumer afterwards. Here the ranking
is chosen *for* the refit (ThiNet's idea, solved exactly on the calibration statistics): starting from
every channel, repeatedly drop the one whose removal raises the consumers' least-squares residual
``‖X_S·W_Sᵀ − Y‖²`` least, with the weights refit each time. The order of removal is the ranking, so
keeping the top c is a prefix, as for L1, and the search pays nothing per episode.

With ``M = (XᵀX)⁻¹`` and ``β = M·XᵀY`` (the refit weights), dropping the columns J of one channel raises
the residual by ``tr(β_Jᵀ (M_JJ)⁻¹ β_J)``; the inverse and the weights are then downdated in place, so
the whole ranking costs about one n³ pass per consumer (n = its input columns) and no new solve.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from amc.pruning import linear_solve
from amc.pruning.reconstruction import RIDGE, ConsumerStats, input_columns, well_posed
from amc.pruning.structure import PrunableStructure


class _Elimination:
    """One consumer's least-squares problem, shrinking as channels are dropped."""

    def __init__(self, stats: ConsumerStats, columns: dict[int, list[int]]) -> None:
        gram = stats.gram
        ridge = RIDGE * gram.diagonal().mean().clamp_min(1e-12)  # the refit's own ridge (reconstruction.solve)
        self.inverse = linear_solve.inverse(gram + ridge * torch.eye(len(gram), dtype=gram.dtype))
        self.weights = self.inverse @ stats.cross  # β: the refit of every column, [n, O]
        self.channels = torch.tensor(sorted(columns))  # the point's channels this consumer reads
        self.columns = torch.tensor([columns[c] for c in self.channels.tolist()])  # [k, a], rows of `inverse`
        self.alive = torch.ones(len(self.channels), dtype=torch.bool)
        self.row_of = {c: i for i, c in enumerate(self.channels.tolist())}
        self.dropped: list[torch.Tensor] = []  # columns dropped since the last compaction

    def costs(self, total: int) -> torch.Tensor:
        """Residual increase for dropping each of the point's ``total`` channels (0 where not read here)."""
        out = torch.zeros(total, dtype=torch.float64)
        cols = self.columns[self.alive]
        if cols.shape[1] == 1:  # the common 1×1 / Linear case needs no block solve
            j = cols[:, 0]
            cost = self.weights[j].square().sum(1) / self.inverse.diagonal()[j]
        else:
            blocks = self.inverse[cols.unsqueeze(2), cols.unsqueeze(1)]  # [k, a, a]
            beta = self.weights[cols]  # [k, a, O]
            cost = (beta * linear_solve.solve(blocks, beta, "ranking")).sum(dim=(1, 2))
        out[self.channels[self.alive]] = cost
        return out

    def drop(self, channel: int) -> None:
        row = self.row_of.get(channel)
        if row is None:
            return
        self.alive[row] = False
        cols = self.columns[row]
        gain = linear_solve.solve(self.inverse[cols][:, cols], self.inverse[cols], "ranking").T  # M_{:,J}·(M_JJ)⁻¹
        self.weights -= gain @ self.weights[cols]
        self.inverse -= gain @ self.inverse[cols]
        self.dropped.append(cols)
        if 2 * len(self.dropped) * len(cols) > len(self.inverse):
            self._compact()

    def _compact(self) -> None:
        """Drop the rows and columns of dropped channels (all zero now) so later steps work on less."""
        keep = torch.ones(len(self.inverse), dtype=torch.bool)
        keep[torch.cat(self.dropped)] = False
        self.dropped = []
        new_index = torch.cumsum(keep, 0) - 1
        self.inverse = self.inverse[keep][:, keep].contiguous()
        self.weights = self.weights[keep].contiguous()
        self.columns = torch.where(self.alive.unsqueeze(1), new_index[self.columns], 0)
        # dropped channels' columns are never read again; their rows point at 0 harmlessly


def channel_columns(positions: Sequence[int], roots: Sequence[int], area: int) -> dict[int, list[int]]:
    """Input columns of each channel of a decision point in one consumer (a channel may own several positions)."""
    out: dict[int, list[int]] = {}
    for pos, root in zip(positions, roots, strict=True):
        out.setdefault(int(root), []).extend(input_columns(torch.tensor([int(pos)]), area).tolist())
    return out


def elimination_scores(channels: int, consumers: list[tuple[ConsumerStats, dict[int, list[int]]]]) -> torch.Tensor:
    """Importance of each channel (higher = keep): the step at which greedy elimination drops it.

    :param consumers: each consumer's statistics and the input columns of each channel it reads (the same
        number of columns for every channel).
    """
    problems = [_Elimination(s, cols) for s, cols in consumers]
    alive = torch.ones(channels, dtype=torch.bool)
    scores = torch.zeros(channels)
    for step in range(channels):
        costs = sum((p.costs(channels) for p in problems), torch.zeros(channels, dtype=torch.float64))
        costs[~alive] = float("inf")
        victim = int(torch.argmin(costs))  # the first minimum: dead channels go in index order
        alive[victim] = False
        scores[victim] = step
        for p in problems:
            p.drop(victim)
    return scores


def lsq_channel_scores(structure: PrunableStructure, stats: dict[str, ConsumerStats]) -> list[torch.Tensor | None]:
    """Greedy least-squares importance of every decision point's channels (``None``: no well-posed refit
    consumer reads it; on an underdetermined problem any subset "explains" the targets, so the elimination
    would pick channels by noise)."""
    out: list[torch.Tensor | None] = []
    for point in structure.points:
        consumers = []
        for use in point.tensors:
            name = use.key.rsplit(".", 1)[0]
            if use.dim == 1 and use.key.endswith(".weight") and name in point.consumers and well_posed(stats.get(name)):
                columns = channel_columns(use.positions, use.roots, stats[name].kernel_area)
                if len({len(c) for c in columns.values()}) == 1:  # uneven positions per channel: rare, left out
                    consumers.append((stats[name], columns))
        out.append(elimination_scores(point.channels, consumers) if consumers else None)
    return out
