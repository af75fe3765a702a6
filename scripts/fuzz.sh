#!/bin/sh
# Builds every libFuzzer target in tests/fuzz with clang in build-fuzz and runs each for KRING_FUZZ_SECONDS (default 30) seconds.
# KRING_FUZZ_ONLY="checkpoint_fuzz records_fuzz" limits the run to those targets.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
build="$root/build-fuzz"
seconds=${KRING_FUZZ_SECONDS:-30}
only=${KRING_FUZZ_ONLY:-}

# A fuzz target is tests/fuzz/NAME.cc with an add_executable(NAME ...) in tests/CMakeLists.txt.
targets=""
for src in "$root"/tests/fuzz/*_fuzz.cc; do
  [ -e "$src" ] || continue
  name=$(basename "$src" .cc)
  if [ -n "$only" ] && ! echo " $only " | grep -q " $name "; then
    continue
  fi
  if grep -q "add_executable($name " "$root/tests/CMakeLists.txt"; then
    targets="$targets $name"
  else
    echo "fuzz: $name.cc has no target in tests/CMakeLists.txt; skipped" >&2
  fi
done
if [ -z "$targets" ]; then
  echo "fuzz: no fuzz targets found" >&2
  exit 1
fi

CC=clang CXX=clang++ cmake -S "$root" -B "$build" -DKRING_FUZZ=ON -DKRING_BUILD_EXAMPLES=OFF >/dev/null
# shellcheck disable=SC2086  # $targets is a list of names
cmake --build "$build" --target $targets -j "${KRING_FUZZ_JOBS:-2}"

# Undefined behaviour is a finding too, not a warning to scroll past.
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}"
failed=""
for name in $targets; do
  corpus="$build/corpus/$name"      # kept between runs; the target seeds it when empty
  artifacts="$build/artifacts/$name/"
  log="$build/logs/$name.log"
  mkdir -p "$corpus" "$artifacts" "$(dirname "$log")"
  echo "fuzz: running $name for ${seconds}s (log: $log)" >&2
  if "$build/tests/$name" "$corpus" -max_total_time="$seconds" -print_final_stats=1 \
       -artifact_prefix="$artifacts" >"$log" 2>&1; then
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    units=$(find "$corpus" -type f | wc -l)
    echo "fuzz: $name ok: $runs executions, corpus of $units inputs" >&2
  else
    echo "fuzz: $name FAILED; reproducer in $artifacts; end of log:" >&2
    tail -n 30 "$log" >&2
    failed="$failed $name"
  fi
done
if [ -n "$failed" ]; then
  echo "fuzz: failures in:$failed" >&2
  exit 1
fi
echo "fuzz: all targets passed" >&2
