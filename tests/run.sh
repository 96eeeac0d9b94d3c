#!/usr/bin/env bash
# The test command. CI runs it through .ci/run; run it yourself from a fresh clone.
#
# It installs what it needs (the wasm32-wasip2 target, chromium + chromium-driver, postgresql,
# request-tracker5, componentize-py
# from PyPI, jco + componentize-js from npm), checks formatting and lints, builds the plugin
# components once (Rust, Python, JavaScript), then runs every unit and end-to-end test, the
# end-to-end suite a second time on PostgreSQL. Builds go to
# $CARGO_TARGET_DIR (default ~/.cache/deskhost/target, outside the clone) so reruns are
# incremental. It ends with the public-data benchmark (examples/eval-public.sh), which fits
# the time budget and skips itself when ../shared/data is not there.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/deskhost/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
step() { printf '\n== %s\n' "$*" >&2; }
started=$SECONDS

step "toolchain"
rustup target add wasm32-wasip2
rustup component add rustfmt clippy >/dev/null 2>&1 || true
# The HTML report and the review UI are tested in a real browser: Debian's chromium, driven
# through WebDriver by its chromedriver (the tests start and stop it on 127.0.0.1).
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
  sudo_=""; [ "$(id -u)" -ne 0 ] && sudo_="sudo"
  $sudo_ apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq chromium chromium-driver >/dev/null
fi
export DESKHOST_REQUIRE_BROWSER=1
# The store tests and the second end-to-end pass run on a real PostgreSQL: Debian's
# `postgresql` binaries (initdb/postgres), started by the tests themselves in a temporary
# directory on 127.0.0.1 (no system service is used).
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  sudo_=""; [ "$(id -u)" -ne 0 ] && sudo_="sudo"
  $sudo_ apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq postgresql >/dev/null
fi
export DESKHOST_REQUIRE_POSTGRES=1
# The help-desk connector is tested against a real Request Tracker 5: Debian's
# `request-tracker5` with its SQLite backend; the test starts its own `rt-server` with its own
# database in a temporary directory (tests/support/rt.rs), not the system one.
if [ ! -x /usr/share/request-tracker5/libexec/rt-server ] || [ ! -x /usr/sbin/rt-setup-database-5 ]; then
  sudo_=""; [ "$(id -u)" -ne 0 ] && sudo_="sudo"
  $sudo_ apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq request-tracker5 rt5-db-sqlite >/dev/null
fi
export DESKHOST_REQUIRE_RT=1

step "format"
cargo fmt --all -- --check

step "plugins (wasm32-wasip2, built once for the whole run)"
plugins=(-p deskhost-sdk -p deskhost-triage -p deskhost-reply -p deskhost-escalation -p deskhost-probe)
cargo build --locked --profile plugin --target wasm32-wasip2 "${plugins[@]}"

step "Python and JavaScript example plugins (componentize-py, componentize-js; tools cached outside the clone)"
examples/plugins/build.sh
export DESKHOST_REQUIRE_LANG_PLUGINS=1

step "lint"
cargo clippy --locked --workspace --all-targets --all-features -- -D warnings
cargo clippy --locked --target wasm32-wasip2 "${plugins[@]}" -- -D warnings

step "tests (unit tests of every crate + end-to-end through the built binary)"
# Release: the end-to-end tests compile and run Wasm, which a debug Cranelift makes slow;
# the release artifacts are shared with the demo build.
cargo test --locked --release --workspace --exclude deskhost-probe --all-features

step "end-to-end again, every workspace on PostgreSQL (the multi-worker and Request Tracker tests ran above; the outbox's SQL is in the store conformance suite)"
DESKHOST_TEST_BACKEND=postgres cargo test --locked --release -p deskhost --test e2e -- --skip workers --skip rt::

step "benchmark on ../shared/data (about 1.5 minutes; skipped when the data is absent)"
DESKHOST_BIN="$CARGO_TARGET_DIR/release/deskhost" examples/eval-public.sh

step "done in $((SECONDS - started))s"
