#!/usr/bin/env bash
# Set up the peers' bench venv and models, outside the repo. Never run in CI: the llama-cpp-python build alone
# takes ~10 minutes on 2 cores (more on a busy machine). Re-running skips what is already there.
#   BENCH_VENV   (default /work/bench-venv)    the peers' venv; never the project's .venv: PyPI's `mistralrs`
#                                              (mistral.rs) has the same import name as this project
#   BENCH_MODELS (default /work/bench-models)  HF conversion, ORT GenAI builds (bench/cpu.py compiles ours there)
#   PROJECT_PY   (default .venv/bin/python)    the project's python, to locate the bundled GGUF
set -euo pipefail
cd "$(dirname "$0")/../.."
REPO=$(pwd)
BENCH_VENV=${BENCH_VENV:-/work/bench-venv}
BENCH_MODELS=${BENCH_MODELS:-/work/bench-models}
PROJECT_PY=${PROJECT_PY:-$REPO/.venv/bin/python}
LOGS=$BENCH_MODELS/logs
mkdir -p "$BENCH_MODELS" "$LOGS"
GGUF=$("$PROJECT_PY" -c "from mistralrs.default_model import default_model_path; print(default_model_path())")

[ -x "$BENCH_VENV/bin/python" ] || python3 -m venv "$BENCH_VENV"
PIP="$BENCH_VENV/bin/pip"
# torch first, pinned to the local CPU wheel; the constraint keeps any later install from pulling another torch.
CONSTRAINTS=$BENCH_VENV/constraints.txt
echo "torch==2.13.0" > "$CONSTRAINTS"
"$PIP" install -q -c "$CONSTRAINTS" "torch==2.13.0"

# llama-cpp-python from its sdist, native CPU build (the long pole: run it in the background, log to a file).
LLAMA_LOG=$LOGS/llama-cpp-build.log
# On CPUs with AMX (Sapphire Rapids and later), the native build's AMX kernels crash with a segmentation fault at the
# first decode here (KVM guests), so AMX is left out and the rest of the native ISA (AVX-512, VNNI) kept.
NO_AMX=""
grep -q amx_int8 /proc/cpuinfo && NO_AMX="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
if ! "$BENCH_VENV/bin/python" -c "import llama_cpp" 2>/dev/null; then
  CFLAGS="$NO_AMX" CXXFLAGS="$NO_AMX" CMAKE_ARGS="-DGGML_NATIVE=ON -DGGML_OPENMP=ON -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF" \
  CMAKE_BUILD_PARALLEL_LEVEL=2 FORCE_CMAKE=1 \
    "$PIP" install -v --no-cache-dir --no-binary llama-cpp-python -c "$CONSTRAINTS" "llama-cpp-python[server]==0.3.36" \
    > "$LLAMA_LOG" 2>&1 &
  LLAMA_PID=$!
  echo "building llama-cpp-python in the background (log: $LLAMA_LOG)"
fi

"$PIP" install -q -c "$CONSTRAINTS" "mistralrs==0.9.5" "onnxruntime-genai==0.18.0" "transformers==5.23.0" \
  accelerate "gguf==0.19.0" sentencepiece onnx onnx-ir onnxscript numpy

# The fp32 HF conversion of the same GGUF (transformers' dequantization), then ORT GenAI's builds of it:
# int4 with algo_config=k_quant (its default int4 build of this already-4-bit model drifts) and fp32.
HF=$BENCH_MODELS/smollm2-hf
[ -f "$HF/model.safetensors" ] || "$BENCH_VENV/bin/python" "$REPO/bench/peers/convert_gguf.py" "$GGUF" "$HF"
build_ort() {  # out precision extra_options...
  local out=$1 precision=$2; shift 2
  [ -f "$out/genai_config.json" ] && return
  (cd / && "$BENCH_VENV/bin/python" -m onnxruntime_genai.models.builder -i "$HF" -o "$out" -p "$precision" -e cpu \
     -c "$BENCH_MODELS/.ort-cache" --extra_options hf_token=false "$@") > "$LOGS/ort-$precision.log" 2>&1
}
build_ort "$BENCH_MODELS/ort-int4-kquant" int4 algo_config=k_quant
build_ort "$BENCH_MODELS/ort-fp32" fp32

if [ -n "${LLAMA_PID:-}" ]; then
  echo "waiting for the llama-cpp-python build ..."
  wait "$LLAMA_PID" || { echo "llama-cpp-python build failed: see $LLAMA_LOG"; exit 1; }
fi
"$BENCH_VENV/bin/python" -c "import llama_cpp, mistralrs, onnxruntime_genai, transformers; print('bench venv ready')"
