#!/usr/bin/env bash
# Issue #7's GPU measurements, in phases that each fit one 10-minute call of a lent machine.
#
#   bash experiments/performance/gpu_session/gpu_session.sh PHASE [PHASE ...]
#
# A task lent a GPU now has 15 minutes of device time in all, the machine's start included: one
# call. Run `quick` first (below); it measures the headline numbers of every phase, most important
# first, and stops at its deadline. The other phases are the full measurements, for later leases.
#
# PHASE (each prints what it measured and packs its files):
#   quick   one call's worth, each measurement cut at QUICK_SECONDS (default 510) from the start, and
#           resumable: a measurement already in $RESULTS for this device kind is skipped (REDO=1
#           measures again), so the next lease goes on where the last stopped. Versions; QF 6 layers
#           S = 10 against the peer (fp32: the 40x / 3x targets); S = 10, 40, 160 at TF32 (% of peak);
#           one full evaluation at S = 10; is TF32 faithful (the precision phase at QUICK_FID_STEPS,
#           default 4,000); Dyck at 6 (every step at one width: one program), and at S = 1, 2, 5 (the
#           programs of train.member_groups), and in 2 groups by length (train.group_by); where the step's time goes (profile_step.py, TF32 and
#           fp32); XLA's GPU autotuning and Triton gemms against compile time (ab_step.py); the
#           scan as one CUDA graph (TF32); QF depths 2 and 10, TI at 6 (S = 10); S = 160 at fp32;
#           programs compiled in threads (parallel_compile.py); the sweep's projection, and Dyck's
#           hours for each grouping of its seeds (dyck_groups_projection.py)
#   check   versions, the device, and one short sgjax bench (about 1-2 min)
#   peer    QF 6 layers, S = 1 and 10, sgjax vs the torch peer (sequential, vmap; padded per batch
#           as the original), fp32 and TF32, with one full evaluation timed; and fp32 against the
#           peer on fixed-width rows: the 40x / 3x targets
#   scale   QF 6 layers, S = 10..160, sgjax only: the S that fills the device, % of peak; and
#           S = 10 with QF batches as rows and packed (data.layout), against the default unpadded
#   precision  is TF32 faithful? The paper's QF model at 6 layers, 8 seeds, on the shortened schedule
#           of experiments/performance/emulated_precision/emulated_precision.sh's "wide" arm (FID_ARGS: warmup 200, lr 3e-4, 500
#           validation and 1,000 generalization lines, evaluated every 500 steps; batches as rows, one
#           program an arm), trained fp32 then TF32 for up to FID_STEPS (default 10,000) and
#           FID_SECONDS each, then `sgjax compare` of their loss and accuracy curves, seed by seed; a
#           cut run resumes on the next call
#   depths  QF depths 2, 4, 8, 10 and TI / Dyck at depth 6, S = 10, with evaluation, and depth 10 with
#           the layers scanned (model.scan_layers); then the paper sweep's projection (sgjax bench
#           --project) from everything measured so far
#   run     the real thing: QF 6 layers, 10 seeds, paper preset, 300k steps with its evaluations,
#           stopped (SIGTERM, state saved) after RUN_SECONDS; rerun the phase to resume it. RUN_ARGS
#           adds train options, e.g. RUN_ARGS="--set eval.exact_match=false" for the original's
#           evaluation alone (first-word accuracies: a pass over the prefixes only; its own run
#           directory, run_qf_l6_args)
#   ti      does TI train like the paper? 10 seeds at 4 layers, the paper's settings, TI_STEPS (default
#           30,000) evaluated every 1,500 steps, cut at RUN_SECONDS and resumed by the next call; once
#           finished, probed (1,000 sentences) and reported, placing ten seeds among the paper's (the
#           README's "Does it train like the paper?" has two, on a CPU)
#
# With 30 minutes of device time, check + peer, scale and precision fit one session; depths and run
# the next (each phase's files come back as it ends, so nothing is lost in between).
#
# Nothing is installed: the lent machines' image has jax[cuda], flax, optax, orbax, torch,
# matplotlib and tqdm, so sgjax runs from this checkout through PYTHONPATH. Results go to
# $RESULTS (default experiments/performance/gpu_session/results) and, on the lent machine, one .tgz per phase to $OUT
# (the device tool brings back at most 8 files a call), rewritten after every measurement so that a
# call cut off by its time limit still brings back what finished. SMOKE=1 shrinks every phase to a few
# steps of a 2-layer model, to check this script on a CPU.
set -euo pipefail
cd "$(dirname "$0")/../../.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
SGJAX="$PY -m sgjax.cli"
RESULTS=${RESULTS:-experiments/performance/gpu_session/results}
RUN_SECONDS=${RUN_SECONDS:-540}
FID_SECONDS=${FID_SECONDS:-270}  # per precision: both fit one 10-minute call
mkdir -p "$RESULTS"

