//! `POST /api/v1/pricing/estimate` and `POST /api/v1/quotes/{id}/confirm`: the
//! estimate's request (validated once, [`EstimateRequest::validate`]), its
//! answer, and the confirmation.

use super::*;

/// A point as apps send it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Location {
    /// Degrees north.
    pub latitude: f64,
    /// Degrees east.
    pub longitude: f64,
}

impl Location {
    /// Validates into a core coordinate.
    pub fn to_latlng(self) -> Result<LatLng, InvalidLatLng> {
        LatLng::new(self.latitude, self.longitude)
    }
}

impl From<LatLng> for Location {
    fn from(p: LatLng) -> Self {
        Self {
            latitude: p.lat(),
            longitude: p.lng(),
        }
    }
}

/// `POST /api/v1/pricing/estimate` request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EstimateRequest {
    /// Where the ride starts.
    pub pickup_location: Location,
    /// Where it ends.
    pub dropoff_location: Location,
    /// `economy`, `standard`, `premium` or `xl`; default `standard`.
    #[serde(default)]
    pub vehicle_type: Option<String>,
    /// Accepted for old clients and ignored (at most [`MAX_USER_ID`]
    /// bytes): who a rider is comes from a verified bearer token
    /// ([`crate::identity`]), never from what the body says.
    #[serde(default)]
    pub user_id: Option<String>,
    /// Region to price in; default is the edge's configured region.
    #[serde(default)]
    pub region: Option<String>,
}

/// Longest accepted `user_id`, bytes.
pub const MAX_USER_ID: usize = 256;

/// An estimate request that passed validation: every field typed.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidEstimate {
    /// Where the ride starts.
    pub pickup: LatLng,
    /// Where it ends.
    pub dropoff: LatLng,
    /// The class priced (`standard` when absent).
    pub class: VehicleClass,
    /// The region asked for (`None`: the edge's default).
    pub region: Option<Ident>,
    /// The trip's estimate.
    pub trip: crate::fare::Trip,
}

/// Why a request was refused: a stable code and a message for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Stable, snake_case (e.g. `invalid_coordinates`).
    pub code: &'static str,
    /// For humans.
    pub message: String,
}

impl EstimateRequest {
    /// Validates every field, in the order a client would fix them: the
    /// two points, the class, the region, the rider id, the trip. The one
    /// place estimate requests are validated (the worker and the fuzz
    /// target call it).
    pub fn validate(&self, route: &crate::fare::RouteModel) -> Result<ValidEstimate, Refusal> {
        let refuse = |code, message: String| Refusal { code, message };
        let pickup = self
            .pickup_location
            .to_latlng()
            .map_err(|e| refuse("invalid_coordinates", format!("pickup_location: {e}")))?;
        let dropoff = self
            .dropoff_location
            .to_latlng()
            .map_err(|e| refuse("invalid_coordinates", format!("dropoff_location: {e}")))?;
        let class = VehicleClass::parse_or_default(self.vehicle_type.as_deref())
            .map_err(|e| refuse("unknown_vehicle_class", e.to_string()))?;
        let region = self
            .region
            .as_deref()
            .map(Ident::new)
            .transpose()
            .map_err(|e| refuse("invalid_region", e.to_string()))?;
        // Checked so an old client learns of a broken id; used for nothing.
        user_id(self.user_id.as_deref())?;
        let trip = route
            .estimate(pickup, dropoff)
            .map_err(|e| refuse("trip_too_long", e.to_string()))?;
        Ok(ValidEstimate {
            pickup,
            dropoff,
            class,
            region,
            trip,
        })
    }
}

/// The one rule for a rider's `user_id` wherever a request may carry one:
/// at most [`MAX_USER_ID`] bytes; an empty one is anonymous (it would
/// otherwise put every client that sends it in one experiment arm).
pub fn user_id(given: Option<&str>) -> Result<Option<&str>, Refusal> {
    match given {
        Some(u) if u.len() > MAX_USER_ID => Err(Refusal {
            code: "invalid_user_id",
            message: format!("user_id is longer than {MAX_USER_ID} bytes"),
        }),
        Some("") | None => Ok(None),
        Some(u) => Ok(Some(u)),
    }
}

