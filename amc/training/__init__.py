"""Training: the one loop (``loop``) with its hooks (``hooks``), distillation losses (``distill``),
single- or multi-process devices (``distributed``), evaluation and the cached base model (``base_model``).
"""
