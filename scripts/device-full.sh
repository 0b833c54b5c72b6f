#!/usr/bin/env bash
# The CUDA side of the reference bundle (#12), as run on a lent GPU machine with one short lease:
# three claims sessions in parallel (one per group of systems, each with its own store so no two
# coordinators share a file), plus the unit tests once. Every session stops itself in time, so the
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
session() {  # name, workers, ledger paths...
  local name=$1 workers=$2; shift 2
  # Resume: the committed CUDA bundle's runs are stored already (those of current code are skipped).
  [ -f results/cuda-full.json ] && $py -m verify import --results "$out/$name.sqlite" results/cuda-full.json > /dev/null
  timeout -k 15 "$limit" $py -m pytest -p verify.pytest_plugin -p no:cacheprovider -q -rN "$@" --device "${DEVICE:-cuda}" \
    --profile full --workers "$workers" --threads 1 --results "$out/$name.sqlite" \
    --verdicts-json "/tmp/$name-verdicts.json" --report-html "/tmp/$name.html" > "/tmp/$name.log" 2>&1
  echo "exit $?" >> "/tmp/$name.log"
}
# The ResNet table needs CUDA (no CPU verdict exists): its own session, started at once.
session resnet 5 claims/dtgma -k resnet &
session sparse 5 claims/sparse_synapses &
session dtgma 4 claims/dtgma -k "not resnet" &
session others 2 claims/anastrophic claims/mygo &
OMP_NUM_THREADS=1 timeout -k 15 "$limit" $py -m pytest -q -p no:cacheprovider tests >> "$out/tests.log" 2>&1
echo "tests exit $?" >> "$out/tests.log"
wait
for name in resnet sparse dtgma others; do echo "=== $name"; cat "/tmp/$name.log"; done > "$out/claims.log"
