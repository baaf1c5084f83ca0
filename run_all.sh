#!/usr/bin/env bash
# The whole study as one resumable grid:  bash run_all.sh PRESET [options]
#
#   bash run_all.sh demo                       # the study on the built-in dataset in 10 minutes on a CPU
#   bash run_all.sh lab                        # its decisive version: 3 seeds, own teachers each, under 1 hour
#   bash run_all.sh lab --replicates 2         # a second, independent replicate: 3 more seeds and teachers
#   bash run_all.sh paper --data-root /data --extra "--amp --workers 8"
#   bash run_all.sh config --slurm --partition gpu --time 04:00:00 --gpus 1 --max-concurrent 32
#   bash run_all.sh paper --dry-run            # runs per stage, the first commands, GPU-hours and disk
#   bash run_all.sh study --data-root DIR --teacher CKPT --student resnet18   # the lab's protocol on your data
#
# Presets: lab, lab-long (the lab plus SGD at 512 epochs), lab-full (lab-long plus Fig. 1, the batch size,
# Table 2, Fig. 6), demo, study (the lab's protocol on your image folder and teacher), paper (all five studies
# on the real datasets), methods, config, origination, init, granularity, demo-tiny (tests).
# grid.py holds every value of the grid; this script only runs its manifests, stage after stage:
# pretrain -> teachers (and student initial weights) -> distill -> analysis. Re-running finishes
# only what is missing: every command skips finished runs, resumes interrupted ones and refuses to
# redo failed ones (pass --extra --retry-failed); a command that succeeded is marked done in
# <out>/.done/. Each command holds a lock while it runs (flock: released by the kernel if its
# holder is killed), so two run_all.sh on the same folder never run one command twice.
set -uo pipefail
cd "$(dirname "$0")"
HERE=$(pwd)

if [[ -n "${PYTHON:-}" ]]; then PY=$PYTHON
elif [[ -x .venv/bin/python ]]; then PY=$HERE/.venv/bin/python
else PY=python3; fi

die() { echo "run_all.sh: error: $*" >&2; exit 2; }
key() { printf '%s' "$1" | sha1sum | cut -c1-16; }

