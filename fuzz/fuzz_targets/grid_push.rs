//! The grid push decoder: JSON → GridPush → validated SurgeGrid, and back.
#![no_main]
use libfuzzer_sys::fuzz_target;
use shared::api::GridPush;
use shared::grid::SurgeGrid;

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = serde_json::from_slice::<GridPush>(data) {
        if let Ok(g) = SurgeGrid::try_from(p) {
            // A valid grid re-encodes to a push that decodes to itself.
            let again = SurgeGrid::try_from(GridPush::from(&g)).expect("round trip");
            assert_eq!(again, g);
        }
    }
});