if [[ ${SMOKE:-0} == 1 ]]; then  # a CPU check of the script: tiny sizes, same commands
  DEPTH=2 STEPS=4 CHUNK=2 DYCK_STEPS=2 DYCK_GROUP_SIZES=1 SIZES=1,2 SCALE=2,4 QSCALE=2,4 DEPTHS="1 3" EVAL="" RUN_STEPS=${RUN_STEPS:-40} PRESET=smoke
  FID_STEPS=40 QUICK_FID_STEPS=40 FID_ARGS="--num-seeds 2 --set train.eval_every=20"
  AB_ARMS="--arm default= --arm rejected=xla:xla_no_such_option=1"  # the CPU has no GPU options: check a rejected arm is reported
  TI_DEPTH=2 TI_STEPS=40 TI_ARGS="--num-seeds 2 --set train.eval_every=20 --set train.ckpt_every=20"
else
  DEPTH=6 STEPS=200 CHUNK=100 DYCK_STEPS=10 DYCK_GROUP_SIZES=1,2,5 SIZES=1,10 SCALE=10,20,40,80,160 QSCALE=10,40,160 DEPTHS="2 4 8 10" EVAL=--eval RUN_STEPS=${RUN_STEPS:-300000} PRESET=paper
  # The paper's model on experiments/performance/emulated_precision/emulated_precision.sh's "wide" schedule (warmup 200, lr 3e-4), so that
  # minutes of training move: the paper's 10k-step warmup would leave both arms near their initial weights.
  # Rows (one width) compile one training program an arm, not one per chunk length (a minute each at fp32).
  FID_STEPS=${FID_STEPS:-10000} QUICK_FID_STEPS=${QUICK_FID_STEPS:-4000}
  FID_ARGS=${FID_ARGS:-"--num-seeds 8 --set data.val_size=500 --set data.gen_size=1000 --set train.warmup_steps=200
    --set train.lr=3e-4 --set train.decay_steps=20000 --set train.eval_every=500 --set data.layout=rows"}
  AB_ARMS="--arm default= --arm autotune0=xla:xla_gpu_autotune_level=0 --arm cublas=xla:xla_gpu_enable_triton_gemm=false"
  TI_DEPTH=4 TI_STEPS=${TI_STEPS:-30000} TI_ARGS="--num-seeds 10 --set train.eval_every=1500 --set train.ckpt_every=3000"
fi

DEADLINE=""  # seconds since the script began (bash's SECONDS) after which no measurement runs; set by quick

time_left() {  # seconds until DEADLINE (a day when none is set)
  [[ -n $DEADLINE ]] && echo $(( DEADLINE - SECONDS )) || echo 86400
}

DEVICE_KIND=""  # the device's name (e.g. NVIDIA H200), read by versions(); what `measured` matches

measured() {  # measured FILE: FILE holds a finished measurement on this device kind (quick's resume; REDO=1: never)
  [[ ${REDO:-0} != 1 && -n $DEVICE_KIND && -s $1 ]] || return 1
  if [[ $1 == *.json ]]; then
    $PY - "$1" "$DEVICE_KIND" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))  # a bench JSON (complete, machine) or an ab_step.py one (device; written when done)
