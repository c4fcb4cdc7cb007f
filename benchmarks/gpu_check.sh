#!/usr/bin/env bash
# Every CUDA path of zsvqa with random weights, each step isolated and timed out, in under 8 minutes on one GPU;
# one JSON report (default runs/gpu_check.json). The logic is benchmarks/gpu_check.py; `--help` lists the options.
# Exit codes: 0 all passed; 1 a step failed, timed out or was not run (or a bad option); 2 usage; 3 no CUDA GPU.
# Python: $PYTHON, else the project's .venv, else python3.
cd "$(dirname "$0")/.." || exit 1
if [ -z "${PYTHON:-}" ]; then
    if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
exec "$PYTHON" benchmarks/gpu_check.py "$@"
