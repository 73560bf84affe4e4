#!/usr/bin/env bash
# One GPU check for the performance issue (issue 15, item 4), ≤ 8 minutes on one GPU, one summary at the end:
#   tests    the CUDA-only tests (tests/test_cuda.py, tests/test_sparsity.py -k cuda)
#   gpu-tp   bench_gpu_throughput.py: DeepLab-ResNet34, 3 tasks, 321², batch 16, fp32 vs bf16 img/s (≥ 2×)
#   overhead bench_step_overhead.py --full --only-full: paper-size step of every method vs dense (≤ 1.10×)
#   syncs    bench_host_syncs.py on CUDA: device→host syncs per training step, every method (0)
#   ddp      ddp_one_gpu.py: a 2-worker DDP trial of the engine on one GPU (gloo; no Ray on that machine)
#
# Through the `device` tool (it runs in the repo root of a copy of the working tree; $OUT comes back):
#   here, once:  benchmarks/gpu_check.sh --fetch-wheels     # pydantic & co. for the GPU image's Python 3.12
#   device run:  command "bash benchmarks/gpu_check.sh", carry [".whl"], timeout_s 560
# Here, without a GPU:  benchmarks/gpu_check.sh --dry-run  (every step's command parses and imports, and the
#   CUDA tests run on the CPU with the accelerator code path forced; no CUDA needed).
#
# Every step has its own time budget (a killed step is reported as "timeout", the others still run) and its
# log goes to $OUT/<step>.log; the summary is printed last and written to $OUT/summary.txt.
set -uo pipefail

MODE=run
case "${1:-}" in
  --dry-run) MODE=dry ;;
  --fetch-wheels) MODE=fetch ;;
  ""|--run) ;;
  -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
  *) echo "usage: $0 [--dry-run | --fetch-wheels]" >&2; exit 2 ;;
esac

cd "$(dirname "$0")/.." || exit 2
ROOT=$(pwd)
OUT=${OUT:-$(mktemp -d /tmp/gpu_check.XXXXXX)}
mkdir -p "$OUT"
TOTAL_BUDGET=${GPU_CHECK_BUDGET_S:-470}   # seconds for all steps together (8 min minus set-up and transfers)
START=$(date +%s)
export PYTHONUNBUFFERED=1 MLFLOW_DISABLE_TELEMETRY=true RAY_USAGE_STATS_ENABLED=0
export ADAPMTL_CACHE=${ADAPMTL_CACHE:-/tmp/adapmtl-gpu-cache}

# The interpreter: this repo's venv where it has torch (here), else the image's python3 (the GPU machine).
if [[ -n "${PYTHON:-}" ]]; then PY=$PYTHON
elif [[ -x .venv/bin/python ]] && .venv/bin/python -c "import torch" 2>/dev/null; then PY=.venv/bin/python
else PY=python3; fi

WHEELS=(pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5)
if [[ $MODE == fetch ]]; then
  "$PY" -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d .whl "${WHEELS[@]}"
  exit $?
fi

declare -a NAMES STATUS SECS NOTES
record() { NAMES+=("$1"); STATUS+=("$2"); SECS+=("$3"); NOTES+=("$4"); }

# step NAME BUDGET_S NOTE_REGEX -- command...: runs it with its budget (capped by what is left), logs it.
step() {
  local name=$1 budget=$2 pattern=$3; shift 4
  local now left t0 rc note
  now=$(date +%s); left=$(( TOTAL_BUDGET - (now - START) ))
  (( budget > left )) && budget=$left
  if (( budget < 15 )); then record "$name" "skipped" 0 "no time left in the ${TOTAL_BUDGET} s budget"; return; fi
  echo "== $name (budget ${budget} s): $*" | tee "$OUT/$name.log"
  t0=$(date +%s)
  timeout --kill-after=10 "$budget" "$@" >>"$OUT/$name.log" 2>&1
  rc=$?
  note=$(grep -E "$pattern" "$OUT/$name.log" | tail -n 8 | tr '\n' ';' | tr -s ' ' | cut -c1-900)
  if (( rc == 124 || rc == 137 )); then record "$name" "timeout" $(( $(date +%s) - t0 )) "${note:-killed at ${budget} s}"
  elif (( rc == 0 )); then record "$name" "ok" $(( $(date +%s) - t0 )) "$note"
  else record "$name" "FAILED rc=$rc" $(( $(date +%s) - t0 )) "${note:-$(tail -n 3 "$OUT/$name.log" | tr '\n' ';' | cut -c1-400)}"
  fi
  tail -n 25 "$OUT/$name.log"
}

