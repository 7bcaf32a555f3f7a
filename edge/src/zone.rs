//! The zone Durable Object: one per region, the authoritative grid and the
//! live subscribers.
//!
//! * `PUT /grid`: offer a grid to the object's [`GridSlot`] (the core's
//!   newest-wins rule, loaded from the object's SQLite row on first use);
//!   if kept, it is written to the row with no await between the offer and
//!   the write, so two pushes cannot interleave. The push is answered then;
//!   every subscriber's message is made and sent after the answer
//!   (`waitUntil`), so many subscribers never make a push wait.
//! * `GET /grid`: the held grid, 404 if none.
//! * `GET /stream`: a WebSocket (hibernation API). The subscriber gets the
//!   held grid at once, then every newer generation — each as the pricing
//!   desk prices it (caps in force and staleness applied), so the stream
//!   shows what a quote charges. A zone takes at most
//!   `MAX_ZONE_SUBSCRIBERS` (default 1,000): the next socket is closed at
//!   once with code 1013 and the reason `{"code":"zone_full","limit":N}`.

use std::cell::RefCell;
use std::rc::Rc;

use serde::Deserialize;
use shared::api::{GridPush, GridPushResponse};
use shared::desk::{Desk, DeskInputs};
use shared::grid::{GridSlot, Offer, SurgeGrid};
use shared::surge::{Caps, Multiplier};
use shared::time::Timestamp;
use worker::{
    durable_object, wasm_bindgen, DurableObject, Env, Method, Request, Response, Result, State,
    WebSocket, WebSocketIncomingMessage, WebSocketPair,
};

use crate::config::CapsInForce;
use crate::error::ApiError;
use crate::http::{error_response, json};

/// What prices a region besides its grid: the caps in force (with whether
/// an emergency is declared, fail closed), its experiments and its named
/// zones.
#[derive(Debug)]
struct Pricing {
    caps: CapsInForce,
    experiments: Rc<Vec<shared::experiment::Experiment>>,
    registry: Option<Rc<shared::regions::Registry>>,
}

impl Pricing {
    /// Nothing known: every price 1.0 from a degraded source.
    fn unknown() -> Self {
        Self {
            caps: CapsInForce {
                caps: Caps::new(Multiplier::ONE, Multiplier::ONE).unwrap_or(Caps::DEFAULT),
                emergency: false,
                degraded: true,
            },
            experiments: Rc::default(),
            registry: None,
        }
    }
}

/// Subscribers a zone takes unless `MAX_ZONE_SUBSCRIBERS` says otherwise.
pub const DEFAULT_MAX_SUBSCRIBERS: usize = 1_000;

#[durable_object]
#[derive(Debug)]
pub struct Zone {
    state: State,
    /// For the caps in force (the `CONFIG` namespace) and the settings.
    env: Env,
    /// The held grid; `None` until loaded from storage (and again after a
    /// failed write, so storage stays the authority).
    slot: RefCell<Option<GridSlot>>,
}

#[derive(Deserialize)]
struct Row {
    body: String,
}

impl Zone {
    /// Runs `f` on the held grid's slot, loading it from storage first if
    /// this instance has not yet.
    fn with_slot<R>(&self, f: impl FnOnce(&mut GridSlot) -> R) -> Result<R> {
        let mut loaded = self.slot.borrow_mut();
        if loaded.is_none() {
            let mut slot = GridSlot::new();
            let stored = self
                .held()?
                .and_then(|row| serde_json::from_str::<GridPush>(&row.body).ok())
                .and_then(|p| SurgeGrid::try_from(p).ok());
            if let Some(grid) = stored {
                slot.offer(grid);
            }
            *loaded = Some(slot);
        }
        Ok(f(loaded.get_or_insert_with(GridSlot::new)))
    }

    fn held(&self) -> Result<Option<Row>> {
        let rows: Vec<Row> = self
            .state
            .storage()
            .sql()
            .exec("SELECT body FROM grid WHERE id = 1", None)?
            .to_array()?;
        Ok(rows.into_iter().next())
    }

