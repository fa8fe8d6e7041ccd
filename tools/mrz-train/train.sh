#!/usr/bin/env bash
# One-command, reproducible training of lib/kycgate-mrz/model/mrz_cnn.bin (or, with `line`, mrz_ctc.bin) (fixed seeds; ~25 min on 2 cores).
# Needs the OCR-B font (Debian: apt-get install fonts-ocr-b) and PyPI access for the pinned packages.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="${MRZ_TRAIN_VENV:-$here/.venv}"
if ! fc-list 2>/dev/null | grep -qi "OCR B"; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    apt-get update -qq && apt-get install -y -qq fonts-ocr-b
  else
    echo "install the OCR-B font first: apt-get install fonts-ocr-b" >&2
    exit 1
  fi
fi
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q -r "$here/requirements.txt"
fi
# `train.sh line ...` trains the line recogniser (train_line.py), otherwise the cell classifier.
script=train.py
if [ "${1:-}" = line ]; then
  script=train_line.py
  shift
fi
exec "$venv/bin/python" "$here/$script" "$@"
