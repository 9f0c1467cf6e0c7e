"""amc: automated network compression (AMC channel pruning, least squares, knowledge distillation)."""

from amc.runtime import skip_triton_without_gpu

skip_triton_without_gpu()  # before anything imports torchvision