summary() {
  {
    echo
    echo "==================== gpu_check summary ($MODE, $(( $(date +%s) - START )) s) ===================="
    echo "machine: $ENV_LINE"
    local i
    for i in "${!NAMES[@]}"; do
      printf '%-9s %-14s %4ss  %s\n' "${NAMES[$i]}" "${STATUS[$i]}" "${SECS[$i]}" "${NOTES[$i]}"
    done
    echo "targets: gpu-tp bf16 ≥ 2× fp32 img/s · overhead ≤ 1.10× dense per method · syncs 0/step · ddp ok"
    echo "logs: $OUT/<step>.log"
  } | tee "$OUT/summary.txt"
}

# -- set-up: the project's few pure-Python dependencies the GPU image lacks --------------------------------
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
if ! "$PY" -c "import pydantic" 2>/dev/null; then
  if compgen -G ".whl/*.whl" >/dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/gpu_check_site \
      .whl/*.whl >"$OUT/setup.log" 2>&1 && export PYTHONPATH="$ROOT:/tmp/gpu_check_site"
  fi
fi
ENV_LINE=$("$PY" - <<'EOF' 2>&1 | tail -n 1
import platform
try:
    import torch
    dev = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no CUDA"
    t = f"torch {torch.__version__}, {dev}"
except Exception as exc:  # the summary says what is missing instead of failing
    t = f"torch not importable ({exc})"
try:
    import pydantic
    p = f"pydantic {pydantic.VERSION}"
except Exception:
    p = "pydantic MISSING (run benchmarks/gpu_check.sh --fetch-wheels here and carry .whl)"
print(f"python {platform.python_version()}, {t}, {p}")
EOF
)
echo "gpu_check ($MODE): $ENV_LINE; logs in $OUT"

if ! "$PY" -c "import pydantic, torch" 2>/dev/null; then
  for s in tests gpu-tp overhead syncs ddp; do record "$s" "skipped" 0 "needs torch and pydantic: $ENV_LINE"; done
  summary; exit 1
fi

if [[ $MODE == dry ]]; then
  # Each step's command must parse and import without CUDA; the CUDA tests run on the CPU (accelerator path).
  step tests 120 "passed|failed|error" -- env ADAPMTL_TEST_DEVICE=cpu OMP_NUM_THREADS=1 "$PY" -m pytest -q -p no:cacheprovider \
    tests/test_cuda.py tests/test_sparsity.py -k "cuda"
  step gpu-tp 60 "skipped|rror" -- "$PY" -c "import sys; sys.path.insert(0, 'benchmarks'); import bench_gpu_throughput as b
import trainers.data, trainers.loader, trainers.models, trainers.tasks, torch.profiler  # what it imports lazily
sys.exit(b.main(['--steps', '30', '--warmup', '10', '--workers', '8', '--check-steps', '100']))"
  # the same script on the CPU at a tiny size: every method's setup and step run; the full size says skipped
  step overhead 120 "^(adapmtl|snip|lth|imp|disparse)|skipped|rror" -- env OMP_NUM_THREADS=1 "$PY" benchmarks/bench_step_overhead.py \
    --arch resnet34 --methods adapmtl snip lth imp disparse --rounds 1 --block 1 --warmup 1 --resolution 32 --full
  step syncs 90 "^[a-z]+ +[0-9.]+ +[0-9]+|rror" -- env OMP_NUM_THREADS=1 "$PY" benchmarks/bench_host_syncs.py \
    --methods dense adapmtl --n1 2 --n2 3
  step ddp 60 "ddp:" -- "$PY" benchmarks/ddp_one_gpu.py --dry-run
  summary
  grep -qE "FAILED|timeout" "$OUT/summary.txt" && exit 1
  exit 0
fi

if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  for s in tests gpu-tp overhead syncs ddp; do record "$s" "skipped" 0 "no CUDA: GPU unmeasured"; done
  summary; exit 1
fi
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm --format=csv >"$OUT/nvidia-smi.txt" 2>&1

step tests 70 "passed|failed|error" -- "$PY" -m pytest -q -p no:cacheprovider tests/test_cuda.py tests/test_sparsity.py -k "cuda"
step gpu-tp 120 "img/s|×|busy|sync|skipped|metric" -- "$PY" benchmarks/bench_gpu_throughput.py --steps 30 --warmup 10 \
  --workers 8 --check-steps 100
step overhead 130 "^(adapmtl|snip|lth|imp|disparse)|dense [0-9.]+ ms/step|skipped" -- "$PY" benchmarks/bench_step_overhead.py \
  --full --only-full --rounds 4 --block 3 --methods adapmtl "adapmtl[per-layer]" "adapmtl[mask-fixed]" snip lth imp disparse
step syncs 90 "^[a-z]+ +[0-9.]+ +[0-9]+" -- "$PY" benchmarks/bench_host_syncs.py --methods dense adapmtl snip imp disparse lth
step ddp 60 "ddp:" -- "$PY" benchmarks/ddp_one_gpu.py --method snip --steps 30
summary
grep -qE "FAILED|timeout" "$OUT/summary.txt" && exit 1
exit 0