/// Where a zone is and how busy it is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ZoneInfo {
    /// The pricing cell's token.
    pub zone_id: String,
    /// Human name (region and cell).
    pub zone_name: String,
    /// `low`, `medium`, `high` or `very_high`, from the multiplier
    /// charged.
    pub current_demand_level: DemandLevel,
    /// The region.
    pub region: String,
}

/// Every component of a fare, as decimal amounts of `currency`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FareBreakdownWire {
    /// Flat base.
    pub base: f64,
    /// Distance component.
    pub distance: f64,
    /// Time component.
    pub time: f64,
    /// base + distance + time.
    pub subtotal: f64,
    /// Multiplier applied to the subtotal.
    pub surge_multiplier: Multiplier,
    /// Amount added by surge.
    pub surge_amount: f64,
    /// Flat booking fee (not surged).
    pub booking_fee: f64,
    /// Added to reach the minimum fare.
    pub minimum_fare_adjustment: f64,
    /// The final fare.
    pub total: f64,
    /// One line per component, in order, for display.
    pub explanation: Vec<String>,
}

impl From<&FareBreakdown> for FareBreakdownWire {
    fn from(f: &FareBreakdown) -> Self {
        let cur = f.currency.as_str();
        let d = |minor| f.currency.to_decimal(minor);
        // "<label><amount> <currency>", built without float formatting.
        let line = |label: &str, minor: i64| {
            let mut s = String::with_capacity(label.len() + 16);
            s.push_str(label);
            f.currency.push_decimal(&mut s, minor);
            s.push(' ');
            s.push_str(cur);
            s
        };
        let mut explanation = Vec::with_capacity(6);
        explanation.push(line("base ", f.base));
        explanation.push(line("distance ", f.distance));
        explanation.push(line("time ", f.time));
        if f.surge_amount > 0 {
            let mut label = format!("surge x{} on ", f.surge_multiplier);
            f.currency.push_decimal(&mut label, f.subtotal);
            label.push_str(": +");
            explanation.push(line(&label, f.surge_amount));
        }
        explanation.push(line("booking fee ", f.booking_fee));
        if f.minimum_fare_adjustment > 0 {
            explanation.push(line(
                "raised to the minimum fare: +",
                f.minimum_fare_adjustment,
            ));
        }
        Self {
            base: d(f.base),
            distance: d(f.distance),
            time: d(f.time),
            subtotal: d(f.subtotal),
            surge_multiplier: f.surge_multiplier,
            surge_amount: d(f.surge_amount),
            booking_fee: d(f.booking_fee),
            minimum_fare_adjustment: d(f.minimum_fare_adjustment),
            total: d(f.total),
            explanation,
        }
    }
}

/// Where the multiplier of a quote came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SurgeSource {
    /// `fresh` (KV or zone object, young), `cached` (isolate cache, young),
    /// `stale` (old grid, decaying toward 1.0) or `default` (no grid: 1.0).
    pub source: Source,
    /// Age of the grid in seconds, when there is one.
    pub age_seconds: Option<f64>,
    /// Generation of the grid used, 0 when none.
    pub grid_generation: u64,
    /// The grid's multiplier before any decay.
    pub published_multiplier: Multiplier,
}

/// `POST /api/v1/pricing/estimate` response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EstimateResponse {
    /// Id to confirm with.
    pub quote_id: String,
    /// The signed quote; send it back to confirm.
    pub quote_token: String,
    /// Fare before surge, including the booking fee.
    pub base_fare: f64,
    /// The multiplier applied.
    pub surge_multiplier: Multiplier,
    /// What the rider pays if they confirm in time.
    pub final_fare: f64,
    /// ISO 4217 code.
    pub currency: String,
    /// RFC 3339 expiry.
    pub quote_valid_until: String,
    /// Minutes.
    pub estimated_duration: f64,
    /// Kilometres.
    pub estimated_distance: f64,
    /// The vehicle class priced.
    pub vehicle_type: VehicleClass,
    /// The zone of the pickup.
    pub zone_info: ZoneInfo,
    /// Itemised fare.
    pub fare_breakdown: FareBreakdownWire,
    /// Provenance of the multiplier.
    pub surge_source: SurgeSource,
    /// True when pricing used stale or default data.
    pub degraded: bool,
    /// The experiment arm that priced the quote, if it is in one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub experiment: Option<ExperimentArmWire>,
}

