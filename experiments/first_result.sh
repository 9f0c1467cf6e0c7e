#!/usr/bin/env bash
# The first result a newcomer waits for: `python -m amc.search flops_budget=0.5` on the embedded default, from empty
# caches, timed alone (nothing else on the CPU), per seed; once on this CPU as it is, and once held to AVX2
# (ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2: torch and oneDNN run the kernels an AVX2-only CPU runs, and
# eval_precision=auto scores in float32 there). One line per run: seconds in all, setup, median seconds per episode,
# the test top-1 of the exported network and its MACs ratio. Extra arguments go to amc.search.
# Usage: experiments/first_result.sh OUT_DIR "SEEDS" [key=value ...]     e.g. experiments/first_result.sh /tmp/fr "2018 2019"
set -euo pipefail
out=$1; seeds=$2; shift 2
mkdir -p "$out"
lscpu | grep -m1 'Model name' > "$out/cpu.txt"
grep -o 'avx512_bf16\|avx2' /proc/cpuinfo | sort -u | tr '\n' ' ' >> "$out/cpu.txt"
for seed in $seeds; do
  for mode in native avx2; do
    env=(); [ "$mode" = avx2 ] && env=(ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2)
    run="$out/${mode}_$seed"
    start=$(date +%s.%N)
    env "${env[@]}" python -m amc.search flops_budget=0.5 seed="$seed" logger=none cache_dir="$run.cache" \
      hydra.run.dir="$run" "$@" > "$run.log" 2>&1
    wall=$(echo "$(date +%s.%N) - $start" | bc)
    python - "$run" "$wall" "$mode" "$seed" <<'PY'
import json, re, sys
run, wall, mode, seed = sys.argv[1], float(sys.argv[2]), sys.argv[3], sys.argv[4]
log = open(run + ".log", errors="replace").read().replace("\r", "\n")
setup = re.search(r"setup (\d+) s", log)
episode = re.search(r"median seconds per episode ([\d.]+)", log)
s = json.load(open(run + "/strategy.json"))
print(f"{mode:6} seed {seed}: {wall:6.0f} s in all, setup {setup.group(1) if setup else '?'} s, "
      f"{episode.group(1) if episode else '?'} s per episode; test top-1 {s['test_top1']:.2f} %, "
      f"MACs {s['macs_ratio']:.4f} of the base, scored in {s.get('scored_in')}")
PY
  done
done | tee "$out/summary.txt"
