"""Generate the lat/lng -> S2 cell id differential-test fixture.

Writes shared/tests/fixtures/s2_cells.csv: a CSV with header
``lat,lng,level,cell_id,token`` computed by an independent reference
implementation, the pure-Python ``s2sphere`` package (pinned: s2sphere==0.2.5).
Each row is ``CellId.from_lat_lng(LatLng.from_degrees(lat, lng)).parent(level)``;
lat/lng are written with repr() so they round-trip exactly into an f64, cell_id
is the unsigned 64-bit id in decimal and token is ``CellId.to_token()``.

Points: uniform random points on the sphere, the poles (exact and within
1e-9 deg), the antimeridian (lng exactly +-180 and tiny epsilons off it), the
equator and prime meridian, cube-face boundaries, vertices of random level-13
cells (exact and nudged by +-1e-12 deg) and jittered city centres. Most rows
use level 13 (the product default); the rest are spread over other levels.
Output is deterministic (fixed seed), so re-running gives an identical file.

Run from the repository root:
    pip install s2sphere==0.2.5
    python3 scripts/gen_s2_fixture.py > shared/tests/fixtures/s2_cells.csv
"""
import math
import random
import sys

import s2sphere

OTHER_LEVELS = [0, 1, 5, 10, 12, 14, 16, 20, 24, 30]
ALL_LEVELS = sorted(OTHER_LEVELS + [13])
FACE_CORNER_LAT = math.degrees(math.atan(1 / math.sqrt(2)))  # 35.26438968...
CITIES = {
    "San Francisco": (37.7749, -122.4194), "New York": (40.7128, -74.0060),
    "London": (51.5074, -0.1278), "Tokyo": (35.6762, 139.6503),
    "Sydney": (-33.8688, 151.2093), "Sao Paulo": (-23.5505, -46.6333),
    "Lagos": (6.5244, 3.3792), "Mumbai": (19.0760, 72.8777),
    "Reykjavik": (64.1466, -21.9426),
}

rng = random.Random(20261122)
rows = []  # (lat, lng, level)


def level():
    """Mostly the product default (13), otherwise one of the other levels."""
    return 13 if rng.random() < 0.6 else rng.choice(OTHER_LEVELS)


def add(lat, lng, levels=None):
    lat, lng = min(90.0, max(-90.0, lat)), min(180.0, max(-180.0, lng))
    for lv in levels if levels is not None else [level()]:
        rows.append((lat, lng, lv))


def uniform_point():
    return math.degrees(math.asin(2 * rng.random() - 1)), rng.uniform(-180.0, 180.0)


# Uniform random points on the sphere.
for _ in range(5000):
    add(*uniform_point())

# Poles: exactly +-90 (every level, assorted lngs) and within 1e-9 deg.
for lat in (90.0, -90.0):
    for lng in [0.0, -0.0, 45.0, -45.0, 90.0, -90.0, 135.0, -135.0, 180.0, -180.0,
                rng.uniform(-180, 180), rng.uniform(-180, 180)]:
        add(lat, lng, ALL_LEVELS)
    for _ in range(150):
        add(lat - math.copysign(rng.choice([1e-9, 1e-12, 1e-15, rng.uniform(0, 1e-9)]), lat),
            rng.uniform(-180, 180))

# Antimeridian: lng exactly +-180 and tiny epsilons off it, at various lats.
for lat in [0.0, 10.0, -10.0, 45.0, -45.0, FACE_CORNER_LAT, -FACE_CORNER_LAT, 89.9, -89.9]:
    add(lat, 180.0, ALL_LEVELS)
    add(lat, -180.0, ALL_LEVELS)
for _ in range(400):
    eps = rng.choice([0.0, 1e-9, 1e-12, 1e-14, rng.uniform(0, 1e-9)])
    sign = rng.choice([1.0, -1.0])
    add(math.degrees(math.asin(2 * rng.random() - 1)), sign * (180.0 - eps))

# Equator and prime meridian (lat or lng exactly 0).
add(0.0, 0.0, ALL_LEVELS)
add(-0.0, -0.0, ALL_LEVELS)
for _ in range(250):
    add(0.0, rng.uniform(-180, 180))
    add(math.degrees(math.asin(2 * rng.random() - 1)), 0.0)

# Cube-face boundaries: equatorial edges at lng = +-45/+-135 (|lat| <= 35.26),
# polar-face edges where |tan(lat)| = max(|cos lng|, |sin lng|), and the corners.
for base in (45.0, -45.0, 135.0, -135.0):
    for lat_sign in (1.0, -1.0):
        add(lat_sign * FACE_CORNER_LAT, base, ALL_LEVELS)
    for _ in range(60):
        d = rng.choice([0.0, 0.0, 1e-12, -1e-12, 1e-9, -1e-9])
        add(rng.uniform(-FACE_CORNER_LAT, FACE_CORNER_LAT), base + d)
for _ in range(400):
    lng = rng.uniform(-180, 180)
    r = math.radians(lng)
    edge = math.degrees(math.atan(max(abs(math.cos(r)), abs(math.sin(r)))))
    add(rng.choice([1.0, -1.0]) * edge + rng.choice([0.0, 0.0, 1e-12, -1e-12]), lng)

# Cell edges: vertices of random level-13 cells, exactly and nudged by 1e-12 deg.
for _ in range(220):
    lat, lng = uniform_point()
    cell = s2sphere.Cell(s2sphere.CellId.from_lat_lng(
        s2sphere.LatLng.from_degrees(lat, lng)).parent(13))
    for k in range(4):
        v = s2sphere.LatLng.from_point(cell.get_vertex(k))
        vlat, vlng = v.lat().degrees, v.lng().degrees
        for dlat, dlng in [(0, 0), (1e-12, 0), (-1e-12, 0), (0, 1e-12), (0, -1e-12)]:
            add(vlat + dlat, vlng + dlng)

# City centres with small random jitter (about +-5 km).
for lat, lng in CITIES.values():
    add(lat, lng, ALL_LEVELS)
    for _ in range(100):
        add(lat + rng.uniform(-0.05, 0.05), lng + rng.uniform(-0.05, 0.05))

out = sys.stdout
out.write("lat,lng,level,cell_id,token\n")
seen = set()
for lat, lng, lv in rows:
    key = (repr(lat), repr(lng), lv)
    if key in seen:
        continue
    seen.add(key)
    cid = s2sphere.CellId.from_lat_lng(s2sphere.LatLng.from_degrees(lat, lng)).parent(lv)
    out.write(f"{lat!r},{lng!r},{lv},{cid.id()},{cid.to_token()}\n")
