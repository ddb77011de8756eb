#!/usr/bin/env bash
# The kernels' half of the project's GPU check (../gpu_check.sh): real-kernel tests + benchmark only.
#   OUT=/tmp/out bash kernels/gpu_check.sh
ONLY=kernels exec bash "$(dirname "$0")/../gpu_check.sh" "$@"
