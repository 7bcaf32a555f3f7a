//! The map page's geometry, from the same core as the edge: so the page
//! draws exactly the cells the edge prices.

use shared::api::surge_color;
use shared::geo::{Cell, LatLng, Level};
use shared::surge::Multiplier;
use wasm_bindgen::prelude::wasm_bindgen;

/// The four vertices of a cell as `[lat0, lng0, ..., lat3, lng3]`; empty
/// for a token that is not a cell.
#[wasm_bindgen]
pub fn cell_polygon(token: &str) -> Vec<f64> {
    match Cell::from_token(token) {
        Ok(cell) => cell
            .vertices()
            .iter()
            .flat_map(|v| [v.lat(), v.lng()])
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// The token of the cell containing a point at a level; empty if invalid.
#[wasm_bindgen]
pub fn cell_at(lat: f64, lng: f64, level: u8) -> String {
    match (LatLng::new(lat, lng), Level::new(level)) {
        (Ok(p), Ok(l)) => Cell::at(p, l).token(),
        _ => String::new(),
    }
}

/// The map colour of a multiplier (as the edge's heatmap gives it).
#[wasm_bindgen]
pub fn multiplier_color(multiplier: f64) -> String {
    surge_color(Multiplier::from_f64(multiplier).unwrap_or(Multiplier::ONE)).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn polygon_and_colour() {
        let token = cell_at(37.7749, -122.4194, 13);
        assert_eq!(token, "8085809c");
        let poly = cell_polygon(&token);
        assert_eq!(poly.len(), 8);
        assert!(poly
            .chunks(2)
            .all(|p| (p[0] - 37.77).abs() < 0.02 && (p[1] + 122.42).abs() < 0.02));
        assert!(cell_polygon("nonsense").is_empty());
        assert_eq!(multiplier_color(2.2), "#e74c3c");
        assert_eq!(multiplier_color(f64::NAN), "#2ecc71");
    }
}
