#!/usr/bin/env bash
# local launcher: see launch/launch.py and docs/launch.md. Usage: launch/local.sh --help
exec "${PYTHON:-python3}" "$(dirname "$0")/launch.py" local "$@"
