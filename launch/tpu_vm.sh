#!/usr/bin/env bash
# tpu_vm launcher: see launch/launch.py and docs/launch.md. Usage: launch/tpu_vm.sh --help
exec "${PYTHON:-python3}" "$(dirname "$0")/launch.py" tpu_vm "$@"
