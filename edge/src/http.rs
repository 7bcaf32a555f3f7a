//! Small HTTP helpers: JSON responses, bounded bodies, CORS, client identity.

use js_sys::futures::JsFuture;
use serde::Serialize;
use wasm_bindgen::{JsCast, JsValue};
use worker::{Headers, Response};

use crate::error::ApiError;

/// A request as the runtime hands it to the worker. Handlers take the
/// runtime's own request, not `worker::Request`: converting to that reads
/// `request.cf`, which workerd parses from JSON on first access, on every
/// request, for a property this worker never reads (about a tenth of a
/// `POST /health`'s isolate time under `wrangler dev`'s profiler).
pub use worker::worker_sys::web_sys::Request as Incoming;

/// A request's path (`/api/v1/...`). The runtime's URL is serialized
/// (WHATWG): after the scheme's `://` the first `/` begins the path, which
/// ends at `?` or `#`.
pub fn path(req: &Incoming) -> String {
    let url = req.url();
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    let rest = &url[after_scheme..];
    let path = rest.find('/').map_or("/", |i| &rest[i..]);
    let end = path.find(['?', '#']).unwrap_or(path.len());
    path[..end].to_owned()
}

/// A request's URL, parsed (for its query).
pub fn url(req: &Incoming) -> Result<worker::Url, ApiError> {
    worker::Url::parse(&req.url()).map_err(|_| ApiError::bad_request("invalid_url", "bad URL"))
}

/// Largest JSON body accepted on public endpoints.
pub const MAX_BODY_BYTES: usize = 16 * 1024;
/// Largest grid push accepted (50,000 cells at ~90 bytes).
pub const MAX_GRID_BYTES: usize = 6 * 1024 * 1024;

/// A JSON response with a status.
pub fn json<T: Serialize>(value: &T, status: u16) -> worker::Result<Response> {
    let mut r = Response::from_json(value)?.with_status(status);
    r.headers_mut().set("cache-control", "no-store")?;
    Ok(r)
}

/// The error's JSON response.
pub fn error_response(e: &ApiError) -> worker::Result<Response> {
    let mut r = json(&e.body(), e.status)?;
    if let Some(a) = e.allow {
        r.headers_mut().set("allow", a)?;
    }
    if let Some(s) = e.retry_after {
        r.headers_mut().set("retry-after", &s.to_string())?;
    }
    Ok(r)
}

/// Checks a JSON request before its body is read: the content type, and
/// the declared length against `limit`.
pub fn check_json_request(req: &Incoming, limit: usize) -> Result<(), ApiError> {
    let ct = req
        .headers()
        .get("content-type")
        .ok()
        .flatten()
        .unwrap_or_default();
    let essence = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if essence != "application/json" && essence != "application/x-ndjson" {
        return Err(ApiError::new(
            415,
            "unsupported_media_type",
            "send the body as application/json",
        ));
    }
    if declared_length(req).is_some_and(|n| n > limit) {
        return Err(too_large(limit));
    }
    Ok(())
}

/// The body's declared length (`Content-Length`), if any.
fn declared_length(req: &Incoming) -> Option<usize> {
    req.headers()
        .get("content-length")
        .ok()
        .flatten()
        .and_then(|v| v.parse::<usize>().ok())
}

/// What a capped body read resolves to when the body passed its limit.
const OVER_LIMIT: &str = "over-limit";

/// 400 `invalid_body`: the body could not be read.
pub fn unreadable() -> ApiError {
    ApiError::bad_request("invalid_body", "the request body could not be read")
}

