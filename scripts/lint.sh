#!/usr/bin/env bash
# The code checks CI runs beside the tests (scripts/setup.sh installs the tools into .venv):
#   1. lint-imports   the stages' import contract (pyproject.toml [tool.importlinter], docs/architecture.md)
#   2. ruff check     lint (pyproject.toml [tool.ruff.lint])
#   3. ruff format --check   every file formatted as `ruff format` would write it
# Exit 0 when all three pass, 1 otherwise (each is run, so one run shows every problem).
set -uo pipefail
cd "$(dirname "$0")/.."
rc=0
echo "lint: import contract"
PYTHONPATH=src .venv/bin/lint-imports --no-cache || rc=1
echo "lint: ruff check"
.venv/bin/ruff check src tests benchmarks scripts || rc=1
echo "lint: ruff format --check"
.venv/bin/ruff format --check src tests benchmarks scripts || rc=1
echo "lint: $([ "$rc" = 0 ] && echo ok || echo FAILED)"
exit "$rc"
