#!/usr/bin/env bash
# gpu launcher: see launch/launch.py and docs/launch.md. Usage: launch/gpu.sh --help
exec "${PYTHON:-python3}" "$(dirname "$0")/launch.py" gpu "$@"
