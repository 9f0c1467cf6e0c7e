"""The cost model, where users look for it: ``from amc.cost import profile`` (it lives in ``amc.pruning.counting``)."""

from amc.pruning.counting import CostReport, LayerCost, count_params, layer_macs, profile

__all__ = ["CostReport", "LayerCost", "count_params", "layer_macs", "profile"]
