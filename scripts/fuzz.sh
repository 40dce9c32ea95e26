#!/usr/bin/env bash
# Builds egress's libFuzzer targets with clang (ASan + UBSan + libFuzzer) and runs
# each for a bounded time:
#   request   URL parsing, request validation and policy decisions
#             (tests/fuzz/request_fuzzer.cc, seeds in tests/fuzz/corpus)
#   response  arbitrary bytes from an upstream into an HttpSession
#             (tests/fuzz/response_fuzzer.cc, seeds in tests/fuzz/response_corpus)
#   policy    the policy files' parsers: identity file, host patterns, port
#             and CIDR lists (tests/fuzz/policy_fuzzer.cc, tests/fuzz/policy_corpus)
#   h2        a caller's HTTP/2 bytes into H2Guard, the gRPC port's front
#             (tests/fuzz/h2_fuzzer.cc, tests/fuzz/h2_corpus)
# Usage: scripts/fuzz.sh [request|response|policy|h2|all] [SECONDS] [--keep]
#   (default: all, 60 s each). .ci/run runs each target for 30 s.
# With --keep, inputs that reach new code are merged into the seed corpus.
# Installs clang-14 and libclang-rt-14-dev when missing. A crash leaves its input
# (crash-*) in the work directory, prints it, and fails the script.
set -euo pipefail
cd "$(dirname "$0")/.."
target=${1:-all}
seconds=${2:-60}
keep=${3:-}
case "$target" in
  request | response | policy | h2) targets=("$target") ;;
  all) targets=(request response policy h2) ;;
  *) echo "usage: scripts/fuzz.sh [request|response|policy|h2|all] [SECONDS] [--keep]" >&2; exit 2 ;;
esac

scripts/setup.sh
missing=()
for p in clang-14 libclang-rt-14-dev; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

work=$(mktemp -d /tmp/egress-fuzz.XXXXXX)
flags=(-std=c++17 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -I.)
absl_modules=(absl_status absl_statusor absl_strings absl_str_format absl_cord)

# The .cc files of //service that the targets in the query expression $1 are
# built from, as Bazel knows them, so that a unit split out of them is
# compiled here too.
service_sources() {
  bazel query --noshow_progress \
    "kind('source file', deps($1)) intersect //service/...:*" 2>/dev/null |
    sed -n 's|^//\(service[^:]*\):\(.*\.cc\)$|\1/\2|p'
}

# -D flags for the defines of //third_party/httplib, asked from Bazel so that
# the fuzzer's httplib is laid out as egressd's.
httplib_defines() {
  bazel query --noshow_progress --output=build //third_party/httplib:httplib 2>/dev/null |
    sed -n 's/^ *defines = \[\(.*\)\],$/\1/p' | tr -d '" ' | tr ',' '\n' | sed 's/^/-D/'
}

# The C++ code of the protos every target needs (egress.v1, and the
# google.rpc details that service/base/error_details uses), into $work/gen.
gen_protos() {
  mkdir -p "$work/gen"
  protoc -I. -I/usr/include --cpp_out="$work/gen" proto/egress/v1/egress.proto \
    third_party/googleapis/google/rpc/status.proto \
    third_party/googleapis/google/rpc/error_details.proto
  find "$work/gen" -name '*.pb.cc' | sort
}

build_request() {
  # shellcheck disable=SC2046
  clang++-14 "${flags[@]}" -I"$work/gen" $(pkg-config --cflags protobuf "${absl_modules[@]}") \
    tests/fuzz/request_fuzzer.cc \
    $(service_sources "//service/admission:request_validation + //service/policy:destination_policy") \
    $(gen_protos) \
    $(pkg-config --libs protobuf "${absl_modules[@]}") \
    -o "$work/request_fuzzer"
}

build_response() {
  local defines
  defines=$(httplib_defines)
  [ -n "$defines" ] || { echo "fuzz.sh: no defines from //third_party/httplib" >&2; exit 1; }
  # shellcheck disable=SC2046,SC2086
  clang++-14 "${flags[@]}" -Ithird_party/httplib/src -I"$work/gen" $defines \
    $(pkg-config --cflags openssl protobuf "${absl_modules[@]}") \
    tests/fuzz/response_fuzzer.cc third_party/httplib/src/httplib.cc \
    $(service_sources //tests/fakes:session_calls) $(gen_protos) \
    $(pkg-config --libs openssl protobuf "${absl_modules[@]}" absl_flat_hash_map \
        absl_synchronization absl_time) -lpthread \
    -o "$work/response_fuzzer"
}

build_policy() {
  # shellcheck disable=SC2046
  clang++-14 "${flags[@]}" -I"$work/gen" $(pkg-config --cflags protobuf "${absl_modules[@]}") \
    tests/fuzz/policy_fuzzer.cc \
    $(service_sources "//service/policy:policy_files") $(gen_protos) \
    $(pkg-config --libs protobuf "${absl_modules[@]}") \
    -o "$work/policy_fuzzer"
}

build_h2() {
  # shellcheck disable=SC2046
  clang++-14 "${flags[@]}" $(pkg-config --cflags "${absl_modules[@]}") \
    tests/fuzz/h2_fuzzer.cc $(service_sources //service/front:h2_guard) \
    $(pkg-config --libs "${absl_modules[@]}" absl_raw_hash_set absl_hash) \
    -o "$work/h2_fuzzer"
}

status=0
for t in "${targets[@]}"; do
  corpus=tests/fuzz/corpus
  [ "$t" = response ] && corpus=tests/fuzz/response_corpus
  [ "$t" = policy ] && corpus=tests/fuzz/policy_corpus
  [ "$t" = h2 ] && corpus=tests/fuzz/h2_corpus
  "build_$t"
  mkdir -p "$work/$t-corpus"
  cp "$corpus"/* "$work/$t-corpus/"
  echo "fuzz $t: ${seconds}s in $work"
  if ! (cd "$work" && "./${t}_fuzzer" -max_total_time="$seconds" -max_len=4096 \
          -timeout=10 -print_final_stats=1 "$t-corpus" >"$t.log" 2>&1); then
    status=1
    grep -E "^(==|SUMMARY)|ERROR|crash-|timeout-" "$work/$t.log" | head -40
  fi
  grep -E "^(Done|stat::number_of_executed_units|stat::peak_rss_mb)" "$work/$t.log" || true
  if [ "$keep" = "--keep" ]; then
    # Only inputs that add coverage: the corpus stays small.
    (cd "$work" && "./${t}_fuzzer" -merge=1 "$OLDPWD/$corpus" "$t-corpus") >/dev/null 2>&1
    echo "corpus: $(ls "$corpus" | wc -l) inputs in $corpus"
  fi
done
exit "$status"
