"""Finding a pruning strategy: the budget (``budget``, ``latency``), scoring a strategy (``scoring``,
``prefix_cache``), the agents (``agents``), the search loop with its resume state (``loop``, ``state``)
and the record of every episode (``episode``, ``recorder``).
"""
