//! Parsing and validating ingest batches: JSON arrays and NDJSON.
//!
//! Each record is parsed and validated on its own, so one bad record never
//! drops its valid neighbours. A report counts accepted and rejected records
//! and lists the first errors with their 1-based line (NDJSON) or position
//! (JSON array).

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;
use shared::api::{IngestReport, RecordError};
use shared::fare::VehicleClass;
use shared::geo::{Cell, LatLng};
use shared::market::{DemandKind, DemandSeen, DriverId, DriverSeen};
use shared::time::Timestamp;

use crate::config::{Area, Region};

/// Most record errors listed in a report.
pub const MAX_REPORTED_ERRORS: usize = 20;
/// Records may be at most this far in the future (device clock skew).
pub const MAX_FUTURE_MS: u64 = 5 * 60 * 1_000;

/// How a batch is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One JSON array of records.
    JsonArray,
    /// One JSON record per line.
    Ndjson,
}

/// Why a whole batch was refused (as opposed to single records).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    /// A JSON body that is not an array.
    #[error("body is not a JSON array of records: {0}")]
    NotAnArray(String),
}

#[derive(Deserialize)]
struct LocationRecord<'a> {
    #[serde(borrow)]
    driver_id: Cow<'a, str>,
    latitude: f64,
    longitude: f64,
    #[serde(alias = "is_available")]
    available: bool,
    #[serde(default, borrow)]
    vehicle_type: Option<Cow<'a, str>>,
    timestamp: u64,
}

#[derive(Deserialize)]
struct DemandRecord<'a> {
    #[serde(borrow)]
    kind: Cow<'a, str>,
    latitude: f64,
    longitude: f64,
    #[serde(default, borrow)]
    vehicle_type: Option<Cow<'a, str>>,
    timestamp: u64,
}

/// A validated event and the index of its region.
pub type Routed<T> = (usize, T);

/// The result of parsing a batch.
#[derive(Debug)]
pub struct Parsed<T> {
    /// Valid events with their region index.
    pub events: Vec<Routed<T>>,
    /// Counts and first errors.
    pub report: IngestReport,
}

/// Why one record was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reject {
    /// Machine-readable code.
    pub code: &'static str,
    /// Human-readable reason.
    pub message: String,
}

fn reject(code: &'static str, message: impl Into<String>) -> Reject {
    Reject {
        code,
        message: message.into(),
    }
}

/// The region (index) and cell of a point, or why it has none: by the
/// registry's boundaries when the origin has one (the edge's rule,
/// [`shared::regions::Registry::locate`]), else by each region's bounds.
pub fn locate(lat: f64, lng: f64, regions: &[Region]) -> Result<(usize, Cell), Reject> {
    let p = LatLng::new(lat, lng).map_err(|e| reject("invalid_coordinates", e.to_string()))?;
    let registry = regions.iter().find_map(|r| match &r.area {
        Area::Registry(reg) => Some(reg),
        Area::Bounds(_) => None,
    });
    let idx = match registry {
        Some(reg) => {
            let region = reg.locate(p).ok_or_else(|| {
                reject(
                    "outside_regions",
                    format!("({lat}, {lng}) is in no region of the registry"),
                )
            })?;
            regions
                .iter()
                .position(|r| r.id == *region.id())
                .ok_or_else(|| {
                    reject(
                        "outside_regions",
                        format!(
                            "({lat}, {lng}) is in region {}, which this origin does not price",
                            region.id()
                        ),
                    )
                })?
        }
        None => regions
            .iter()
            .position(|r| matches!(&r.area, Area::Bounds(b) if b.contains(p)))
            .ok_or_else(|| {
                reject(
                    "outside_regions",
                    format!("({lat}, {lng}) is in no configured region"),
                )
            })?,
    };
    Ok((idx, Cell::at(p, regions[idx].level)))
}

fn class(v: Option<&str>) -> Result<VehicleClass, Reject> {
    VehicleClass::parse_or_default(v).map_err(|e| reject("unknown_vehicle_class", e.to_string()))
}

/// The one rule for a reported time: milliseconds since the epoch, not
/// zero and at most [`MAX_FUTURE_MS`] ahead of the origin's clock (a time
/// further ahead would sit in the windows, and in the history past every
/// retention, as if it had not happened yet).
pub(crate) fn timestamp(ts: u64, now: Timestamp) -> Result<Timestamp, Reject> {
    if ts == 0 || ts > now.0 + MAX_FUTURE_MS {
        return Err(reject(
            "invalid_timestamp",
            format!("timestamp {ts} is not a time in ms since the epoch up to now + 5 min"),
        ));
    }
    Ok(Timestamp(ts))
}

fn location(raw: &[u8], regions: &[Region], now: Timestamp) -> Result<Routed<DriverSeen>, Reject> {
    let r: LocationRecord<'_> =
        serde_json::from_slice(raw).map_err(|e| reject("invalid_record", e.to_string()))?;
    shared::market::external_id("driver_id", &r.driver_id)
        .map_err(|m| reject("invalid_driver_id", m))?;
    let (idx, cell) = locate(r.latitude, r.longitude, regions)?;
    Ok((
        idx,
        DriverSeen {
            driver: DriverId::from_external(&r.driver_id),
            cell,
            class: class(r.vehicle_type.as_deref())?,
            available: r.available,
            at: timestamp(r.timestamp, now)?,
        },
    ))
}

