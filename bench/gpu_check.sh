#!/usr/bin/env bash
# The GPU check exactly as the device runs it (the lead passes `bash bench/gpu_check.sh` to the
# device tool with carry [".whl", "bench/out/gpu_payload"]). Prepared on the CPU first:
#   PYTHONPATH=. .venv/bin/python bench/gpu_payload.py prepare      # budgets + runs.json
#   wheels in .whl/ (pydantic, pydantic-core cp312, annotated-types, typing-inspection,
#   typing-extensions, liger-kernel): see bench/RESULTS.md "GPU (H200)".
# Writes into $OUT (at most 6 files): gpu_check.json (every number, written as measured),
# gpu_check.log, mini_study.tar.gz, pip.log, nvidia-smi.txt.
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:?OUT must name the output folder}
mkdir -p "$OUT"
nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl > "$OUT/pip.log" 2>&1 || echo "wheel install failed: pip.log"
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
# 470 s for the check (its sections sum to 430 s), so the command stays under 8 minutes;
# -k 10: SIGKILL 10 s after the SIGTERM if it hangs. Numbers so far are in gpu_check.json.
timeout -k 10 "${GPU_CHECK_TIMEOUT:-470}" python3 bench/gpu_check.py --out "$OUT" \
    --device cuda "$@" 2>&1 | tee "$OUT/gpu_check.log"
echo "gpu_check exit status: ${PIPESTATUS[0]}" | tee -a "$OUT/gpu_check.log"
