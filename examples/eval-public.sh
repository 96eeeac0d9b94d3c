#!/usr/bin/env bash
# Benchmark: the default plugins on the public labeled data in ../shared/data.
# Opt-in (not part of tests/run.sh). Trains on train (+dev), reports on test; the data is read
# in place and never copied. Reports land in $CARGO_TARGET_DIR/eval-public/<dataset>/.
#
# Usage: examples/eval-public.sh [DATASET...]   (default: all present)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/deskhost/target}"
data="$(cd "${DESKHOST_DATA:-../shared/data}" 2>/dev/null && pwd || true)"
if [ -z "$data" ]; then
  echo "skipping the public benchmarks: ../shared/data is not here (set DESKHOST_DATA to point at it)" >&2
  exit 0
fi
step() { printf '\n== %s\n' "$*" >&2; }

rustup target add wasm32-wasip2 >/dev/null 2>&1 || rustup target add wasm32-wasip2
cargo build --quiet --profile plugin --target wasm32-wasip2 -p deskhost-triage -p deskhost-reply -p deskhost-escalation
# tests/run.sh passes the binary its test step already built (DESKHOST_BIN): a plain
# `cargo build -p deskhost` resolves features differently and would build it again.
if [ -n "${DESKHOST_BIN:-}" ] && [ -x "$DESKHOST_BIN" ]; then
  deskhost="$DESKHOST_BIN"
else
  cargo build --quiet --release -p deskhost
  deskhost="$CARGO_TARGET_DIR/release/deskhost"
fi
plugins="$CARGO_TARGET_DIR/wasm32-wasip2/plugin"
out="$CARGO_TARGET_DIR/eval-public"
# Manual baseline for data without handle times: 6 minutes per ticket (a flag, not a fact).
manual="${DESKHOST_MANUAL_SECONDS:-360}"
wanted=("$@")
want() { [ ${#wanted[@]} -eq 0 ] && return 0; for w in "${wanted[@]}"; do [ "$w" = "$1" ] && return 0; done; return 1; }
have() { [ -e "$data/$1" ] || { echo "skipping $1: not in $data" >&2; return 1; }; }

workspace() {
  "$deskhost" init "$1" --from examples/eval-workspace --plugins "$plugins" --force >/dev/null
}

classification() { # dataset fields
  local name=$1 fields=$2 ws="$out/$1/workspace" dev=()
  want "$name" && have "$name" || return 0
  step "$name: train on train, report on test ($fields)"
  workspace "$ws"
  [ -f "$data/$name/dev.jsonl" ] && dev=(--dev "$data/$name/dev.jsonl")
  "$deskhost" -w "$ws" train "$data/$name/train.jsonl" "${dev[@]}" --fields "$fields" --name "$name"
  "$deskhost" -w "$ws" eval "$data/$name/test.jsonl" --fields "$fields" --manual-seconds "$manual" --out "$out/$name"
}

classification banking77 intent
classification airline-tweets sentiment,reason
classification tickets-multilang queue,priority,type

if want kb-banking && have kb-banking; then
  step "kb-banking: retrieval of the required articles for each scenario"
  ws="$out/kb-banking/workspace"
  workspace "$ws"
  "$deskhost" -w "$ws" train examples/workspace/history.jsonl --fields category --name retrieval-only >/dev/null
  "$deskhost" -w "$ws" kb import "$data/kb-banking/articles.jsonl"
  "$deskhost" -w "$ws" eval "$data/kb-banking/scenarios.jsonl" --manual-seconds "$manual" --out "$out/kb-banking"
fi

if want tweetsumm && have tweetsumm; then
  step "tweetsumm: hand-off summaries against the human summaries (and lead-3)"
  ws="$out/tweetsumm/workspace"
  workspace "$ws"
  "$deskhost" -w "$ws" train examples/workspace/history.jsonl --fields category --name summaries-only >/dev/null
  "$deskhost" -w "$ws" eval "$data/tweetsumm/test.jsonl" --manual-seconds "$manual" --out "$out/tweetsumm"
fi
step "reports in $out/*/report.html"
