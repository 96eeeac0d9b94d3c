#!/usr/bin/env bash
# Builds __CRATE__.wasm and writes its sha256 into plugin.toml.
set -euo pipefail
cd "$(dirname "$0")"
