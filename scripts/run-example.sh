#!/usr/bin/env bash
# Set up and run the main job on the example lab:
#     sudo scripts/run-example.sh
# 1. scripts/setup.sh (Debian packages + .venv; root is needed only while something is missing)
# 2. vmsentry scan examples/lab              -> the text report on stdout
#    vmsentry scan ... --format json  -o out/example-report.json
#    vmsentry scan ... --format sarif -o out/example-report.sarif
# Exit code: 0 when every scan exits 0 (no failing finding) or 1 (findings at or above --fail-on: the
# expected outcome for the example lab, which is insecure on purpose); otherwise the first other code
# (2 = some input could not be read, 3 = usage/fatal error).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
LAB=examples/lab
OUT=out

bash scripts/setup.sh
mkdir -p "$OUT"

rc=0
ERR=$(mktemp -t vmsentry-example.XXXXXX)
trap 'rm -f "$ERR"' EXIT
# scan LABEL ARGS...: run one scan, keep the first exit code that is neither 0 nor 1.  A Python traceback
# also exits 1, so stderr is checked for one: the contract says a scan never ends in a traceback.
scan() {
  local label=$1 r=0; shift
  .venv/bin/vmsentry scan "$LAB" "$@" </dev/null 2>"$ERR" || r=$?
  cat "$ERR" >&2
  if grep -q '^Traceback (most recent call last)' "$ERR"; then
    echo "run-example: $label: FAILED: vmsentry crashed (exit $r)" >&2
    [ "$rc" != 0 ] || rc=3
    return
  fi
  case $r in
    0) echo "run-example: $label: exit 0 (no failing finding)" ;;
    1) echo "run-example: $label: exit 1 (findings found: expected for the example lab)" ;;
    *) echo "run-example: $label: FAILED with exit $r" >&2; [ "$rc" != 0 ] || rc=$r ;;
  esac
}

echo "run-example: vmsentry scan $LAB"
scan "text report" --format text
scan "JSON report" --format json -o "$OUT/example-report.json"
scan "SARIF report" --format sarif -o "$OUT/example-report.sarif"

echo "run-example: outputs:"
for f in "$OUT/example-report.json" "$OUT/example-report.sarif"; do
  if [ ! -s "$f" ]; then
    echo "  $REPO/$f MISSING" >&2; [ "$rc" != 0 ] || rc=1
  elif ! .venv/bin/python -c 'import json, sys; json.load(open(sys.argv[1]))' "$f" 2>/dev/null; then
    echo "  $REPO/$f is not valid JSON" >&2; [ "$rc" != 0 ] || rc=1
  else
    echo "  $REPO/$f ($(wc -c <"$f") bytes)"
  fi
done
exit "$rc"
