"""Baseline for the origin benchmarks: the original design's approach.

The original design aggregates driver locations in Python, one event at a
time (seeds/000, part 5, `LocationEventProcessor`): s2sphere converts
lat/lng to a cell, a dict holds supply and demand per cell, and the default
curve is evaluated on every event. This script reproduces that loop (our
words, same algorithm) and measures events per second on one core:

* `aggregate`: events already decoded (Python objects), as the original
  processor receives them from its stream;
* `ndjson`: the same, decoding each NDJSON line with `json.loads` first,
  which is what an HTTP ingest in that design would also have to do.

Usage: python3 scripts/bench/python_baseline.py [events]   (prints JSON)
Needs: pip install s2sphere==0.2.5
"""

import json
import random
import sys
import time
from collections import defaultdict

import s2sphere

LEVEL = 13  # the same level as our benchmark (the original used 12)


class LocationEventProcessor:
    def __init__(self):
        self.state = defaultdict(lambda: {"supply": 0, "demand": 0})
        self.updates = 0

    def process_location_event(self, event):
        cell = s2sphere.CellId.from_lat_lng(
            s2sphere.LatLng.from_degrees(event["latitude"], event["longitude"])
        ).parent(LEVEL).id()
        st = self.state[cell]
        if event["available"]:
            st["supply"] += 1
        else:
            st["supply"] -= 1
        self.emit(cell, self.calculate_surge_multiplier(st))

    @staticmethod
    def calculate_surge_multiplier(st):
        supply, demand = st["supply"], st["demand"]
        if supply <= 0:
            return 5.0
        ratio = demand / supply
        if ratio <= 1.0:
            return 1.0
        if ratio <= 2.0:
            return 1.0 + (ratio - 1.0) * 0.5
        return 1.5 + min((ratio - 2.0) * 0.3, 3.5)

    def emit(self, cell, multiplier):
        self.updates += 1


def events(n, seed=7):
    rnd = random.Random(seed)
    t = 1_800_000_000_000
    for i in range(n):
        yield {
            "driver_id": f"driver-{rnd.randrange(50_000)}",
            "latitude": 37.60 + rnd.random() * 0.25,
            "longitude": -122.55 + rnd.random() * 0.20,
            "available": rnd.random() < 0.8,
            "vehicle_type": "standard",
            "timestamp": t + i,
        }


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
    evs = list(events(n))
    p = LocationEventProcessor()
    start = time.perf_counter()
    for e in evs:
        p.process_location_event(e)
    agg = n / (time.perf_counter() - start)

    lines = [json.dumps(e) for e in evs]
    p = LocationEventProcessor()
    start = time.perf_counter()
    for line in lines:
        p.process_location_event(json.loads(line))
    nd = n / (time.perf_counter() - start)
    print(json.dumps({"events": n, "aggregate_events_per_s": agg, "ndjson_events_per_s": nd}))


if __name__ == "__main__":
    main()
