#!/bin/bash
# Issue 10 (reliability): every fault-injection and fuzz test, with the "fuzzed cases" table
# (cases tried per input class and how they ended) that pytest prints at the end.
#   CLOWLAB_FAULT_SEED=N        other kill moments for tests/test_faults.py
#   HYPOTHESIS_PROFILE=explore  fresh random fuzz cases, 500 per test (CI: derandomized)
set -euo pipefail
python -m pytest -q -p no:cacheprovider -rA \
  tests/test_faults.py tests/test_fuzz_config.py tests/test_fuzz_data.py tests/test_fuzz_hf.py \
  tests/test_fuzz_checkpoint.py tests/test_checkpoint.py tests/test_checkpoint_compat.py "$@"
