#!/usr/bin/env bash
# The deskhost demo: build the host and the default plugins, create a workspace from
# examples/workspace (embedded SQLite, no other service), import the knowledge base and the
# CRM, train the triage model on the workspace's labeled history and risk examples, decide the 30 demo
# tickets, then show the review queue, the audit check and the installed plugins.
#
# Usage: examples/demo.sh [WORKSPACE_DIR]     (default: $CARGO_TARGET_DIR/demo-workspace)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/deskhost/target}"
step() { printf '\n\033[1m== %s\033[0m\n' "$*" >&2; }

step "toolchain"
rustup target add wasm32-wasip2 >/dev/null 2>&1 || rustup target add wasm32-wasip2

step "build the default plugins (wasm32-wasip2) and the host (release)"
cargo build --quiet --profile plugin --target wasm32-wasip2 \
  -p deskhost-triage -p deskhost-reply -p deskhost-escalation
cargo build --quiet --release -p deskhost
deskhost="$CARGO_TARGET_DIR/release/deskhost"
plugins="$CARGO_TARGET_DIR/wasm32-wasip2/plugin"
ls -l "$plugins"/deskhost_{triage,reply,escalation}.wasm | awk '{print "  " $5 " bytes  " $9}' >&2

ws="${1:-$CARGO_TARGET_DIR/demo-workspace}"
step "workspace $ws"
"$deskhost" init "$ws" --from examples/workspace --plugins "$plugins" --force
# --force made a new workspace: checkpoints of the one it replaced would (rightly) not verify.
rm -f "$ws.checkpoints.jsonl"
# Audit checkpoints are signed with a key kept outside the workspace (made once, reused).
key="$CARGO_TARGET_DIR/demo-audit.key"
[ -f "$key" ] || "$deskhost" audit keygen "$key" >/dev/null
printf '\n[audit]\nsigning_key = "%s"\ncheckpoint_every_records = 100\n' "$key" >> "$ws/deskhost.toml"
"$deskhost" -w "$ws" kb import "$ws/kb/articles.jsonl"
"$deskhost" -w "$ws" crm import "$ws/crm/customers.jsonl"

step "train the triage model on the labeled history (category, queue, priority) and risk examples"
"$deskhost" -w "$ws" train "$ws/history.jsonl" "$ws/risk.jsonl" --fields category,queue,priority,risk --name lumio-demo

step "decide the demo tickets (one JSON object per ticket in $ws/results.jsonl)"
"$deskhost" -w "$ws" run "$ws/tickets.jsonl" > "$ws/results.jsonl"

step "first results"
python3 - "$ws/results.jsonl" <<'PY' 2>/dev/null || head -c 2000 "$ws/results.jsonl"
import json, sys
print(f"{'ticket':<7} {'category':<16} {'queue':<17} {'prio':<7} {'lang':<4} {'reply':<22} {'gate'}")
for line in open(sys.argv[1]):
    r = json.loads(line)
    t = (r.get("triage") or {}).get("proposal") or {}
    rp = ((r.get("reply") or {}).get("proposal")) or {}
    reply = "draft " + rp["draft"]["language"] if "draft" in rp else ("abstain: " + rp["abstain"]["reason"] if "abstain" in rp else "-")
    esc = " +escalation" if (r.get("escalation") or {}).get("proposal") else ""
    reasons = ",".join(x["code"] for x in ((r["gate"].get("review") or {}).get("reasons") or []))
    print(f"{r['ticket_id']:<7} {t['category']['value']:<16} {t['queue']['value']:<17} {t['priority']['value']:<7} "
          f"{t['language']['value']:<4} {reply:<22} {r['gate']['outcome']}{esc} [{reasons}]")
PY

step "review queue"
"$deskhost" -w "$ws" review list | head -n 12
step "audit"
"$deskhost" -w "$ws" audit checkpoint --out "$ws.checkpoints.jsonl" >/dev/null
"$deskhost" -w "$ws" audit verify --checkpoint "$ws.checkpoints.jsonl"
step "plugins"
"$deskhost" -w "$ws" plugin list
