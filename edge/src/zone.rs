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
//!   shows what a quote charges. A subscriber that asked for changes
//!   (`changes=1`) gets, instead of a whole grid, what changed from the
//!   grid it holds when that is smaller ([`shared::api::stream`]): each
//!   socket's attachment names the grid it holds, and changes are made
//!   only from the grid this instance last sent, so they always apply
//!   (after the object hibernates every subscriber gets a whole grid). A zone takes at most
//!   `MAX_ZONE_SUBSCRIBERS` (default 1,000): the next socket is closed at
//!   once with code 1013 and the reason `{"code":"zone_full","limit":N}`.

use std::cell::RefCell;
use std::rc::Rc;

use serde::{Deserialize, Serialize};
use shared::api::stream::{digest, message_for};
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
    /// The stream grid this instance last sent, with its digest: the base
    /// of the changes it sends next.
    last_sent: Rc<RefCell<Option<(String, GridPush)>>>,
}

/// What a subscriber's socket remembers (its attachment, kept through
/// hibernation).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Subscriber {
    /// It asked for changes (`changes=1`).
    changes: bool,
    /// The digest of the grid it holds.
    held: Option<String>,
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

    /// The stream grid of a grid: as the desk prices it now.
    fn stream_grid(&self, grid: &SurgeGrid, caps: &Pricing, now: u64) -> Option<GridPush> {
        let settings = crate::config::Settings::cached(&self.env).ok()?;
        stream_grid(grid, caps, &settings, now)
    }
}

/// Sends `next` to every socket: the changes from the grid it holds when it
/// asked for them and holds `base`, else the whole grid; then notes what
/// each holds.
fn fan_out(sockets: &[WebSocket], base: Option<&(String, GridPush)>, next: &GridPush) {
    let whole = message_for(None, next);
    let changed = base.map(|(_, grid)| message_for(Some(grid), next));
    let held = digest(next);
    for ws in sockets {
        let mut sub = ws
            .deserialize_attachment::<Subscriber>()
            .ok()
            .flatten()
            .unwrap_or_default();
        let message = match (&changed, base) {
            (Some(m), Some((d, _))) if sub.changes && sub.held.as_deref() == Some(d) => m,
            _ => &whole,
        };
        // A socket that is closing cannot be sent to; the others can.
        if ws.send_with_str(message).is_ok() {
            sub.held = Some(held.clone());
            let _ = ws.serialize_attachment(&sub);
        }
    }
}

/// The stream grid of a grid, as the desk prices it at `now`.
fn stream_grid(
    grid: &SurgeGrid,
    caps: &Pricing,
    settings: &crate::config::Settings,
    now: u64,
) -> Option<GridPush> {
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
    Some(GridPush::from(&effective))
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
            let last_sent = Rc::clone(&self.last_sent);
            self.state.wait_until(async move {
                if let Some(next) = stream_grid(&grid, &caps, &settings, now) {
                    let base = last_sent.borrow_mut().take();
                    fan_out(&sockets, base.as_ref(), &next);
                    *last_sent.borrow_mut() = Some((digest(&next), next));
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

    async fn subscribe(
        &self,
        region: Option<shared::quote::Ident>,
        changes: bool,
    ) -> Result<Response> {
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
        let grid =
            self.with_slot(|slot| slot.get().and_then(|g| self.stream_grid(g, &caps, now)))?;
        let mut sub = Subscriber {
            changes,
            held: None,
        };
        if let Some(grid) = grid {
            if pair.server.send_with_str(message_for(None, &grid)).is_ok() {
                let d = digest(&grid);
                sub.held = Some(d.clone());
                *self.last_sent.borrow_mut() = Some((d, grid));
            }
        }
        let _ = pair.server.serialize_attachment(&sub);
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
            last_sent: Rc::default(),
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
                // its own name) and whether the subscriber takes changes.
                let url = req.url().ok();
                let query = |name: &str| {
                    url.as_ref().and_then(|u| {
                        u.query_pairs()
                            .find(|(k, _)| k == name)
                            .map(|(_, v)| v.into_owned())
                    })
                };
                let region = query("region").and_then(|r| shared::quote::Ident::new(&r).ok());
                let changes = query("changes").as_deref() == Some("1");
                self.subscribe(region, changes).await
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
