"""The cost model, where users look for it: ``from amc.cost import profile`` (it lives in ``amc.pruning.cost``)."""

from amc.pruning.cost import CostReport, LayerCost, count_params, layer_macs, profile

__all__ = ["CostReport", "LayerCost", "count_params", "layer_macs", "profile"]
