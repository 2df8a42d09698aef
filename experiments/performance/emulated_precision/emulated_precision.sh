#!/usr/bin/env bash
# Is TF32 (or bf16) faithful? Answered on a CPU by emulation (experiments/performance/emulated_precision/emulate_precision.py), in two
# sizes, each the same 8 QF seeds trained at fp32 and with rounded products, then `sgjax compare`d:
#
#   small  6 layers at d_model 128 (8 heads, d_ff 512), 4,000 steps: long enough to see validation
#          saturate and generalization dip and climb again; fp32, TF32 (truncated), bf16, and the one-bit
#          `null` nudge (a control: what chaos alone does to the comparison); ~20 min an arm
#   wide   the paper's model (6 layers, d_model 512, d_ff 2048), 500 steps: the paper's widths, the
#          start of training only; fp32, TF32 truncated and TF32 to nearest (tf32_rn); ~20 min an arm
#
#   bash experiments/performance/emulated_precision/emulated_precision.sh [small|wide ...]     (default: small wide)
#
# Both use the full 100k-line training set and a shortened schedule (warmup 200 steps, lr 5e-4 small
# and 3e-4 wide), so that a CPU sees training move; validation 500 lines and generalization 1,000
# (evaluated every 200 / 100 steps). Runs go to $RUNS (default runs/emulated_precision), the
# comparisons and each run's metrics.jsonl and config.json to $RESULTS
# (default experiments/performance/emulated_precision/results).
set -euo pipefail
cd "$(dirname "$0")/../../.."
PY=${PYTHON:-python}
RUNS=${RUNS:-runs/emulated_precision}
RESULTS=${RESULTS:-experiments/performance/emulated_precision/results}
export SGJAX_NO_COMPILE_CACHE=1
COMMON="--task question --preset smoke --depth 6 --num-seeds 8 --set model.n_heads=8 --set data.train_size=100000
  --set data.val_size=500 --set data.gen_size=1000 --set train.warmup_steps=200 --set train.decay_steps=20000
  --set train.chunk_steps=100 --set train.log_every=100"
SMALL="$COMMON --steps 4000 --set model.d_model=128 --set model.d_ff=512 --set train.lr=5e-4 --set train.eval_every=200 --set train.ckpt_every=4000"
WIDE="$COMMON --steps 500 --set model.d_model=512 --set model.d_ff=2048 --set train.lr=3e-4 --set train.eval_every=100 --set train.ckpt_every=500"

experiment() {  # experiment NAME "ARGS" MODE...: train each mode (fp32 first), compare each with fp32
  local name=$1 args=$2 mode
  shift 2
  for mode in fp32 "$@"; do  # the same command resumes a run cut short, and leaves a finished one as it is
    $PY experiments/performance/emulated_precision/emulate_precision.py "$mode" train $args --out "$RUNS/${name}_$mode"
  done
  for mode in fp32 "$@"; do
    mkdir -p "$RESULTS/runs/${name}_$mode"
    cp "$RUNS/${name}_$mode"/{metrics.jsonl,config.json,emulated_precision.txt} "$RESULTS/runs/${name}_$mode/"
  done
  for mode in "$@"; do
    $PY -m sgjax.cli compare "$RUNS/${name}_fp32" "$RUNS/${name}_$mode" --out "$RESULTS/${name}_$mode"
  done
}

[[ $# -gt 0 ]] || set -- small wide
for what in "$@"; do
  case $what in
    small) experiment small "$SMALL" tf32 bf16 null ;;
    wide) experiment wide "$WIDE" tf32 tf32_rn ;;
    *) echo "unknown experiment $what (small|wide)" >&2; exit 2 ;;
  esac
done
