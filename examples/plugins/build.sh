#!/usr/bin/env bash
# Builds the example triage plugins written in Python and JavaScript into directories that
# `deskhost plugin install` and `deskhost plugin test` take as they are:
#
#   OUT/triage-py/  plugin.toml (sha256 filled in), triage_py.wasm, settings.json, fixtures/
#   OUT/triage-js/  plugin.toml (sha256 filled in), triage_js.wasm, settings.json, fixtures/
#
# settings.json is the operator settings of the Rust triage-default in examples/workspace,
# and fixtures/ the shared conformance fixtures (tests/conformance/triage), so installing
# either plugin runs the same checks the Rust one passes.
#
# Toolchains are installed once, outside the clone, under $DESKHOST_TOOLS (default
# ~/.cache/deskhost/tools): componentize-py from PyPI in a virtualenv, and jco +
# componentize-js from npm at the versions of triage-js/package-lock.json.
#
# Usage: examples/plugins/build.sh [OUT]   (default: $CARGO_TARGET_DIR/lang-plugins)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/deskhost/target}"
out="${1:-$CARGO_TARGET_DIR/lang-plugins}"
tools="${DESKHOST_TOOLS:-$HOME/.cache/deskhost/tools}"
mkdir -p "$out" "$tools"
out="$(cd "$out" && pwd)"

# --- toolchains -----------------------------------------------------------------------------
py="$tools/py"
if ! "$py/bin/componentize-py" --version 2>/dev/null | grep -qF "$(cut -d= -f3 "$here/triage-py/requirements.txt")"; then
  echo "installing componentize-py into $py" >&2
  python3 -m venv "$py"
  "$py/bin/pip" install --quiet --disable-pip-version-check -r "$here/triage-py/requirements.txt"
fi
js="$tools/js"
if ! cmp -s "$here/triage-js/package-lock.json" "$js/package-lock.json" || [ ! -x "$js/node_modules/.bin/componentize-js" ]; then
  echo "installing jco and componentize-js into $js" >&2
  mkdir -p "$js"
  cp "$here/triage-js/package.json" "$here/triage-js/package-lock.json" "$js/"
  (cd "$js" && npm ci --no-audit --no-fund --loglevel=error)
fi

# --- one plugin -----------------------------------------------------------------------------
# stage NAME: a scratch copy of the plugin's sources with the deskhost WIT as a dependency.
stage() {
  local dir="$out/.stage/$1"
  rm -rf "$dir"
  mkdir -p "$dir/wit/deps/deskhost"
  cp -R "$here/$1/." "$dir/"
  cp "$root"/wit/*.wit "$dir/wit/deps/deskhost/"
  echo "$dir"
}

# package NAME COMPONENT: the installable directory.
package() {
  local name="$1" component="$2" dest="$out/$1"
  local sha
  sha="$(sha256sum "$component" | cut -d' ' -f1)"
  rm -rf "$dest.tmp"
  mkdir -p "$dest.tmp/fixtures"
  cp "$component" "$dest.tmp/"
  sed "s/^sha256 = .*/sha256 = \"$sha\"/" "$here/$name/plugin.toml" > "$dest.tmp/plugin.toml"
  cp "$root/examples/workspace/plugins/triage-default/0.1.0/settings.json" "$dest.tmp/"
  cp "$root"/tests/conformance/triage/*.json "$dest.tmp/fixtures/"
  rm -rf "$dest"
  mv "$dest.tmp" "$dest"
  printf '  %-10s %9d bytes  %s\n' "$name" "$(wc -c < "$component")" "$dest" >&2
}

started=$SECONDS
dir="$(stage triage-py)"
(cd "$dir" && "$py/bin/componentize-py" -d wit -w triage componentize app -o triage_py.wasm >/dev/null)
package triage-py "$dir/triage_py.wasm"

dir="$(stage triage-js)"
# `jco componentize` 1.35 cannot read a WIT directory here ("failed to get path metadata"),
# so this calls the componentize-js CLI it wraps. No WASI features: the component imports
# only the deskhost interfaces of its world (`jco wit` prints them).
(cd "$dir" && "$js/node_modules/.bin/componentize-js" triage.js --wit wit --world-name triage \
  --disable stdio random clocks http fetch-event -o triage_js.wasm >/dev/null)
package triage-js "$dir/triage_js.wasm"
"$js/node_modules/.bin/jco" wit "$out/triage-js/triage_js.wasm" 2>/dev/null | grep -E '^\s+(import|export)' >&2 || true
rm -rf "$out/.stage"
echo "built the Python and JavaScript plugins in $((SECONDS - started))s" >&2
