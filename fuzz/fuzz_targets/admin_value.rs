//! An admin KV value (`wrangler kv key put`): whatever the text, the
//! edge's strict parsers answer a value or a reason, never a panic; and a
//! registry that parses places every point where the even-odd test over
//! its boundaries, in order, does.
#![no_main]
use libfuzzer_sys::fuzz_target;
use shared::api::admin::AdminKey;
use shared::geo::LatLng;

const KEYS: [&str; 6] = [
    "regions",
    "tariff:sf:standard",
    "caps:sf",
    "emergency_cap",
    "emergency:sf",
    "experiment:sf",
];

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let key = KEYS[usize::from(which) % KEYS.len()];
    let parsed = AdminKey::parse(key).expect("a known key");
    let _ = parsed.check(text);
    if key != "regions" {
        return;
    }
    let Ok(registry) = shared::api::admin::parse_registry(text) else {
        return;
    };
    // Points at every boundary position and a hair beside it.
    for region in registry.regions() {
        for (lng, lat) in region.boundary().positions().take(64) {
            for (dlat, dlng) in [(0.0, 0.0), (1e-7, 1e-7), (-1e-7, 1e-7)] {
                let Ok(p) = LatLng::new(lat + dlat, lng + dlng) else {
                    continue;
                };
                let reference = registry
                    .regions()
                    .iter()
                    .find(|r| r.boundary().contains(p))
                    .map(|r| r.id().clone());
                assert_eq!(registry.locate(p).map(|r| r.id().clone()), reference, "{p:?}");
            }
        }
    }
});
