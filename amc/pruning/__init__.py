"""The pruning engine: from a network to a physically smaller, reconstructed one.

``tracing`` finds the channel groups, ``structure`` turns them into decision points with exact
MACs/params (``cost``), ``slicing`` ranks and cuts channels, ``reconstruction`` refits consumers by
least squares, ``fusion`` folds BN, and ``apply`` is the one call from a channel list to a smaller model.
"""
