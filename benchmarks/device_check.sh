#!/usr/bin/env bash
# The prepared accelerator check: one command, at most 8 minutes on one GPU (H100 class), one
# results file, benchmarks/results/device_check_<device>.md.
#
#   bash benchmarks/device_check.sh [--no-install] [--wheels DIR] [--data-dir DIR]
#                                   [--log-dir DIR] [--budget-s 480] [--python PY] [--dry-run]
#
# Stages, each under its own time limit and all under one deadline (--budget-s, default 480 s:
# a stage that would overrun it is cut, and the stage table says so):
#   install    pip install -e ".[torch,test]" "jax[cuda12]" (--no-install: only registers this
#              checkout, offline: pip install --no-deps --no-build-isolation -e .; --wheels DIR
#              first installs DIR/*.whl offline, for machines without an index)
#   preflight  JAX sees the GPU
#   tests      pytest -m accelerator (tests/test_accelerator.py: the conv dispatcher hands every
#              conv to XLA, a bf16 step, the mesh over the real devices)
#   compare_*  benchmarks/compare_torch.py --scale gpu for VGG16 and ResNet18, batches 128 and
#              512, standard, MwT and MODA objectives (float32; eager torch, no torch.compile)
#   flops      benchmarks/device_probe.py flops: fp32 and bf16 steps at batch 512, the fraction
#              of the device's peak FLOP/s, step and peak device memory
#   epoch      benchmarks/device_probe.py epoch: one paper-scale epoch of
#              `python -m experiments.reproduce moda --scale paper`'s VGG16 row (needs CIFAR-10
#              under --data-dir, default $MODJAX_DATA_DIR or ../shared/datasets)
#   report     benchmarks/device_probe.py report: the results file
#
# --dry-run runs nothing heavy and needs no GPU: it checks every path, the pyproject extras, and
# every python command with its own arguments in a form that validates them and does no work
# (pytest --collect-only, argparse of compare_torch, device_probe --dry-run).
#
# On this workplace's lent GPU machines (offline, JAX and torch preinstalled):
#   bash benchmarks/device_check.sh --no-install --log-dir /tmp/dc && cp benchmarks/results/device_check_*.md "$OUT"/
set -uo pipefail

cd "$(dirname "$0")/.." || exit 2
ROOT=$(pwd)
DRY=0
INSTALL=1
WHEELS=""
DATA_DIR="${MODJAX_DATA_DIR:-$ROOT/../shared/datasets}"
LOG_DIR=""
BUDGET_S=480
PY="${PYTHON:-python}"
while [ $# -gt 0 ]; do
    case "$1" in
        --dry-run) DRY=1 ;;
        --no-install) INSTALL=0 ;;
        --wheels) WHEELS="$2"; shift ;;
        --data-dir) DATA_DIR="$2"; shift ;;
        --log-dir) LOG_DIR="$2"; shift ;;
        --budget-s) BUDGET_S="$2"; shift ;;
        --python) PY="$2"; shift ;;
        -h|--help) sed -n '2,30p' "$0"; exit 0 ;;
        *) echo "device_check.sh: error: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done
case "$BUDGET_S" in ''|*[!0-9]*) echo "device_check.sh: error: --budget-s $BUDGET_S is not a number of seconds" >&2; exit 2 ;; esac
if [ -n "$WHEELS" ] && [ ! -d "$WHEELS" ]; then
    echo "device_check.sh: error: --wheels $WHEELS is not a directory" >&2; exit 2
fi
LOG_DIR="${LOG_DIR:-$(mktemp -d /tmp/device_check.XXXXXX)}"
mkdir -p "$LOG_DIR" || exit 2
STAGES="$LOG_DIR/stages.tsv"
: > "$STAGES"