/// The experiment arm a quote was priced in (signed into its token and
/// copied into its booking).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ExperimentArmWire {
    /// The experiment's id.
    pub id: String,
    /// The arm's name.
    pub arm: String,
    /// The version of the arm's policy that priced it.
    pub policy: String,
    /// The unit of analysis the quote counts in: a switchback's window
    /// index, a user split's rider (a hash of the user id).
    #[serde(default)]
    pub unit: u64,
}

impl From<&crate::experiment::ArmStamp> for ExperimentArmWire {
    fn from(a: &crate::experiment::ArmStamp) -> Self {
        Self {
            id: a.experiment.to_string(),
            arm: a.arm.to_string(),
            policy: a.policy.to_string(),
            unit: a.unit,
        }
    }
}

impl ExperimentArmWire {
    /// The stamp, if every part is an identifier.
    pub fn stamp(&self) -> Result<crate::experiment::ArmStamp, InvalidIdent> {
        Ok(crate::experiment::ArmStamp {
            experiment: Ident::new(&self.id)?,
            arm: Ident::new(&self.arm)?,
            policy: Ident::new(&self.policy)?,
            unit: self.unit,
        })
    }
}

/// `POST /api/v1/quotes/{id}/confirm` request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfirmRequest {
    /// The `quote_token` of the estimate.
    pub quote_token: String,
}

/// `POST /api/v1/quotes/{id}/confirm` response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfirmResponse {
    /// The quote confirmed.
    pub quote_id: String,
    /// Always `confirmed`.
    pub status: String,
    /// The price honoured (the quoted one, whatever surge is now).
    pub final_fare: f64,
    /// ISO 4217 code.
    pub currency: String,
    /// The multiplier honoured.
    pub surge_multiplier: Multiplier,
    /// RFC 3339 time of confirmation.
    pub confirmed_at: String,
    /// The booking made from the quote (one per quote).
    pub booking_id: String,
    /// A signed capability for this booking: send it as
    /// `Authorization: Bearer …` to read or cancel the booking at any edge.
    pub booking_token: String,
}

impl EstimateResponse {
    /// The estimate answer of a priced quote, carrying its signed `token`.
    pub fn new(q: &crate::desk::PricedQuote, token: String) -> Self {
        let (c, e) = (&q.claims, &q.effective);
        let trip = crate::fare::Trip {
            distance_m: c.distance_m,
            duration_s: c.duration_s,
        };
        EstimateResponse {
            quote_id: c.quote_id.to_string(),
            quote_token: token,
            base_fare: c.currency.to_decimal(c.base_fare),
            surge_multiplier: e.multiplier,
            final_fare: c.currency.to_decimal(c.final_fare),
            currency: c.currency.to_string(),
            quote_valid_until: c.expires_at.to_rfc3339(),
            estimated_duration: trip.minutes(),
            estimated_distance: trip.km(),
            vehicle_type: c.class,
            zone_info: ZoneInfo {
                zone_name: q.zone_name.clone(),
                zone_id: e.cell.token(),
                current_demand_level: DemandLevel::of(e.multiplier),
                region: c.region.to_string(),
            },
            fare_breakdown: FareBreakdownWire::from(&q.fare),
            surge_source: SurgeSource {
                source: e.source,
                age_seconds: e.age.map(|a| a.0 as f64 / 1_000.0),
                grid_generation: e.generation,
                published_multiplier: e.published,
            },
            degraded: e.source.degraded(),
            experiment: c.arm.as_ref().map(Into::into),
        }
    }
}
