#!/usr/bin/env bash
# The course's test script: hw7_test.sh <data dir> <pred.csv> [model file]
# Fails (non-zero exit, one line) when the model file is over 300,000 bytes.
set -euo pipefail
cd "$(dirname "$0")/../.."
python -m amc.predict "data.root=$1" "output=$2" "model_file=${3:-model_uint8.pt}" max_bytes=300000
