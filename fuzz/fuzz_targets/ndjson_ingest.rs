//! The origin's NDJSON and JSON-array ingest parsers: never panic, and every
//! record is either accepted or reported.
#![no_main]
use libfuzzer_sys::fuzz_target;
use origin::config::Config;
use origin::ingest::{demands, locations, Format};
use shared::time::Timestamp;

fuzz_target!(|data: &[u8]| {
    let regions = Config::default().regions().expect("default regions");
    let now = Timestamp(1_800_000_000_000);
    for format in [Format::Ndjson, Format::JsonArray] {
        if let Ok(p) = locations(data, format, &regions, now) {
            assert_eq!(p.events.len(), p.report.accepted);
        }
        if let Ok(p) = demands(data, format, &regions, now) {
            assert_eq!(p.events.len(), p.report.accepted);
        }
    }
});
