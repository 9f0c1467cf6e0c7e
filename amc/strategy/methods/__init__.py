"""Search methods, one module each, all behind ``amc.strategy.runners.Runner``.

A method is one module with a runner class ``(env, agent, seed, workers)`` plus one ``conf/agent/NAME.yaml`` whose
``runner:`` names that class; ``agent=NAME`` then selects it.
"""
