#!/usr/bin/env bash
# Is the default search (`python -m amc.search flops_budget=0.5`) slower per episode than before the search-study
# wave? Runs it at REF (default 9022f99, the last commit before the wave) and at this checkout, one after the other,
# EPISODES episodes each (the export is skipped: stop_after), then prints the median seconds per episode of both.
# Both search the strong base amc ships today (the commit before the wave shipped none and would train one first).
# Run it on an otherwise idle machine: the timing is the result.
#
#   experiments/default_search_speed.sh            # REF=9022f99 EPISODES=70 OUT=runs/default_speed ORDER=before,now
#   ORDER=now,before experiments/default_search_speed.sh   # the other order, to see what running second costs
set -euo pipefail
cd "$(dirname "$0")/.."
REF=${REF:-9022f99}
EPISODES=${EPISODES:-70}
OUT=${OUT:-runs/default_speed}
ORDER=${ORDER:-before,now}
PYTHON=${PYTHON:-$(pwd)/.venv/bin/python}
here=$(pwd)
base=$here/models/weights/fmnist_mobilenet_v1.pt
old=$(mktemp -d)/amc-$REF
trap 'git -C "$here" worktree remove --force "$old" 2>/dev/null || true' EXIT
git worktree add --detach "$old" "$REF" >/dev/null
mkdir -p "$OUT"
lscpu | grep "Model name" | tee "$OUT/machine.txt"

search() {  # $1: source tree, $2: run dir. `python -m` imports amc from the current folder first.
    (cd "$1" && "$PYTHON" -m amc.search flops_budget=0.5 checkpoint="$base" episodes="$EPISODES" stop_after=$((EPISODES - 1)) \
        logger=none hydra.run.dir="$2") > "$2.log" 2>&1
}
rm -rf "$OUT/before" "$OUT/now"
for name in ${ORDER//,/ }; do
    if [ "$name" = before ]; then search "$old" "$here/$OUT/before"; else search "$here" "$here/$OUT/now"; fi
done

"$PYTHON" - "$OUT" <<'EOF'
import json, statistics, sys
from pathlib import Path

out = Path(sys.argv[1])
runs = {}
for name in ("before", "now"):
    rows = runs[name] = [json.loads(line) for line in (out / name / "episodes.jsonl").read_text().splitlines() if line]
    median = {key: statistics.median(r[key] for r in rows) for key in ("wall_s", "evaluate_s")}
    print(f"{name}: {len(rows)} episodes, median {median['wall_s']:.2f} s per episode "
          f"(evaluate {median['evaluate_s']:.2f} s), best search-val top-1 {max(r['accuracy'] for r in rows):.2f} %")
pairs = [(a, b) for a, b in zip(runs["before"], runs["now"]) if a["channels"] == b["channels"]]
ratios = sorted(b["wall_s"] / a["wall_s"] for a, b in pairs)
print(f"{len(pairs)} episodes scored the same strategy in both; now / before seconds per episode: median "
      f"{statistics.median(ratios):.3f} (10th-90th percentile {ratios[len(ratios) // 10]:.2f}-"
      f"{ratios[9 * len(ratios) // 10]:.2f})")
EOF