fn demand(raw: &[u8], regions: &[Region], now: Timestamp) -> Result<Routed<DemandSeen>, Reject> {
    let r: DemandRecord<'_> =
        serde_json::from_slice(raw).map_err(|e| reject("invalid_record", e.to_string()))?;
    let kind = DemandKind::parse(&r.kind).ok_or_else(|| {
        reject(
            "unknown_demand_kind",
            "kind must be ride_request, quote or app_open",
        )
    })?;
    let (idx, cell) = locate(r.latitude, r.longitude, regions)?;
    Ok((
        idx,
        DemandSeen {
            cell,
            class: class(r.vehicle_type.as_deref())?,
            kind,
            at: timestamp(r.timestamp, now)?,
            once: None,
        },
    ))
}

fn parse<T>(
    body: &[u8],
    format: Format,
    one: impl Fn(&[u8]) -> Result<Routed<T>, Reject>,
) -> Result<Parsed<T>, BatchError> {
    let mut out = Parsed {
        events: Vec::new(),
        report: IngestReport {
            accepted: 0,
            rejected: 0,
            errors: Vec::new(),
        },
    };
    let handle = |line: usize, raw: &[u8], out: &mut Parsed<T>| match one(raw) {
        Ok(ev) => {
            out.events.push(ev);
            out.report.accepted += 1;
        }
        Err(e) => {
            out.report.rejected += 1;
            if out.report.errors.len() < MAX_REPORTED_ERRORS {
                out.report.errors.push(RecordError {
                    line,
                    code: e.code.to_owned(),
                    message: e.message,
                });
            }
        }
    };
    match format {
        Format::Ndjson => {
            for (i, line) in body.split(|b| *b == b'\n').enumerate() {
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                handle(i + 1, line, &mut out);
            }
        }
        Format::JsonArray => {
            let items: Vec<&RawValue> =
                serde_json::from_slice(body).map_err(|e| BatchError::NotAnArray(e.to_string()))?;
            out.events.reserve(items.len());
            for (i, raw) in items.iter().enumerate() {
                handle(i + 1, raw.get().as_bytes(), &mut out);
            }
        }
    }
    Ok(out)
}

/// Parses a batch of driver locations.
pub fn locations(
    body: &[u8],
    format: Format,
    regions: &[Region],
    now: Timestamp,
) -> Result<Parsed<DriverSeen>, BatchError> {
    parse(body, format, |raw| location(raw, regions, now))
}

/// Parses a batch of demand events.
pub fn demands(
    body: &[u8],
    format: Format,
    regions: &[Region],
    now: Timestamp,
) -> Result<Parsed<DemandSeen>, BatchError> {
    parse(body, format, |raw| demand(raw, regions, now))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn regions() -> Vec<Region> {
        Config::default().regions().expect("regions")
    }

    const NOW: Timestamp = Timestamp(1_800_000_000_000);

    #[test]
    fn mixed_ndjson_batch_keeps_the_good_records() {
        let body = br#"{"driver_id":"d1","latitude":37.77,"longitude":-122.42,"available":true,"timestamp":1800000000000}
{"driver_id":"d2","latitude":95,"longitude":0,"available":true,"timestamp":1800000000000}
not json at all

{"driver_id":"d3","latitude":37.78,"longitude":-122.41,"is_available":false,"vehicle_type":"xl","timestamp":1800000000000}
{"driver_id":"d4","latitude":40.7,"longitude":-74.0,"available":true,"timestamp":1800000000000}
{"driver_id":"d5","latitude":37.78,"longitude":-122.41,"available":true,"vehicle_type":"boat","timestamp":1800000000000}
{"driver_id":"d6","latitude":37.78,"longitude":-122.41,"available":true,"timestamp":1900000000000}"#;
        let p = locations(body, Format::Ndjson, &regions(), NOW).expect("batch");
        assert_eq!(p.report.accepted, 2);
        assert_eq!(p.report.rejected, 5);
        let codes: Vec<(usize, &str)> = p
            .report
            .errors
            .iter()
            .map(|e| (e.line, e.code.as_str()))
            .collect();
        assert_eq!(
            codes,
            vec![
                (2, "invalid_coordinates"),
                (3, "invalid_record"),
                (6, "outside_regions"),
                (7, "unknown_vehicle_class"),
                (8, "invalid_timestamp"),
            ]
        );
        assert_eq!(p.events[1].1.class, VehicleClass::Xl);
        assert!(!p.events[1].1.available);
    }

    #[test]
    fn json_array_batches() {
        let body = br#"[{"kind":"ride_request","latitude":37.77,"longitude":-122.42,"timestamp":1800000000000},
                        {"kind":"dance","latitude":37.77,"longitude":-122.42,"timestamp":1800000000000},
                        {"kind":"quote","latitude":37.77,"longitude":-122.42}]"#;
        let p = demands(body, Format::JsonArray, &regions(), NOW).expect("batch");
        assert_eq!((p.report.accepted, p.report.rejected), (1, 2));
        assert_eq!(p.report.errors[0].code, "unknown_demand_kind");
        assert_eq!(p.report.errors[1].line, 3);
        assert!(matches!(
            demands(b"{\"not\":\"array\"}", Format::JsonArray, &regions(), NOW),
            Err(BatchError::NotAnArray(_))
        ));
    }
}
