#!/usr/bin/env bash
# Builds the libFuzzer target for URL parsing, request validation and policy
# decisions with clang (ASan + UBSan + libFuzzer) and runs it for a bounded time.
#   scripts/fuzz.sh [SECONDS] [--keep]   (default 60 s)
# With --keep, inputs that reach new code are merged into tests/fuzz/corpus.
# Not part of every CI run. Installs clang-14 and libclang-rt-14-dev when missing.
# A crash leaves its input (crash-*) in the work directory and fails the script.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
keep=${2:-}

scripts/setup.sh
missing=()
for p in clang-14 libclang-rt-14-dev; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

work=$(mktemp -d /tmp/egress-fuzz.XXXXXX)
mkdir -p "$work/gen" "$work/corpus"
protoc -I. -I/usr/include --cpp_out="$work/gen" proto/egress/v1/egress.proto
# shellcheck disable=SC2046
clang++-14 -std=c++17 -g -O1 -fsanitize=fuzzer,address,undefined \
  -fno-sanitize-recover=undefined \
  $(pkg-config --cflags protobuf absl_status absl_statusor absl_strings) \
  -I. -I"$work/gen" \
  tests/fuzz/request_fuzzer.cc service/request_validation.cc \
  service/destination_policy.cc service/http_types.cc \
  "$work/gen/proto/egress/v1/egress.pb.cc" \
  $(pkg-config --libs protobuf absl_status absl_statusor absl_strings \
      absl_str_format absl_cord) \
  -o "$work/request_fuzzer"

echo "fuzzing for ${seconds}s in $work"
cp tests/fuzz/corpus/* "$work/corpus/"
(cd "$work" && ./request_fuzzer -max_total_time="$seconds" -max_len=4096 \
   -print_final_stats=1 corpus 2>&1 | grep -E "^(Done|stat::|==|SUMMARY)|ERROR")
if [ "$keep" = "--keep" ]; then
  # Only inputs that add coverage: the corpus stays small.
  (cd "$work" && ./request_fuzzer -merge=1 "$OLDPWD/tests/fuzz/corpus" corpus) \
    >/dev/null 2>&1
fi
echo "corpus: $(ls tests/fuzz/corpus | wc -l) inputs in tests/fuzz/corpus"
