"""amc: automated network compression (AMC channel pruning, least squares, knowledge distillation)."""

from amc.runtime import quiet_cpp_extension_notice, skip_triton_without_gpu

skip_triton_without_gpu()  # before anything imports torchvision
quiet_cpp_extension_notice()
