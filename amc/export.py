"""``python -m amc.export checkpoint=BASE channels=[...] | strategy=strategy.json``: a physically pruned checkpoint.

Prints and saves (``export_summary.json``) the cfg, MACs, params and search-val / test top-1 of
the base, the pruned network before reconstruction and after it.
"""

from __future__ import annotations

from amc.entry import job_entry_point
from amc.strategy.export import export_strategy

main = job_entry_point("export", export_strategy)

if __name__ == "__main__":
    main()
