#!/usr/bin/env bash
# Every default, flags only, over several seeds: the main job (README's first command, the
# average head), the same with the temporal-attention head, and both heads on a second
# temporal task the recipe was not tuned on (the moving squares, a `path label` list run
# through the from-scratch recipe). Two lanes side by side (one core each); every seed's
# validation top-1 goes to OUT/results.tsv. Usage:
#   bash benchmarks/seed_variance.sh OUT [SEEDS] [LANES]   (default seeds 0 1 2 3 4; lanes builtin,squares)
set -euo pipefail
out=${1:?usage: seed_variance.sh OUT [SEEDS] [LANES]}
seeds=${2:-0 1 2 3 4}
lanes=${3:-builtin,squares}
avg_seeds=${AVG_SEEDS:-$seeds}  # the main job's seeds (AVG_SEEDS="3 4" adds to a table already run)
mkdir -p "$out"
top1() { python -c "import json,sys; print(json.load(open(sys.argv[1]))['top1'])" "$1/metrics.json"; }
run() {  # name seed args...
  local name=$1 seed=$2; shift 2
  local dir="$out/$name-s$seed"
  if [ ! -f "$dir/metrics.json" ]; then
    xvit train --seed "$seed" --out "$dir" --fresh "$@" >"$dir.log" 2>&1 || { echo "$name seed $seed failed: $(tail -1 "$dir.log")"; return; }
  fi
  printf '%s\t%s\t%s\n' "$name" "$seed" "$(top1 "$dir")" >>"$out/results.tsv"
}
squares="$out/squares"
[ -f "$squares/train.txt" ] || python -c "from xvit.data.squares import write_squares_dataset as w; w('$squares', num_train=256, num_val=50)"
tiny=(--model xvit_tiny_patch16 --num-frames 8 --img-size 32 --batch-size 16
      model.overrides.embed_dim=96 model.overrides.depth=4 model.overrides.num_heads=3 model.overrides.patch_size=8)
builtin() { for s in $seeds; do run builtin-ta "$s" --head ta; done; for s in $avg_seeds; do run builtin-avg "$s"; done; }
sq() { for s in $seeds; do for h in ta avg; do
  run "squares-$h" "$s" --head "$h" --train-list "$squares/train.txt" --val-list "$squares/val.txt" --epochs 5 "${tiny[@]}"
done; done; }
pids=()
[[ $lanes == *builtin* ]] && { builtin & pids+=($!); }
[[ $lanes == *squares* ]] && { sq & pids+=($!); }
wait "${pids[@]}"
python - "$out/results.tsv" <<'PY'
import collections, statistics, sys
rows = collections.defaultdict(dict)
for line in open(sys.argv[1]):
    name, seed, top1 = line.split("\t")
    rows[name][int(seed)] = float(top1)
for name, by_seed in sorted(rows.items()):
    v = [by_seed[s] for s in sorted(by_seed)]
    sd = statistics.stdev(v) if len(v) > 1 else 0.0
    print(f"{name:<14} seeds {sorted(by_seed)}: {' / '.join(f'{x:.1f}' for x in v)}  mean {statistics.mean(v):.1f} +- {sd:.1f}  worst {min(v):.1f}")
PY
