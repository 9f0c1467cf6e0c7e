"""ML2020 HW7's compression steps beside channel pruning: BN-γ network slimming (``slimming``) and
8/16-bit weight quantization (``quantization``).
"""