# The commands, defined once: the dry run checks these same arguments.
INSTALL_CMD=("$PY" -m pip install -e ".[torch,test]" "jax[cuda12]")
REGISTER_CMD=("$PY" -m pip install --no-deps --no-build-isolation -e .)
PREFLIGHT_CMD=("$PY" -c "import jax; d = jax.devices(); print(d); assert jax.default_backend() == 'gpu', d")
TEST_CMD=("$PY" -m pytest -m accelerator -q -p no:cacheprovider tests/test_accelerator.py)
COMPARE_ARGS=(--scale gpu --methods standard mwt moda --batch-sizes 128 512 --threads all
              --rounds 3 --steps 2 --no-compile --compile-budget-s 90
              --extract-samples 512 --extract-rounds 1)
COMPARE_MODELS=(vgg16 resnet18)
FLOPS_CMD=("$PY" -m benchmarks.device_probe flops --models vgg16 resnet18 --method moda
           --batch-size 512 --out "$LOG_DIR/flops.json")
EPOCH_CMD=("$PY" -m benchmarks.device_probe epoch --data-dir "$DATA_DIR"
           --workdir "$LOG_DIR/epoch_run" --out "$LOG_DIR/epoch.json")
REPORT_CMD=("$PY" -m benchmarks.device_probe report --log-dir "$LOG_DIR"
            --compare-tags "${COMPARE_MODELS[@]/#/device_check_}")
PATHS=(pyproject.toml tests/conftest.py tests/test_accelerator.py benchmarks/compare_torch.py
       benchmarks/device_probe.py benchmarks/_compare_worker.py experiments/reproduce/configs/paper.py
       benchmarks/results)

START=$SECONDS
DEADLINE=$((SECONDS + BUDGET_S))
RESERVE_S=20  # kept for the report
FAILED=0

# stage NAME LIMIT_S CMD...: runs CMD with its output in $LOG_DIR/NAME.log under
# min(LIMIT_S, time to the deadline), and records name, status, seconds, last line.
stage() {
    local name=$1 limit=$2 rc last t0=$SECONDS
    shift 2
    local left=$((DEADLINE - SECONDS - RESERVE_S))
    [ "$name" = report ] && left=$((DEADLINE - SECONDS))
    [ "$left" -lt "$limit" ] && limit=$left
    if [ "$limit" -lt 10 ]; then
        printf '%s\tskipped\t0\tout of time (deadline %ss)\n' "$name" "$BUDGET_S" >> "$STAGES"
        echo "== $name: skipped, out of time"
        return 0
    fi
    echo "== $name (limit ${limit}s): $*"
    timeout --kill-after=10 "$limit" "$@" > "$LOG_DIR/$name.log" 2>&1
    rc=$?
    last=$(grep -v '^\s*$' "$LOG_DIR/$name.log" | tail -1 | tr '\t|' '  ' | cut -c1-160)
    [ "$rc" = 124 ] && last="timed out after ${limit}s; $last"
    printf '%s\t%s\t%s\t%s\n' "$name" "$rc" "$((SECONDS - t0))" "$last" >> "$STAGES"
    echo "   exit $rc after $((SECONDS - t0))s: $last"
    [ "$rc" = 0 ] || FAILED=1
    return "$rc"
}

# check WHAT CMD...: a dry-run check (no time limit, output shown on failure only).
check() {
    local what=$1 out
    shift
    if out=$("$@" 2>&1); then
        echo "ok   $what"
    else
        echo "FAIL $what: $*"
        echo "$out" | tail -5 | sed 's/^/     /'
        FAILED=1
    fi
}

if [ "$DRY" = 1 ]; then
    echo "device_check.sh --dry-run: checking every command and path (no GPU needed, nothing run)"
    echo "log dir: $LOG_DIR; budget ${BUDGET_S}s; python: $(command -v "$PY" || echo "$PY MISSING")"
    for p in "${PATHS[@]}"; do check "path $p" test -e "$p"; done
    check "data dir $DATA_DIR" test -d "$DATA_DIR"
    if ls "$DATA_DIR"/cifar10* > /dev/null 2>&1; then
        echo "ok   CIFAR-10 found under $DATA_DIR ($(cd "$DATA_DIR" && ls -d cifar10* | tr '\n' ' '))"
    else
        echo "note no cifar10* under $DATA_DIR: the epoch stage would fail there"
    fi
    check "timeout(1) for the stage limits" timeout 5 true
    check "pip: ${INSTALL_CMD[*]}" "$PY" -c '
