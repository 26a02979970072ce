#!/usr/bin/env bash
# Set up and run the main job on the example lab:
#     sudo scripts/run-example.sh
# 1. scripts/setup.sh (Debian packages + .venv; root is needed only while something is missing)
# 2. vmsentry scan examples/lab              -> the text report on stdout
#    vmsentry scan ... --format json  -o out/example-report.json
#    vmsentry scan ... --format sarif -o out/example-report.sarif
# 3. vmsentry report examples/lab             -> out/report-scan.html (the scan report a person reads)
#    vmsentry report ... --framework F        -> out/report-F.html for each framework (mlps2-l3, nist-800-125b,
#                                                nist-800-207, gdpr, stig, checklist)
# Exit code: 0 when every scan exits 0 (no failing finding) or 1 (findings at or above --fail-on: the
# expected outcome for the example lab, which is insecure on purpose); otherwise the first other code
# (2 = some input could not be read, 3 = usage/fatal error).
set -euo pipefail
cd "$(dirname "$0")/.."
LAB=examples/lab
# for the tests: VMSENTRY_OUT (another folder), VMSENTRY_PYTHON (the interpreter, running `-m vmsentry`) and
# VMSENTRY_SKIP_SETUP=1 (the machine is set up already)
OUT=$(realpath -m "${VMSENTRY_OUT:-out}")
PY=${VMSENTRY_PYTHON:-.venv/bin/python}

[ "${VMSENTRY_SKIP_SETUP:-}" = 1 ] || bash scripts/setup.sh
mkdir -p "$OUT"

rc=0
ERR=$(mktemp -t vmsentry-example.XXXXXX)
trap 'rm -f "$ERR"' EXIT
# scan LABEL ARGS...: run one scan, keep the first exit code that is neither 0 nor 1.  A Python traceback
# also exits 1, so stderr is checked for one: the contract says a scan never ends in a traceback.
scan() {
  local label=$1 r=0; shift
  "$PY" -m vmsentry scan "$LAB" "$@" </dev/null 2>"$ERR" || r=$?
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

# report LABEL ARGS...: one `vmsentry report` of the lab; it exits 0 when written (2 = an input not read)
FRAMEWORKS=(mlps2-l3 nist-800-125b nist-800-207 gdpr stig checklist)
report() {
  local label=$1 r=0; shift
  "$PY" -m vmsentry report "$LAB" --no-progress "$@" </dev/null 2>"$ERR" || r=$?
  cat "$ERR" >&2
  if [ "$r" = 0 ] && ! grep -q '^Traceback (most recent call last)' "$ERR"; then
    echo "run-example: $label: written"
  else
    [ "$r" != 0 ] || r=3  # a traceback: a crash whatever the exit code
    echo "run-example: $label: FAILED with exit $r" >&2; [ "$rc" != 0 ] || rc=$r
  fi
}
report "scan report (HTML)" -o "$OUT/report-scan.html"
for fw in "${FRAMEWORKS[@]}"; do
  report "$fw report (HTML)" --framework "$fw" -o "$OUT/report-$fw.html"
done

echo "run-example: outputs:"
for f in "$OUT/report-scan.html" "${FRAMEWORKS[@]/#/$OUT/report-}"; do
  case $f in *.html) ;; *) f=$f.html ;; esac
  if [ -s "$f" ]; then echo "  $f ($(wc -c <"$f") bytes)"; else echo "  $f MISSING" >&2; [ "$rc" != 0 ] || rc=1; fi
done
for f in "$OUT/example-report.json" "$OUT/example-report.sarif"; do
  if [ ! -s "$f" ]; then
    echo "  $f MISSING" >&2; [ "$rc" != 0 ] || rc=1
  elif ! "$PY" -c 'import json, sys; json.load(open(sys.argv[1]))' "$f" 2>/dev/null; then
    echo "  $f is not valid JSON" >&2; [ "$rc" != 0 ] || rc=1
  else
    echo "  $f ($(wc -c <"$f") bytes)"
  fi
done
exit "$rc"
