#!/usr/bin/env bash
# Origin throughput against the original design's approach, same run:
# the Python LocationEventProcessor loop (s2sphere + dict) vs our in-process
# aggregation, NDJSON decode + aggregation, and HTTP NDJSON ingest.
# Usage: scripts/bench-origin.sh [events, default 2000000]
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"
N="${1:-2000000}"
py_venv "s2sphere==0.2.5"
step "Python baseline (original design's per-event loop), 200,000 events"
py=$("$PY_VENV/bin/python" scripts/bench/python_baseline.py 200000)
echo "$py"
step "Rust origin: $N events in process, then HTTP for 10 s"
rs=$(EQ_BENCH_EVENTS="$N" cargo bench -q -p equilibrium-origin --bench ingest 2>/dev/null | tail -n 1)
echo "$rs"
python3 - "$py" "$rs" <<'PY'
import json, sys
py, rs = json.loads(sys.argv[1]), json.loads(sys.argv[2])
print()
print(f"in-process aggregation: {rs['aggregate_events_per_s']:>12,.0f} events/s  python {py['aggregate_events_per_s']:>10,.0f}  ratio {rs['aggregate_events_per_s']/py['aggregate_events_per_s']:6.1f}x  (target >= 2,000,000 on one core)")
print(f"NDJSON decode + aggr.:  {rs['ndjson_events_per_s']:>12,.0f} events/s  python {py['ndjson_events_per_s']:>10,.0f}  ratio {rs['ndjson_events_per_s']/py['ndjson_events_per_s']:6.1f}x")
print(f"HTTP NDJSON ingest:     {rs['http_events_per_s']:>12,.0f} events/s  python {py['ndjson_events_per_s']:>10,.0f}  ratio {rs['http_events_per_s']/py['ndjson_events_per_s']:6.1f}x  (target >= 300,000 on 2 cores; python figure is in-process, no HTTP)")
PY