devices = d["machine"]["jax_devices"] if "machine" in d else [d.get("device", "")]
sys.exit(not (d.get("complete", True) and any(sys.argv[2] in k for k in devices)))
EOF
  else
    grep -qF "$DEVICE_KIND" "$1"
  fi
}

due() {  # due NAME FILE: is NAME still to measure (FILE holds no result for this device kind, the deadline not passed)?
  if measured "$2"; then echo "-- $1 skipped: measured on $DEVICE_KIND already (REDO=1 to redo)"; return 1; fi
  if (( $(time_left) < 20 )); then echo "-- $1 skipped: the deadline has passed"; return 1; fi
}

bench() {  # bench NAME ARGS...: one sgjax bench, results in $RESULTS/NAME.{json,md}, cut at the deadline
  local name=$1 left rc=0; shift
  due "$name" "$RESULTS/$name.json" || return 0
  left=$(time_left)
  echo "== sgjax bench $* -> $RESULTS/$name.json (at most ${left} s)"
  # timeout signals its whole process group, so the bench's worker processes go with it
  timeout -s TERM "$left" $SGJAX bench "$@" --out "$RESULTS/$name.json" || rc=$?
  (( rc == 0 )) || echo "!! $name failed (exit $rc$( ((rc == 124)) && echo ': cut at the deadline, what it measured is kept'))"
  pack "$PHASE"  # after every measurement: a phase cut off by the call's time limit keeps what it finished
}

pack() {  # pack PHASE: the results so far, without checkpoints, into one archive under $OUT (the device tool's folder)
  [[ -n ${OUT:-} ]] || return 0
  tar czf "$OUT/$1.tgz" --exclude=checkpoints --exclude=state -C "$RESULTS" . && echo "packed $OUT/$1.tgz"
}

versions() {
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || echo "no nvidia-smi"
  $PY -c "import jax, flax, optax, orbax.checkpoint as o; print('jax', jax.__version__, 'flax', flax.__version__, 'optax', optax.__version__, 'orbax', o.__version__); print(jax.devices())"
  DEVICE_KIND=$($PY -c "import jax; print(jax.devices()[0].device_kind)")
  $PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())" || echo "no torch: the peer is skipped"
}

profile() {  # profile NAME ARGS...: experiments/performance/train_step/profile_step.py's table of kernel times in $RESULTS/NAME.txt, cut at the deadline
  local name=$1 left rc=0; shift
  due "$name" "$RESULTS/$name.txt" || return 0
  left=$(time_left)
  echo "== profile_step.py $* -> $RESULTS/$name.txt (at most ${left} s)"
  # the CPU flag lets SMOKE=1 check this on a CPU (XLA's CPU ops are traced only with it); a GPU ignores it
  XLA_FLAGS="${XLA_FLAGS:-} --xla_cpu_enable_xprof_traceme=true" timeout -s TERM "$left" $PY experiments/performance/train_step/profile_step.py "$@" \
    > "$RESULTS/$name.tmp" || rc=$?
  if (( rc == 0 )); then mv "$RESULTS/$name.tmp" "$RESULTS/$name.txt" && cat "$RESULTS/$name.txt"; else echo "!! $name failed (exit $rc)"; fi
  pack "$PHASE"
}

experiment() {  # experiment NAME SCRIPT ARGS...: experiments/SCRIPT (SCRIPT relative to experiments/), its JSON in $RESULTS/NAME.json, cut at the deadline
  local name=$1 script=$2 left; shift 2
  due "$name" "$RESULTS/$name.json" || return 0
  left=$(time_left)
  echo "== $script $* -> $RESULTS/$name.json (at most ${left} s)"
  timeout -s TERM "$left" $PY "experiments/$script" "$@" --out "$RESULTS/$name.json" || echo "!! $name failed (exit $?)"
  pack "$PHASE"
}

