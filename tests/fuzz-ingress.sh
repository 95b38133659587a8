#!/usr/bin/env bash
# Coverage-guided fuzzing (cargo fuzz, libFuzzer) of the ingress's HTTP/1 framing
# (crates/h1): request and response heads, and chunked bodies read whole against read in
# pieces. Starts from the seeds in fuzz/seeds; bounded: FUZZ_SECONDS (60 by default).
# A crash fails the run and leaves its input under fuzz/artifacts/.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    if [ -n "${CI:-}" ]; then echo "cargo fuzz (nightly) is required under CI (.ci/run installs it)" >&2; exit 1; fi
    echo "!!!! SKIPPED: fuzzing the ingress (needs rustup's nightly and cargo install cargo-fuzz) !!!!"
    exit 0
fi
corpus="$(mktemp -d)"
trap 'rm -rf "${corpus}"' EXIT
cp fuzz/seeds/ingress_h1/* "${corpus}/"
cargo +nightly fuzz run --fuzz-dir fuzz ingress_h1 "${corpus}" -- \
    -max_total_time="${FUZZ_SECONDS:-60}" -max_len=4096 -print_final_stats=1 2>&1 | tail -n 15
echo "--- the ingress's HTTP/1 framing: no crash in ${FUZZ_SECONDS:-60} s of fuzzing"
