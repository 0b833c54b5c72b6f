#!/usr/bin/env bash
# The CUDA side of the reference bundle (#12), as run on a lent GPU machine with one short lease:
# claims sessions in parallel (SESSIONS below; each with its own store so no two coordinators share
# a file), plus the unit tests once. Every session stops itself in time, so the
# stores always come back; what finished is kept, what did not stays pending for the next lease.
# Afterwards, here: python -m verify bundle build <stores> --device cuda --out results/cuda-full.json
#   --update-baseline, then python -m verify summary --readme README.md.
#   OUT=<folder> CLAIMS_DATA_DIR=... CLAIMS_SEEDS_DIR=... bash scripts/device-full.sh [seconds]
set -u
limit=${1:-470}
out=${OUT:?set OUT to the folder that receives the stores and logs}
py=${PYTHON:-python3}
export PYTHONPATH=. PYTHONUNBUFFERED=1
{ date -u; nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1
  $py -c 'import torch,sys; print("python", sys.version.split()[0], "torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name(0))'
  nproc; } > "$out/tests.log" 2>&1
# The plugin by module where the project is not installed (the GPU machine); installed, its entry point loads it.
plugin=$($py -c 'import importlib.metadata as m; print("" if any(e.name == "claims" for e in m.entry_points(group="pytest11")) else "-p verify.pytest_plugin")')
session() {  # name, workers, ledger paths...
  local name=$1 workers=$2; shift 2
  # Resume: the committed CUDA bundle's runs are stored already (those of current code are skipped).
  [ -f results/cuda-full.json ] && $py -m verify import --results "$out/$name.sqlite" results/cuda-full.json > /dev/null
  timeout -k 15 "$limit" $py -m pytest $plugin -p no:cacheprovider -q -rN "$@" --device "${DEVICE:-cuda}" \
    --profile full --workers "$workers" --threads 1 --results "$out/$name.sqlite" \
    --verdicts-json "/tmp/$name-verdicts.json" --report-html "/tmp/$name.html" > "/tmp/$name.log" 2>&1
  echo "exit $?" >> "/tmp/$name.log"
}
# Which sessions, in parallel (SESSIONS, default: the work only a GPU can afford). Last lease's
# lesson: 16 processes time-slicing one GPU left the ResNet table and the 6-arm sparse MLP with nothing
# finished in 525 s, while DTG-MA's MLP tables, Anastrophic and MyGO have full CPU verdicts. So by
# default the GPU gets the ResNet tables and sparse synapses, each with few workers, and the DTG-MA
# experiments that take hours on CPU (scalability, freeze ablation); `-m tier_full` skips CI proxies.
run_named() {
  case $1 in
    resnet) session resnet 2 claims/dtgma -m tier_full -k resnet ;;
    sparse) session sparse 2 claims/sparse_synapses -m tier_full ;;
    dtgma-long) session dtgma-long 3 claims/dtgma -m tier_full -k "scalability or freeze" ;;
    dtgma) session dtgma 4 claims/dtgma -k "not resnet" ;;
    others) session others 2 claims/anastrophic claims/mygo ;;
    # SGM: its numpy experiments are keyed "any" with this machine's torch version, so they run here
    # on CPU cores beside the GPU work; gradient masking trains its seeds batched on the GPU.
    sgm) session sgm 4 claims/sgm ;;
    *) echo "unknown session $1" >&2 ;;
  esac
}
sessions=${SESSIONS:-resnet sparse dtgma-long sgm}
for name in $sessions; do run_named "$name" & done
OMP_NUM_THREADS=1 timeout -k 15 "$limit" $py -m pytest -q -p no:cacheprovider tests >> "$out/tests.log" 2>&1
echo "tests exit $?" >> "$out/tests.log"
# Then, in the time left, the seed-batching ratios (#10's 10x target), 5 seeds batched against one at a
# time, alternating in each round (the sessions above share the GPU: both sides see the same load); as a
# script, since the GPU machine's python has pytest but not pytest-benchmark.
left=$(( limit - SECONDS - 20 ))
if [ "$left" -gt 60 ]; then
  timeout -k 15 "$left" $py benchmarks/test_seed_batching.py --json "$out/seed-batching.json" > "$out/bench.log" 2>&1
  echo "benchmarks exit $?" >> "$out/bench.log"
fi
wait
for name in $sessions; do echo "=== $name"; cat "/tmp/$name.log"; done > "$out/claims.log"
