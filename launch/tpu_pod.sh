#!/usr/bin/env bash
# tpu_pod launcher: see launch/launch.py and docs/launch.md. Usage: launch/tpu_pod.sh --help
exec "${PYTHON:-python3}" "$(dirname "$0")/launch.py" tpu_pod "$@"