import sys, tomllib
from packaging.requirements import Requirement
extras = tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]
for spec in sys.argv[1:]:
    if spec.startswith(".["):
        missing = set(spec[2:-1].split(",")) - set(extras)
        assert not missing, f"extras {missing} not in pyproject.toml ({sorted(extras)})"
    else:
        Requirement(spec)
import pip' "${INSTALL_CMD[@]:5}"
    check "register: ${REGISTER_CMD[*]}" "$PY" -m pip --version
    check "preflight: python -c (compiles)" "$PY" -c "compile(open(0).read(), 'preflight', 'exec')" <<< "${PREFLIGHT_CMD[2]}"
    check "tests: ${TEST_CMD[*]} (--collect-only --strict-markers)" bash -c \
        '"$@" --collect-only --strict-markers | grep -Eq "^[1-9][0-9]* tests? collected"' _ "${TEST_CMD[@]}"
    for m in "${COMPARE_MODELS[@]}"; do
        check "compare_$m: compare_torch ${COMPARE_ARGS[*]} --models $m --tag device_check_$m (argparse)" \
            "$PY" -c '
import sys
from benchmarks import compare_torch as c
parser, args = c.parse_args(sys.argv[1:])
assert set(args.models) <= set(c.MODELS) and set(args.methods) <= set(c.METHODS), args
assert args.scale == "gpu" and args.batch_sizes == [128, 512], args' \
            "${COMPARE_ARGS[@]}" --models "$m" --tag "device_check_$m"
    done
    check "flops: ${FLOPS_CMD[*]} --dry-run" "${FLOPS_CMD[@]}" --dry-run
    check "epoch: ${EPOCH_CMD[*]} --dry-run" "${EPOCH_CMD[@]}" --dry-run
    check "report: ${REPORT_CMD[*]} --dry-run" "${REPORT_CMD[@]}" --dry-run
    if [ "$FAILED" = 0 ]; then echo "dry run: every check passed"; else echo "dry run: FAILED"; fi
    exit "$FAILED"
fi

command -v nvidia-smi > /dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$LOG_DIR/nvidia-smi.txt" 2>&1
if [ -n "$WHEELS" ]; then
    stage wheels 120 "$PY" -m pip install -q --no-index --no-deps "$WHEELS"/*.whl
fi
if [ "$INSTALL" = 1 ]; then
    stage install 180 "${INSTALL_CMD[@]}"
else
    stage register 60 "${REGISTER_CMD[@]}"  # entry points of this checkout; fine if it fails
fi
if stage preflight 60 env JAX_PLATFORMS=cuda "${PREFLIGHT_CMD[@]}"; then
    stage tests 90 env JAX_PLATFORMS=cuda "${TEST_CMD[@]}"
    # torch and JAX share the GPU in compare_torch's worker: no JAX preallocation there.
    for m in "${COMPARE_MODELS[@]}"; do
        stage "compare_$m" 110 env JAX_PLATFORMS=cuda XLA_PYTHON_CLIENT_PREALLOCATE=false \
            "$PY" -m benchmarks.compare_torch "${COMPARE_ARGS[@]}" --models "$m" --tag "device_check_$m"
    done
    stage flops 75 env JAX_PLATFORMS=cuda "${FLOPS_CMD[@]}"
    stage epoch 100 env JAX_PLATFORMS=cuda "${EPOCH_CMD[@]}"
fi
stage report 20 "${REPORT_CMD[@]}"
echo "device check: $((SECONDS - START))s, logs in $LOG_DIR"
grep -h "device_check_" "$LOG_DIR/report.log" 2>/dev/null
exit "$FAILED"
