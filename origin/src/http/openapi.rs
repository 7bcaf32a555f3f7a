//! The origin's OpenAPI 3 document, generated from the handlers'
//! `#[utoipa::path]` annotations and the wire types' schemas
//! (`shared::api` with the `openapi` feature), never written by hand.

use std::sync::OnceLock;

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

/// The document's definition.
#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "Equilibrium origin",
        description = "Ingest driver locations, demand and ride outcomes; read surge grids and analytics. Producer and reader tokens are separate bearer tokens.",
    ),
    paths(
        super::ops::health,
        super::ops::metrics,
        super::ops::openapi,
        super::ingest::locations,
        super::ingest::demand,
        super::ingest::outcomes,
        super::edge_events::edge_events,
        super::clock::set,
        super::reads::grid,
        super::reads::forecasts,
        super::reads::least_efficient,
        super::reads::history,
        super::experiments::results_of,
    ),
    modifiers(&BearerSchemes),
)]
pub struct ApiDoc;

/// Declares the `producer` and `reader` bearer schemes the paths name.
struct BearerSchemes;

impl Modify for BearerSchemes {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        for name in ["producer", "reader"] {
            components.add_security_scheme(
                name,
                SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
            );
        }
    }
}

/// The document as JSON, built once.
pub fn document_json() -> String {
    static DOC: OnceLock<String> = OnceLock::new();
    DOC.get_or_init(|| ApiDoc::openapi().to_json().unwrap_or_else(|_| "{}".into()))
        .clone()
}
