#!/usr/bin/env bash
# The test command: static checks (ruff, mypy --strict, import-linter layers), the lab's Go
# builds (cached by version; a no-op when warm), then pytest (unit tests and lab tests against
# one lab started for the whole run). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
echo "== ruff" && ruff check src tests
echo "== mypy --strict" && mypy
echo "== import-linter" && lint-imports
echo "== lab build" && k3sops lab build
# Two xdist workers, each with its own lab (tests/conftest.py): most lab tests wait on
# controllers, not the CPU; whole test files stay on one worker (--dist loadfile).
echo "== pytest" && python -m pytest -n 2 --dist loadfile "$@"
