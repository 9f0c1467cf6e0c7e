"""Finding a pruning strategy: the budget (``budget``, ``latency``), scoring a strategy (``scoring``,
``prefix_cache``), the search methods behind one interface (``runners``, ``methods/``, ``agents``, with
``probe_reuse`` for a sensitivity run's probes), the search
loop with its resume state (``loop``, ``state``), the record of every evaluation (``recorder``), fidelity
promotion (``promotion``) and the export of the best (``best``). The Gymnasium env (``amc.envs``) sits below:
this package builds its scorer and action wall and drives it.
"""
