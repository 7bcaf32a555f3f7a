//! The edge's request decoding: JSON → EstimateRequest → validated values.
#![no_main]
use libfuzzer_sys::fuzz_target;
use shared::api::EstimateRequest;
use shared::fare::{RouteModel, VehicleClass};

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = serde_json::from_slice::<EstimateRequest>(data) {
        let (Ok(a), Ok(b)) = (r.pickup_location.to_latlng(), r.dropoff_location.to_latlng()) else {
            return;
        };
        let _ = r.vehicle_type.as_deref().map(VehicleClass::parse);
        if let Ok(trip) = RouteModel::default().estimate(a, b) {
            assert!(trip.distance_m <= shared::fare::MAX_TRIP_M);
        }
    }
});