/// The request body's promise, for callers that wait for it together with
/// other promises. Capped while it streams: a body with a declared length
/// (already checked against `limit`, and which the runtime holds it to) is
/// the runtime's `arrayBuffer()`; one without (chunked) is read chunk by
/// chunk and abandoned as soon as it passes `limit`, so an isolate never
/// buffers more than `limit` bytes of it.
pub fn body_promise(req: &Incoming, limit: usize) -> Result<js_sys::Promise, ApiError> {
    if declared_length(req).is_some() {
        return req.array_buffer().map_err(|_| unreadable());
    }
    let stream = js_sys::Reflect::get(req, &JsValue::from_str("body")).map_err(|_| unreadable())?;
    if stream.is_null() || stream.is_undefined() {
        let empty: JsValue = js_sys::Uint8Array::new_with_length(0).into();
        return Ok(js_sys::Promise::resolve(&empty));
    }
    let method = |target: &JsValue, name: &str| -> Result<js_sys::Function, JsValue> {
        js_sys::Reflect::get(target, &JsValue::from_str(name))?.dyn_into()
    };
    let reader = method(&stream, "getReader")
        .and_then(|f| f.call0(&stream))
        .map_err(|_| unreadable())?;
    Ok(js_sys::futures::future_to_promise(async move {
        let read = method(&reader, "read")?;
        let mut out: Vec<u8> = Vec::new();
        loop {
            let chunk = JsFuture::from(read.call0(&reader)?.dyn_into::<js_sys::Promise>()?).await?;
            if js_sys::Reflect::get(&chunk, &JsValue::from_str("done"))?.as_bool() == Some(true) {
                return Ok(js_sys::Uint8Array::from(&out[..]).into());
            }
            let value = js_sys::Uint8Array::new(&js_sys::Reflect::get(
                &chunk,
                &JsValue::from_str("value"),
            )?);
            if out.len() + value.length() as usize > limit {
                // Stop the upload: nothing more of it is read.
                if let Ok(cancel) = method(&reader, "cancel") {
                    let _ = cancel.call0(&reader);
                }
                return Ok(JsValue::from_str(OVER_LIMIT));
            }
            out.extend_from_slice(&value.to_vec());
        }
    }))
}

/// The bytes of a body (as its promise resolved: an `ArrayBuffer`, or the
/// capped reader's bytes or verdict), within `limit`.
pub fn body_bytes(buffer: &JsValue, limit: usize) -> Result<Vec<u8>, ApiError> {
    if buffer.as_string().as_deref() == Some(OVER_LIMIT) {
        return Err(too_large(limit));
    }
    let bytes = if buffer.is_instance_of::<js_sys::ArrayBuffer>() {
        js_sys::Uint8Array::new(buffer)
    } else if buffer.is_instance_of::<js_sys::Uint8Array>() {
        buffer.clone().unchecked_into()
    } else {
        return Err(unreadable());
    };
    if bytes.length() as usize > limit {
        return Err(too_large(limit));
    }
    Ok(bytes.to_vec())
}

/// Reads a JSON request body: checks the content type and the size limit
/// (from the declared length first, then the bytes actually read).
pub async fn read_json_body(req: &Incoming, limit: usize) -> Result<Vec<u8>, ApiError> {
    check_json_request(req, limit)?;
    let buffer = JsFuture::from(body_promise(req, limit)?)
        .await
        .map_err(|_| unreadable())?;
    body_bytes(&buffer, limit)
}

fn too_large(limit: usize) -> ApiError {
    ApiError::new(
        413,
        "body_too_large",
        format!("request body is larger than {limit} bytes"),
    )
}

/// The client's IP as Cloudflare reports it (`CF-Connecting-IP`).
pub fn client_ip(req: &Incoming) -> String {
    req.headers()
        .get("cf-connecting-ip")
        .ok()
        .flatten()
        .map(|s| s.chars().take(64).collect())
        .unwrap_or_else(|| "unknown".to_owned())
}

/// Adds CORS headers when the request's Origin is allowed. `allowed` is a
/// comma-separated list of origins; `*` allows any.
pub fn apply_cors(resp: &mut Response, origin: Option<&str>, allowed: &str) -> worker::Result<()> {
    let Some(origin) = origin else {
        return Ok(());
    };
    let ok = allowed
        .split(',')
        .map(str::trim)
        .any(|a| a == "*" || a == origin);
    if ok {
        let h = resp.headers_mut();
        h.set("access-control-allow-origin", origin)?;
        h.set("vary", "Origin")?;
    }
    Ok(())
}

/// The preflight answer.
pub fn preflight(origin: Option<&str>, allowed: &str) -> worker::Result<Response> {
    let headers = Headers::new();
    headers.set("access-control-allow-methods", "GET, POST, PUT, OPTIONS")?;
    headers.set(
        "access-control-allow-headers",
        "content-type, authorization, idempotency-key",
    )?;
    headers.set("access-control-max-age", "86400")?;
    let mut r = Response::empty()?.with_status(204).with_headers(headers);
    apply_cors(&mut r, origin, allowed)?;
    Ok(r)
}