# Internal: run line $3 of manifest $2 (stage $1) once, with a lock, a log and a done-marker.
run_one() {
  local out=$1 stage=$2 file=$3 n=${4:-} cmd k log rc
  # a Slurm task whose list a later submission rewrote shorter finds no line: nothing to run
  [[ "$n" =~ ^[1-9][0-9]*$ ]] || { echo "run_all.sh: no manifest line for this task: nothing to run" >&2; exit 0; }
  cmd=$(sed -n "${n}p" "$file")
  k=$(key "$cmd")
  log="$out/logs/$stage/$k.log"
  mkdir -p "$out/logs/$stage" "$out/.done" "$out/.locks" "$out/.failed"
  exec 9>"$out/.locks/$k.lock"
  flock 9
  if [[ -e "$out/.done/$k" ]]; then exit 0; fi
  if [[ -n "${KD_SLOT:-}" && -n "${KD_GPUS:-}" ]]; then   # local pool: slot i on GPU i (round-robin when fewer)
    local gpus
    IFS=, read -r -a gpus <<<"$KD_GPUS"
    export CUDA_VISIBLE_DEVICES=${gpus[KD_SLOT % ${#gpus[@]}]}
  fi
  echo "[$stage] $cmd" >&2
  echo "== $(date '+%F %T') on $(hostname): $cmd" >>"$log"   # one header per execution (logs append)
  (cd "$HERE" && bash -c "$cmd") >>"$log" 2>&1
  rc=$?
  if [[ $rc == 0 ]]; then
    touch "$out/.done/$k"; rm -f "$out/.failed/$k"
  else
    printf '%s\t%s\t%s\n' "$rc" "$log" "$cmd" >"$out/.failed/$k"
    echo "[$stage] FAILED (exit $rc), log: $log" >&2
  fi
  exit $rc
}
if [[ "${1:-}" == __one ]]; then shift; run_one "$@"; fi

usage() { sed -n '2,/^set -uo/p' "$0" | grep '^#' | sed 's/^# \{0,1\}//'; cat <<'EOF'

Options:
  --out DIR             results folder (default: results/<preset>)
  --data-root DIR       folder holding the real datasets (default: data)
  --jobs N              local workers (default: one per GPU, else one per CPU core); worker i sees one GPU, the
                        i-th of CUDA_VISIBLE_DEVICES (else of nvidia-smi -L), shared round-robin if fewer
  --extra "FLAGS"       flags appended to every training command (e.g. "--amp --workers 8")
  --dry-run             print runs per stage and the first commands (the paper's: its GPU-hours at assumed
                        rates, grid.ASSUMED_TRAIN_RATES, and the disk of its tapes and checkpoints); run nothing
  --replicates N        lab presets: N independent replicates (each 3 more seeds with their own teachers);
                        N=2 after a finished lab runs only the second, and the report compares the two
  --stop-after STAGE    pretrain, teachers or distill (default): e.g. check the teachers before distilling
  --slurm               submit each stage as an sbatch --array job (stages depend on each other)
  --wait                with --slurm: wait for the jobs, then list failures and run the analysis
  --partition P, --time T, --account A, --gpus G
                        passed to sbatch; --max-concurrent N caps a stage's running array tasks (default 16)
  --cpus C              CPUs per task (default: the stage's loader workers, --workers in its commands, + 1)
  --mem M               memory per task, e.g. 32G (default 16G)
                        a stage over the cluster's MaxArraySize goes as several arrays (the cap shared among them)
  --sbatch-args "..."   any other sbatch flags

The study preset (your own lab; --dry-run prints the runs and a wall time estimated from step rates measured here):
  --data-root DIR       your image folder: DIR/{train,test}/<class>/<images>
  --teacher CKPT        your teacher (train_teacher.py); without it the study trains one from scratch, or with
  --source DIR          a larger related image folder: pretrained there, fine-tuned briefly and long on DIR
  --student ARCH, --teacher-arch ARCH, --image-size N, --budgets E1 E2 .., --seeds N, --T T1 T2 ..,
  --dataset NAME (default imagefolder), --synth KEY=VALUE .. (a built-in dataset), --max-hours H
EOF
}

[[ $# -ge 1 ]] || { usage; exit 2; }
PRESET=$1; shift
case "$PRESET" in
  -h|--help) usage; exit 0;;
  lab|lab-long|lab-full|demo|demo-tiny|study|paper|methods|config|origination|init|granularity) ;;
  *) die "unknown preset '$PRESET' (expected lab, lab-long, lab-full, demo, study, paper, methods, config, origination, init or granularity)";;
esac
OUT=results/$PRESET DATA_ROOT=data JOBS="" EXTRA="" DRY=0 SLURM=0 WAIT=0 MAXC=16 SB=() STOP=distill STUDY=()
CPUS="" MEM=16G
# An option's value must be there and must not look like another option (--out --dry-run is refused).
value() { [[ $# -ge 2 && -n "$2" && "$2" != --* ]] || die "$1: expected a value after it, got '${2:-}'"; }
while [[ $# -gt 0 ]]; do
  case "$1" in
    --out) value "$@"; OUT=$2; shift;;
    --data-root) value "$@"; DATA_ROOT=$2; shift;;
    --jobs) value "$@"; JOBS=$2; shift;;
    --extra) [[ $# -ge 2 ]] || die "--extra: expected a value after it"; EXTRA=$2; shift;;
    --stop-after) value "$@"; STOP=$2; shift;;
    --dry-run) DRY=1;;
    --slurm) SLURM=1;;
    --wait) WAIT=1;;
    --partition|--time|--account|--gpus) value "$@"; SB+=("$1=$2"); shift;;
    --cpus) value "$@"; CPUS=$2; shift;;
    --mem) value "$@"; MEM=$2; shift;;
    --max-concurrent) value "$@"; MAXC=$2; shift;;
    --dataset|--teacher|--source|--source-dataset|--student|--teacher-arch|--image-size|--seeds|--max-hours|--replicates)
      value "$@"; STUDY+=("$1" "$2"); shift;;
    --budgets|--T|--synth)   # several values, up to the next option
      opt=$1; [[ $# -ge 2 && "$2" != --* ]] || die "$opt: expected values after it"; STUDY+=("$opt")
      while [[ $# -ge 2 && "$2" != --* ]]; do STUDY+=("$2"); shift; done;;
    --sbatch-args) [[ $# -ge 2 ]] || die "--sbatch-args: expected a value after it"; read -r -a more <<<"$2"; SB+=("${more[@]}"); shift;;
    -h|--help) usage; exit 0;;
    *) die "unknown option '$1' (see bash run_all.sh --help)";;
  esac
  shift
done
[[ "$MAXC" =~ ^[1-9][0-9]*$ ]] || die "--max-concurrent: expected a positive integer, got '$MAXC'"
case "$STOP" in pretrain|teachers|distill) ;; *) die "--stop-after: expected pretrain, teachers or distill, got '$STOP'";; esac
[[ -z "$JOBS" || "$JOBS" =~ ^[1-9][0-9]*$ ]] || die "--jobs: expected a positive integer, got '$JOBS'"
[[ -z "$CPUS" || "$CPUS" =~ ^[1-9][0-9]*$ ]] || die "--cpus: expected a positive integer, got '$CPUS'"
[[ "$MEM" =~ ^[1-9][0-9]*[KMGT]?$ ]] || die "--mem: expected a size such as 16G or 16000 (MB), got '$MEM'"

if [[ $DRY == 1 ]]; then
  exec "$PY" grid.py "$PRESET" --out "$OUT" --data-root "$DATA_ROOT" --python "$PY" --extra "$EXTRA" \
    ${JOBS:+--jobs "$JOBS"} "${STUDY[@]}" --dry-run
fi
if [[ $SLURM == 1 ]] && ! command -v sbatch >/dev/null; then
  die "--slurm: sbatch not found on PATH (run on a Slurm login node, or drop --slurm to run locally)"
fi
NEW_OUT=0; [[ -e "$OUT" ]] || NEW_OUT=1
mkdir -p "$OUT" 2>/dev/null && [[ -w "$OUT" ]] || die "--out: folder '$OUT' is not writable"
OUT=$(cd "$OUT" && pwd)
if ! "$PY" grid.py "$PRESET" --out "$OUT" --data-root "$DATA_ROOT" --python "$PY" --extra "$EXTRA" "${STUDY[@]}" >/dev/null; then
  [[ $NEW_OUT == 1 ]] && rmdir "$OUT" 2>/dev/null   # refused: leave nothing behind
  exit 2
fi
STAGES=()
for stage in pretrain teachers distill; do STAGES+=("$stage"); [[ $stage == "$STOP" ]] && break; done

# Lines of a stage's manifest whose command has not succeeded yet.
pending() {
  local file="$OUT/manifest/$1.txt" n=0 cmd
  while IFS= read -r cmd; do
    n=$((n + 1))
    [[ -e "$OUT/.done/$(key "$cmd")" ]] || echo "$n"
  done <"$file"
}

list_failures() {   # of this grid's commands only: a failure of a command the grid no longer has is history
  local stage cmd f failed=0
  for stage in "${STAGES[@]}"; do
    [[ -f "$OUT/manifest/$stage.txt" ]] || continue
    while IFS= read -r cmd; do
      f="$OUT/.failed/$(key "$cmd")"
      [[ -e "$f" ]] || continue
      if [[ $failed == 0 ]]; then echo "FAILED commands (exit code, log, command):" >&2; fi
      failed=$((failed + 1)); cat "$f" >&2
    done <"$OUT/manifest/$stage.txt"
  done
  if [[ $failed -gt 0 ]]; then echo "$failed command(s) failed; fix the cause and re-run the same command to finish the grid" >&2; return 1; fi
  return 0
}

# The local pool's GPUs, comma-separated: CUDA_VISIBLE_DEVICES if set (empty: none), else nvidia-smi -L's indices.
gpu_list() {
  if [[ -n "${CUDA_VISIBLE_DEVICES+set}" ]]; then tr -d ' ' <<<"$CUDA_VISIBLE_DEVICES"; return; fi
  command -v nvidia-smi >/dev/null || return 0
  nvidia-smi -L 2>/dev/null | grep '^GPU [0-9]' | awk '{sub(":", "", $2); print $2}' | paste -sd, -
}

if [[ $SLURM == 0 ]]; then
  [[ -n "${OMP_NUM_THREADS:-}" ]] && KD_THREADS_FIXED=1
  CORES=$(env -u OMP_NUM_THREADS nproc)   # nproc itself obeys OMP_NUM_THREADS
  KD_GPUS=$(gpu_list)
  GPUS=$(awk -F, '{print NF}' <<<"$KD_GPUS")
  if [[ $GPUS -gt 0 ]]; then
    export KD_GPUS; JOBS=${JOBS:-$GPUS}
    if [[ $JOBS -gt $GPUS ]]; then
      echo "run_all.sh: note: --jobs $JOBS > $GPUS GPU(s) ($KD_GPUS): workers share them round-robin" >&2
    fi
  else
    unset KD_GPUS
    echo "run_all.sh: note: no GPU (CUDA_VISIBLE_DEVICES empty or nvidia-smi -L lists none): running on the CPU" >&2
    [[ -z "$JOBS" ]] && JOBS=$CORES CPU_POOL=1   # one worker per core; threads per worker set per stage below
  fi
  if [[ -n "${KD_THREADS_FIXED:-}" && -z "${KD_GPUS:-}" && "$OMP_NUM_THREADS" =~ ^[0-9]+$ ]] \
     && (( OMP_NUM_THREADS * JOBS > CORES )); then
    echo "run_all.sh: note: OMP_NUM_THREADS=$OMP_NUM_THREADS x $JOBS worker(s) > $CORES cores: the workers will slow each other down (unset OMP_NUM_THREADS to let run_all.sh choose, or pass --jobs)" >&2
  fi
  t0=$SECONDS
  for stage in "${STAGES[@]}"; do
    todo=$(pending "$stage" | wc -l)
    total=$(wc -l <"$OUT/manifest/$stage.txt")
    echo "== $stage: $todo of $total commands to run, $JOBS worker(s)" >&2
    [[ $todo -gt 0 ]] || continue
    if [[ -n "${CPU_POOL:-}" && -z "${KD_THREADS_FIXED:-}" ]]; then
      # spread the cores over the stage's commands; from the stage's size, not from what is left, so that a
      # resumed grid uses the same thread count (CPU float results depend on it) and reproduces its results
      export OMP_NUM_THREADS=$(( CORES / (total < JOBS ? total : JOBS) > 0 ? CORES / (total < JOBS ? total : JOBS) : 1 ))
    fi
    pending "$stage" | xargs -P "$JOBS" --process-slot-var=KD_SLOT -I{} \
      bash "$HERE/run_all.sh" __one "$OUT" "$stage" "$OUT/manifest/$stage.txt" {}
  done
  # The demo leaves its briefly fine-tuned teacher where distill.py looks by default (if none is there yet),
  # so that `python distill.py --T 40 --opt sgd` works right after it (grid.DEMO: brief = 4 epochs).
  if [[ $PRESET == demo && -f "$OUT/teachers/synth-fine-ft4.pt" && ! -e teachers/synth-fine.pt ]]; then
    mkdir -p teachers && cp "$OUT/teachers/synth-fine-ft4.pt" teachers/.synth-fine.pt.tmp \
      && mv teachers/.synth-fine.pt.tmp teachers/synth-fine.pt \
      && echo "== the demo's teacher is now also teachers/synth-fine.pt (distill.py's default --teacher)" >&2
  fi
  if [[ $STOP == distill ]]; then
    echo "== analysis" >&2
    mkdir -p "$OUT/.locks"
    flock "$OUT/.locks/analysis.lock" "$PY" -m analysis.report "$OUT" || echo "run_all.sh: analysis failed" >&2
    echo "== done in $((SECONDS - t0)) s: $OUT/REPORT.md" >&2
  else
    echo "== stopped after the $STOP stage in $((SECONDS - t0)) s (--stop-after)" >&2
  fi
  list_failures
  exit $?
fi

# Slurm: each stage as sbatch arrays, each array depending on every array of the stage before; the analysis last.
# A stage with more commands than the cluster allows in one array (MaxArraySize - 1 with indices from 1) is split
# into several, its pending lines dealt round-robin (each array keeps the longest-first order and a like share).
max_array_size() {   # the cluster's MaxArraySize; Slurm's default (1001) if scontrol cannot tell
  local n
  n=$(scontrol show config 2>/dev/null | awk '$1 == "MaxArraySize" {print $3}')
  if [[ "$n" =~ ^[0-9]+$ && $n -ge 2 ]]; then echo "$n"; else echo 1001; fi
}
stage_workers() {   # the most loader workers (--workers N) any command of the stage asks for; 0 if none does
  { echo 0; grep -o -- '--workers [0-9]*' "$OUT/manifest/$1.txt" | awk '{print $2}'; } | sort -n | tail -1
}
# submit_array STAGE LIST CAP DEPENDENCY...: one array over the manifest lines listed in LIST; prints its job id
submit_array() {
  local stage=$1 list=$2 cap=$3 m job cpus
  shift 3
  m=$(wc -l <"$list")
  cpus=${CPUS:-$(($(stage_workers "$stage") + 1))}
  # array task i runs line (line i of LIST) of the manifest
  job=$(sbatch --parsable --job-name="kd-$stage" --array="1-$m%$cap" --cpus-per-task="$cpus" --mem="$MEM" \
        "$@" "${SB[@]}" --output="$OUT/logs/slurm/$stage-%A_%a.out" --wrap \
        "export OMP_NUM_THREADS=\${SLURM_CPUS_PER_TASK:-1}; bash '$HERE/run_all.sh' __one '$OUT' '$stage' '$OUT/manifest/$stage.txt' \$(sed -n \"\${SLURM_ARRAY_TASK_ID}p\" '$list')") \
    || die "sbatch failed for stage $stage"
  echo "${job%%;*}"
}
mkdir -p "$OUT/logs/slurm"
PER_ARRAY=$(($(max_array_size) - 1))
dep=() last=()
for stage in "${STAGES[@]}"; do
  pending "$stage" >"$OUT/manifest/$stage.pending"
  n=$(wc -l <"$OUT/manifest/$stage.pending")
  [[ $n -gt 0 ]] || continue
  arrays=$(((n + PER_ARRAY - 1) / PER_ARRAY))
  last=()
  for ((a = 1; a <= arrays; a++)); do
    list="$OUT/manifest/$stage.pending.$a"
    awk -v k="$arrays" -v a="$a" 'NR % k == a % k' "$OUT/manifest/$stage.pending" >"$list"
    cap=$((MAXC / arrays + (a <= MAXC % arrays))); [[ $cap -ge 1 ]] || cap=1   # the stage's cap, shared
    last+=("$(submit_array "$stage" "$list" "$cap" "${dep[@]}")") || exit 2
  done
  if [[ $arrays == 1 ]]; then echo "submitted $stage: job ${last[0]} ($n tasks)" >&2
  else echo "submitted $stage: jobs ${last[*]} ($n tasks in $arrays arrays: the cluster's MaxArraySize is $((PER_ARRAY + 1)))" >&2; fi
  dep=("--dependency=afterany:$(IFS=:; echo "${last[*]}")")
done
if [[ $STOP == distill ]]; then
  job=$(sbatch --parsable --job-name=kd-analysis "${dep[@]}" "${SB[@]}" --output="$OUT/logs/slurm/analysis-%j.out" \
        --wrap "cd '$HERE' && '$PY' -m analysis.report '$OUT'") || die "sbatch failed for the analysis"
  last=("${job%%;*}")
  echo "submitted analysis: job ${last[0]}" >&2
fi
if [[ $WAIT == 1 ]]; then
  while [[ ${#last[@]} -gt 0 ]] && squeue -h -j "$(IFS=,; echo "${last[*]}")" 2>/dev/null | grep -q .; do sleep 2; done
  list_failures
  exit $?
fi
echo "jobs submitted; re-run the same command after they finish to resubmit anything missing" >&2