phase_quick() {  # the headline of every phase in one call, most important first, cut at the deadline; resumes
  DEADLINE=$(( SECONDS + ${QUICK_SECONDS:-510} ))
  versions
  local s10=${SIZES##*,} q="--task question --steps $STEPS --chunk $CHUNK" L
  local q1="--task question --steps $CHUNK --chunk $CHUNK"  # one timed call: a GPU compiles each chunk length for about a minute at fp32
  bench "quick_peer_qf_l${DEPTH}_highest" $q --depth "$DEPTH" --seeds "$s10" --peer sequential,vmap
  bench "quick_scale_qf_l${DEPTH}_tensorfloat32" $q --depth "$DEPTH" --seeds "$QSCALE" --peer none --precision tensorfloat32
  bench "quick_eval_qf_l${DEPTH}" $q1 --depth "$DEPTH" --seeds "$s10" --peer none $EVAL
  # is TF32 faithful? both targets left open need it (the CPU's emulation says yes: docs/performance.md)
  precision "quick_precision_qf_l$DEPTH" "$QUICK_FID_STEPS"
  # Dyck is 74% of the sweep's FLOPs (sweep_flops.py). Its calls take one step each and nearly every step
  # needs another packed length, so all run at the widest, one program (--project scales the rate by FLOPs)
  bench "quick_depth_dyck_l$DEPTH" --task dyck --depth "$DEPTH" --seeds "$s10" --steps "$DYCK_STEPS" --chunk "$DYCK_STEPS" --peer none --one-width
  # train.member_groups runs S = 10 as groups of 5, 2 or 1, each at its own (shorter) width: 1.96x fewer Dyck
  # positions at 10 groups (sweep_flops.py) for smaller programs. Their FLOP/s at those sizes, one width each:
  bench "quick_dyck_groups_l$DEPTH" --task dyck --depth "$DEPTH" --seeds "$DYCK_GROUP_SIZES" --steps "$DYCK_STEPS" --chunk "$DYCK_STEPS" --peer none --one-width
  # train.group_by=length: two groups of 5, each call's members sorted by batch length (1.45x fewer Dyck FLOPs than
  # one program, sweep_flops.py), gathered from one state; at one width its time over 2 x quick_dyck_groups' S = 5 is that cost
  bench "quick_dyck_group_by_length_l$DEPTH" --task dyck --depth "$DEPTH" --seeds "$s10" --steps "$DYCK_STEPS" --chunk "$DYCK_STEPS" --peer none --one-width \
    --set train.member_groups=2 --set train.group_by=length
  for prec in tensorfloat32 highest; do
    profile "quick_profile_qf_l${DEPTH}_$prec" --seeds "$s10" --depth "$DEPTH" --layout unpadded --precision "$prec" --steps 5 --top 20
  done
  # compile time: about a minute per program at fp32, and a Dyck run has a program per packed length
  experiment "quick_ab_xla_compile_qf_l$DEPTH" performance/train_step/ab_step.py $AB_ARMS --seeds "$s10" --depth "$DEPTH" --rounds 20 --precision highest
  # the 100-step scan as one CUDA graph (XLA's WHILE command buffer), against quick_scale's S = 10: are launches a cost?
  XLA_FLAGS="${XLA_FLAGS:-} --xla_gpu_enable_command_buffer=FUSION,CUBLAS,CUBLASLT,CUSTOM_CALL,CUDNN,CONDITIONAL,WHILE" \
    bench "quick_cmdbuf_while_qf_l${DEPTH}_tensorfloat32" $q1 --depth "$DEPTH" --seeds "$s10" --peer none --precision tensorfloat32
  for L in ${DEPTHS%% *} ${DEPTHS##* }; do
    bench "quick_depth_qf_l$L" $q1 --depth "$L" --seeds "$s10" --peer none
  done
  bench "quick_depth_tense_l$DEPTH" --task tense --depth "$DEPTH" --seeds "$s10" --steps "$STEPS" --chunk "$CHUNK" --peer none
  bench "quick_scale_qf_l${DEPTH}_highest" $q1 --depth "$DEPTH" --seeds "${QSCALE##*,}" --peer none
  # would a compile-ahead pool help here? two programs in turn, two in threads (1.3x on the 2-core CPU)
  experiment "quick_parallel_compile_qf_l$DEPTH" performance/parallel_compile/parallel_compile.py --depth "$DEPTH" --seeds "$s10" --chunk "$CHUNK"
  # how long a checkpoint step holds the loop on this host (0.24 s on the 2-core CPU; 100 of them in a QF run)
  experiment "quick_checkpoint_save_qf_l$DEPTH" performance/checkpoint_save/bench_checkpoint_save.py --depth "$DEPTH" --seeds "$s10" --rounds 3
  project quick_
  # Dyck's hours for each grouping of its seeds, from the program sizes measured above (CPU arithmetic, seconds)
  $PY experiments/performance/member_groups/dyck_groups_projection.py --results "$RESULTS" --depth "$DEPTH" \
    --out "$RESULTS/quick_dyck_groups_projection.json" | tee "$RESULTS/quick_dyck_groups_projection.md" || echo "!! dyck_groups_projection failed"
  DEADLINE=""
}

project() {  # project PREFIX: the paper sweep's time from every S = 10 measurement named PREFIX* (and the full phases')
  shopt -s nullglob
  local files=("$RESULTS"/${1}peer_qf_*highest.json "$RESULTS"/${1}eval_*.json "$RESULTS"/${1}depth_*.json)
  shopt -u nullglob
  (( ${#files[@]} )) || { echo "-- no measurements to project"; return 0; }
  $SGJAX bench --project "${files[@]}" | tee "$RESULTS/${1}projection.md"
}

phase_check() {
  versions
  bench check --task question --depth "$DEPTH" --seeds "${SIZES##*,}" --steps "$STEPS" --chunk "$CHUNK" --peer none
}

phase_peer() {
  for prec in highest tensorfloat32; do
    bench "peer_qf_l${DEPTH}_$prec" --task question --depth "$DEPTH" --seeds "$SIZES" --steps "$STEPS" \
      --chunk "$CHUNK" --peer sequential,vmap --precision "$prec" $EVAL
  done
  # the peer on rows padded to the longest training line (more work than the original's per-batch padding)
  bench "peer_qf_l${DEPTH}_highest_fixedpad" --task question --depth "$DEPTH" --seeds "$SIZES" --steps "$STEPS" \
    --chunk "$CHUNK" --peer sequential,vmap --peer-padding fixed
}

phase_scale() {
  for prec in highest tensorfloat32; do
    bench "scale_qf_l${DEPTH}_$prec" --task question --depth "$DEPTH" --seeds "$SCALE" --steps "$STEPS" \
      --chunk "$CHUNK" --peer none --precision "$prec"
  done
  # levers: QF batches as padded rows, or packed as Dyck's (P x P attention); the default is unpadded
  for layout in rows packed; do
    bench "scale_qf_l${DEPTH}_highest_$layout" --task question --depth "$DEPTH" --seeds "${SCALE%%,*}" \
      --steps "$STEPS" --chunk "$CHUNK" --peer none --set data.layout=$layout
  done
}

phase_depths() {
  for L in $DEPTHS; do
    bench "depth_qf_l$L" --task question --depth "$L" --seeds "${SIZES##*,}" --steps "$STEPS" --chunk "$CHUNK" --peer none $EVAL
  done
  # lever: layers as nn.scan (compile time flat in depth) at the deepest depth, against the loop just measured
  local deepest=${DEPTHS##* }
  bench "scan_qf_l$deepest" --task question --depth "$deepest" --seeds "${SIZES##*,}" --steps "$STEPS" --chunk "$CHUNK" \
    --peer none --set model.scan_layers=true
  bench "depth_tense_l$DEPTH" --task tense --depth "$DEPTH" --seeds "${SIZES##*,}" --steps "$STEPS" --chunk "$CHUNK" --peer none $EVAL
  bench "depth_dyck_l$DEPTH" --task dyck --depth "$DEPTH" --seeds "${SIZES##*,}" --steps "$STEPS" --chunk "$CHUNK" --peer none --one-width $EVAL
  project ""  # with the peer phase's S = 10 rate when it has run (here or in an earlier session)
}

timed_train() {  # timed_train LABEL DIR SECONDS WALL_MD ARGS...: sgjax train stopped (state saved) after SECONDS; a row in WALL_MD
  local label=$1 dir=$2 secs=$3 wall=$4 t0 rc=0
  shift 4
  t0=$(date +%s)
  timeout -s TERM "$secs" $SGJAX train --task "${TRAIN_TASK:-question}" --preset "$PRESET" --depth "$DEPTH" "$@" \
    --out "$dir" --no-progress || rc=$?
  $PY - "$dir" $(( $(date +%s) - t0 )) "$rc" "$label" <<'EOF' | tee -a "$wall"
import pathlib, sys
from sgjax import jsonl
run, secs, rc, label = pathlib.Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
lines = jsonl.read_records(run / "metrics.jsonl")
last = max((r["step"] for r in lines), default=0)
evals = [r for r in lines if r.get("gen_acc") is not None]
at = max((r["step"] for r in evals), default=0)
gen = [r["gen_acc"] for r in evals if r["step"] == at]
mean = sum(gen) / len(gen) if gen else float("nan")
print(f"| {label} | {secs} s this call | exit {rc} | logged up to step {last} | mean gen_acc {mean:.3f} at step {at} |")
EOF
  pack "$PHASE"
}

precision() {  # precision NAME STEPS: the same seeds at fp32 and TF32 (FID_ARGS), each cut at FID_SECONDS and the
  # deadline, then sgjax compare; a cut run resumes on the next call, and a finished pair is skipped (REDO=1: redone)
  local name=$1 steps=$2 prec left done=1
  due "$name" "$RESULTS/$name/device.txt" || return 0  # written once the compared pair ran every step
  for prec in highest tensorfloat32; do
    left=$(time_left)
    (( left >= 30 )) || { echo "-- $name $prec skipped: the deadline has passed"; return 0; }
    timed_train "$name $prec" "$RESULTS/${name}_$prec" "$(( left < FID_SECONDS ? left : FID_SECONDS ))" "$RESULTS/${name}_wall.md" \
      --steps "$steps" $FID_ARGS --set train.ckpt_every="$steps" --set train.matmul_precision=$prec
    grep -q "\"step\": $steps," "$RESULTS/${name}_$prec/metrics.jsonl" 2>/dev/null || done=0
  done
  $SGJAX compare "$RESULTS/${name}_highest" "$RESULTS/${name}_tensorfloat32" --out "$RESULTS/$name" || { echo "!! compare failed (exit $?)"; return 0; }
  (( done )) && echo "$DEVICE_KIND" > "$RESULTS/$name/device.txt"  # both arms ran every step: the pair is measured
  pack "$PHASE"
}

phase_precision() {  # the same seeds at fp32 and TF32, then their curves compared seed by seed
  [[ -n $DEVICE_KIND ]] || DEVICE_KIND=$($PY -c "import jax; print(jax.devices()[0].device_kind)")
  precision "precision_qf_l$DEPTH" "$FID_STEPS"
}

phase_run() {  # resumable: the same command continues the run directory
  local dir="$RESULTS/run_qf_l$DEPTH${RUN_ARGS:+_args}"  # other options, other run: a resume must not mix them
  timed_train "run ${RUN_ARGS:-}" "$dir" "$RUN_SECONDS" "$RESULTS/run_wall.md" --num-seeds 10 --steps "$RUN_STEPS" ${RUN_ARGS:-}
}

phase_ti() {  # resumable like run; the probe and report once every step is trained
  local dir="$RESULTS/ti_l$TI_DEPTH"
  TRAIN_TASK=tense DEPTH=$TI_DEPTH timed_train ti "$dir" "$RUN_SECONDS" "$RESULTS/ti_wall.md" --steps "$TI_STEPS" $TI_ARGS
  grep -q "\"step\": $TI_STEPS," "$dir/metrics.jsonl" 2>/dev/null || { echo "-- ti: not finished; rerun the phase to resume"; return 0; }
  $SGJAX probe "$dir" --sample 1000 --quiet && $SGJAX report "$dir" || echo "!! ti probe/report failed (exit $?)"
}

for PHASE in "$@"; do
  echo "######## phase $PHASE ($(date -u +%H:%M:%S))"
  "phase_$PHASE"
  pack "$PHASE"
done