    /// The stream message for a grid: the grid as the desk prices it now.
    fn stream_message(&self, grid: &SurgeGrid, caps: &Pricing, now: u64) -> Option<String> {
        let settings = crate::config::Settings::cached(&self.env).ok()?;
        stream_message(grid, caps, &settings, now)
    }
}

/// The stream message for a grid, as the desk prices it at `now`.
fn stream_message(
    grid: &SurgeGrid,
    caps: &Pricing,
    settings: &crate::config::Settings,
    now: u64,
) -> Option<String> {
    let inputs = DeskInputs {
        caps: caps.caps.caps,
        staleness: settings.staleness,
        now: Timestamp(now),
        from_cache: false,
        emergency: caps.caps.emergency,
        degraded: caps.caps.degraded,
    };
    // A switchback's arm in force is the whole region's price now; a user
    // split's arms are per rider, so the stream shows the grid's.
    let arm = shared::experiment::arm_grid(&caps.experiments, grid, Timestamp(now), None);
    let region = caps
        .registry
        .as_deref()
        .and_then(|r| r.get(grid.region().as_str()));
    let effective = Desk::new(Some(grid), inputs)
        .with_arm(arm)
        .with_region(region)
        .effective_grid()?;
    let body = serde_json::to_string(&GridPush::from(&effective)).ok()?;
    Some(format!(r#"{{"type":"grid","grid":{body}}}"#))
}

impl Zone {
    /// The caps in force for `region` now and its experiments (read
    /// before any grid state is read, so no await separates reading the
    /// held grid from writing it).
    async fn caps(&self, region: &shared::quote::Ident, now: u64) -> Pricing {
        match crate::config::Settings::cached(&self.env) {
            Ok(s) => {
                let (caps, experiments, registry) = futures_util::future::join3(
                    crate::config::effective_caps(&self.env, &s, region, now),
                    crate::config::experiments(&self.env, &s, region, now),
                    crate::regions::registry(&self.env, &s, now),
                )
                .await;
                Pricing {
                    caps,
                    experiments,
                    registry: registry.ok(),
                }
            }
            Err(_) => Pricing::unknown(),
        }
    }

    async fn offer(&self, body: String) -> Result<Response> {
        let push: GridPush = match serde_json::from_str(&body) {
            Ok(p) => p,
            Err(e) => return error_response(&crate::error::from_json_error(&e)),
        };
        let grid = match SurgeGrid::try_from(push) {
            Ok(g) => g,
            Err(e) => return error_response(&ApiError::bad_request("invalid_grid", e.to_string())),
        };
        let now = worker::Date::now().as_millis();
        let caps = self.caps(grid.region(), now).await;
        // From here to the write, no await: pushes cannot interleave.
        let generation = grid.generation();
        let previous = match self.with_slot(|slot| slot.offer(grid))? {
            Offer::Stale { current } => {
                return json(
                    &GridPushResponse {
                        status: "stale".into(),
                        generation: current,
                        previous: None,
                        experiments: None,
                        experiments_read: false,
                    },
                    409,
                )
            }
            Offer::Applied { previous } => previous,
        };
        let written = self.state.storage().sql().exec(
            "INSERT INTO grid (id, generation, body) VALUES (1, ?, ?) \
             ON CONFLICT(id) DO UPDATE SET generation = excluded.generation, body = excluded.body",
            vec![
                i64::try_from(generation).unwrap_or(i64::MAX).into(),
                body.as_str().into(),
            ],
        );
        if let Err(e) = written {
            // Storage is the authority: forget the unsaved grid.
            self.slot.replace(None);
            return Err(e);
        }
        // The push is answered once the grid is stored; the subscribers'
        // messages are made and sent after the answer, so a crowd of
        // subscribers never makes the origin's push wait.
        let sockets = self.state.get_websockets();
        let settings = crate::config::Settings::cached(&self.env).ok();
        let held = self.with_slot(|slot| slot.get().cloned())?;
        if let (Some(grid), Some(settings), false) = (held, settings, sockets.is_empty()) {
            self.state.wait_until(async move {
                if let Some(message) = stream_message(&grid, &caps, &settings, now) {
                    for ws in sockets {
                        // A socket that is closing cannot be sent to; the
                        // others can.
                        let _ = ws.send_with_str(&message);
                    }
                }
            });
        }
        json(
            &GridPushResponse {
                status: "applied".into(),
                generation,
                previous,
                experiments: None,
                experiments_read: false,
            },
            200,
        )
    }

    async fn subscribe(&self, region: Option<shared::quote::Ident>) -> Result<Response> {
        let now = worker::Date::now().as_millis();
        let caps = match &region {
            Some(r) => self.caps(r, now).await,
            None => Pricing::unknown(),
        };
        let pair = WebSocketPair::new()?;
        let limit = crate::config::Settings::cached(&self.env)
            .map_or(DEFAULT_MAX_SUBSCRIBERS, |s| s.max_zone_subscribers);
        if self.state.get_websockets().len() >= limit {
            // Full: the socket opens and closes at once with a reason the
            // client can read (1013: try again later).
            pair.server.accept()?;
            let reason = format!(r#"{{"code":"zone_full","limit":{limit}}}"#);
            pair.server.close(Some(1013), Some(reason))?;
            return Response::from_websocket(pair.client);
        }
        self.state.accept_web_socket(&pair.server);
        let message =
            self.with_slot(|slot| slot.get().and_then(|g| self.stream_message(g, &caps, now)))?;
        if let Some(message) = message {
            let _ = pair.server.send_with_str(message);
        }
        Response::from_websocket(pair.client)
    }
}

impl DurableObject for Zone {
    fn new(state: State, env: Env) -> Self {
        // Creating a table that exists is a no-op; failure surfaces on use.
        let _ = state.storage().sql().exec(
            "CREATE TABLE IF NOT EXISTS grid (id INTEGER PRIMARY KEY CHECK (id = 1), \
             generation INTEGER NOT NULL, body TEXT NOT NULL)",
            None,
        );
        Self {
            state,
            env,
            slot: RefCell::new(None),
        }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        match (req.method(), req.path().as_str()) {
            (Method::Get, "/grid") => match self.held()? {
                Some(row) => {
                    let mut r = Response::ok(row.body)?;
                    r.headers_mut().set("content-type", "application/json")?;
                    Ok(r)
                }
                None => error_response(&ApiError::new(404, "no_grid", "no grid yet")),
            },
            (Method::Put, "/grid") => {
                let body = req.text().await?;
                self.offer(body).await
            }
            (Method::Get, "/stream") => {
                // The caller names the region (the object does not know
                // its own name).
                let region = req
                    .url()
                    .ok()
                    .and_then(|u| {
                        u.query_pairs()
                            .find(|(k, _)| k == "region")
                            .map(|(_, v)| v.into_owned())
                    })
                    .and_then(|r| shared::quote::Ident::new(&r).ok());
                self.subscribe(region).await
            }
            _ => error_response(&ApiError::not_found(&req.path())),
        }
    }

    async fn websocket_message(&self, ws: WebSocket, msg: WebSocketIncomingMessage) -> Result<()> {
        if let WebSocketIncomingMessage::String(s) = msg {
            if s == "ping" {
                let _ = ws.send_with_str("pong");
            }
        }
        Ok(())
    }

    async fn websocket_close(
        &self,
        ws: WebSocket,
        _code: usize,
        _reason: String,
        _clean: bool,
    ) -> Result<()> {
        let _ = ws.close(Some(1000), Some("closing"));
        Ok(())
    }

    async fn websocket_error(&self, _ws: WebSocket, _error: worker::Error) -> Result<()> {
        Ok(())
    }

    async fn alarm(&self) -> Result<Response> {
        Response::ok("no alarms are scheduled")
    }
}
