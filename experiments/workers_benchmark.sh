#!/usr/bin/env bash
# Parallel strategy scoring (issue 14): FMNIST-MBV1, seed 2018, shared settings, with workers=1 and twice
# with workers=2 (the same best strategy is expected from the two workers=2 runs). Each run alone on the
# machine; episodes per minute are printed in each log's summary. Results in $OUT (default runs/workers).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-runs/workers}
mkdir -p "$out"
common=(experiment=fmnist_benchmark checkpoint=../shared/benchmarks/fmnist_mbv1_base.pth logger=none threads=2
        eval_batch_size=250 agent=ddpg seed=2018 ${EXTRA:-})
for spec in "w1 workers=1" "w2a workers=2" "w2b workers=2"; do
  read -r name args <<<"$spec"
  [ -f "$out/$name/pruned.pt" ] && continue
  /usr/bin/time -v python -m amc.search "${common[@]}" $args "hydra.run.dir=$out/$name" > "$out/$name.log" 2>&1
  grep -E "best:|episodes per minute|wall time|Maximum resident" "$out/$name.log"
done
python - "$out" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
a, b = (json.loads((out / n / "strategy.json").read_text()) for n in ("w2a", "w2b"))
print("workers=2 twice: same best strategy" if a["channels"] == b["channels"] else "workers=2 twice: DIFFERENT")
PY
