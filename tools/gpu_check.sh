#!/usr/bin/env bash
# The device checks of a lent GPU machine, in one call (docs: README "GPU"):
#   1. pytest -m gpu (the CUDA paths against the CPU ones),
#   2. the default pipeline with device: cuda, from scratch, timed,
#   3. the stitching, similarity and subspace benchmarks on CUDA.
# Each step has its own time limit so that one hang cannot eat the others. Logs and a tarball of
# results/ (tables, figures, job logs; no activation caches or checkpoints) go to $OUT.
# Missing Python packages travel as wheels in .whl/ (see .library device notes); the machine has
# torch, numpy, pandas, matplotlib, pyarrow, scipy, pytest.
set -u
OUT=${OUT:-/tmp/gpu_check}
mkdir -p "$OUT"
exec > >(tee "$OUT/check.log") 2>&1
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD/src:${PYTHONPATH:-} PYTHONUNBUFFERED=1 PATH=/tmp/site/bin:$PATH
step() { echo; echo "=== $1 ($(date +%T))"; }
step "device"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
python3 -c "import torch, numpy, pandas; print('torch', torch.__version__, torch.cuda.get_device_name(), 'numpy', numpy.__version__, 'pandas', pandas.__version__)"
step "pytest -m gpu"
time timeout "${T_TEST:-150}" python3 -m pytest -m gpu -q -p no:cacheprovider -rs tests/backbone/test_cuda.py tests/similarity/test_similarity_grid.py tests/foundations/test_device.py
step "default pipeline, device: cuda"
rm -rf results .snakemake
time timeout "${T_PIPE:-270}" python3 -m snakemake --cores "$(nproc)" --keep-going --config device=cuda
tar czf "$OUT/results.tgz" --exclude='*.npy' --exclude='*.pt' --exclude='*.pth' results 2>/dev/null
[ -n "${SKIP_BENCH:-}" ] && { step "done (benchmarks skipped)"; exit 0; }
step "bench_stitching --quick --cuda-only"
time timeout "${T_BENCH:-45}" python3 benchmarks/bench_stitching.py --quick --cuda-only
step "bench_similarity --cuda-only"
time timeout "${T_BENCH:-45}" python3 benchmarks/bench_similarity.py --cuda-only --all-measures
step "bench_subspace --quick --only 13"
time timeout "${T_BENCH:-45}" python3 benchmarks/bench_subspace.py --quick --only 13
step "done"
