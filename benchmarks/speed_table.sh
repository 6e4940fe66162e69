#!/usr/bin/env bash
# The exact commands behind docs/benchmarks.md (CPU, 2 threads). Each run builds its models
# once, warms them up and times them in interleaved rounds; results, tables and plots go to
# docs/benchmarks/. Run on an otherwise idle machine: check `uptime` first (the load average
# is recorded in every JSON). Runtimes are for the 2-core machine of docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-docs/benchmarks}
THREADS=${THREADS:-2}
mkdir -p "$OUT"

# 0. the machine's dense matmul rate, the reference for "achieved FLOP/s" (~1 min)
python benchmarks/matmul_rate.py --threads "$THREADS" --json "$OUT/matmul.json"

# 0b. the attention kernels alone: fused SDPA vs the (chunked) plain product, fp32 and bf16,
#     the measurement behind xvit.models.attention.attention's choice (~20 s)
python benchmarks/attention_kernels.py --threads "$THREADS" --json "$OUT/attention_kernels.json"

# 1. Table 1: all our models and the transformers peers (at 8x224 and at their standard
#    clips), batch 1, fp32 and bf16, peak memory per model in its own process (~10 min idle)
xvit benchmark --peers --frames 8 --batch 1 --dtype fp32,bf16 --repeats 3 \
  --threads "$THREADS" --name table1_b1_quiet --out "$OUT"
python benchmarks/speed_targets.py "$OUT/table1_b1_quiet.json"  # adds the targets it measures

# 2. the larger batch: the same models at 8x224, batch 4, fp32 and bf16 (~12 min idle)
xvit benchmark --models xvit,xvit_st,vit,tsm_vit,timesformer,joint_vit,vivit_fe,hf_timesformer@8,hf_vivit@8,hf_videomae@8 \
  --frames 8 --batch 4 --dtype fp32,bf16 --repeats 2 --threads "$THREADS" --name table1_b4 --out "$OUT"

# 3. the targets, side by side in one run: X-ViT at 8 and 16 frames, the spatial ViT and
#    transformers' TimeSformer, fp32 and bf16, batch 1 (~5 min idle)
xvit benchmark --models xvit@8+16,vit@8,hf_timesformer@8+16 --batch 1 --dtype fp32,bf16 \
  --repeats 5 --threads "$THREADS" --no-memory --name targets --out "$OUT"
python benchmarks/speed_targets.py "$OUT/targets.json"  # goals: benchmarks/speed_targets.yaml

# 4. scaling with the number of frames: X-ViT, divided and joint attention at T = 8..64,
#    time and peak memory (also gives the time(T=32)/time(T=8) target; ~15 min idle)
python benchmarks/frame_scaling.py --models xvit,timesformer,joint_vit --frames 8,16,32,64 \
  --threads "$THREADS" --repeats 2 --warmup 0 --out "$OUT"

# 5. torch.compile (inductor) against eager, compile time reported separately (~6 min idle)
xvit benchmark --models xvit@8,vit@8,hf_timesformer@8 --batch 1 --dtype fp32,bf16 --compile \
  --repeats 3 --threads "$THREADS" --no-memory --name compile --out "$OUT"
python benchmarks/speed_targets.py "$OUT/compile.json"
