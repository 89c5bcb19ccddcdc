#!/usr/bin/env bash
# Runs the whole suite once per given binary (normal, then ASan+UBSan) with the
# services the tests need, and ends with one line "N passed, N failed" over all
# runs.  Exits non-zero on any failure, error or crashed run.
set -u
cd "$(dirname "$0")/.."
total_passed=0
total_failed=0
status=0
counts=$(mktemp)
lab_dir=build/lab
# the lab (fake Proxmox & co): started once for both suites, stopped by PID
make --no-print-directory lab LAB_DIR=$lab_dir || { echo "0 passed, 1 failed"; exit 1; }
trap 'rm -f "$counts"; make --no-print-directory lab-stop LAB_DIR=$lab_dir' EXIT
for bin in "$@"; do
  echo "=== suite: $bin"
  rm -f "$counts"
  env_extra=()
  case "$bin" in
    *asan*) env_extra=(ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:detect_odr_violation=0
                       LSAN_OPTIONS=suppressions=tests/lsan.supp:print_suppressions=0
                       UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1) ;;
  esac
  env "${env_extra[@]}" TLR_TEST_COUNTS="$counts" TLR_BIN="$bin" TLR_LAB_ENV="$lab_dir/env" \
    "$bin" tests/run.lua
  rc=$?
  if [ ! -s "$counts" ]; then
    echo "suite $bin crashed (exit $rc) before reporting its counts"
    status=1
    total_failed=$((total_failed + 1))
    continue
  fi
  read -r p f < "$counts"
  total_passed=$((total_passed + p))
  total_failed=$((total_failed + f))
  if [ "$rc" -ne 0 ] || [ "$f" -ne 0 ]; then status=1; fi
done
make --no-print-directory lab-stop LAB_DIR=$lab_dir
trap 'rm -f "$counts"' EXIT
echo "${total_passed} passed, ${total_failed} failed"
exit $status
