//! Dispatch: route the request and run its handler, writing exactly one response.
//! The health endpoints are served here; the API endpoints answer 501 until their
//! handlers exist.

use crate::error::Reject;
use crate::http::parse::Head;
use crate::http::request::Request;
use crate::http::response::{self, ConnHeader, Status};
use crate::route::{self, tree::allow_header, Route, Routed};
use crate::shard::Shard;

/// Handles one request, appending its response to `out`. Returns whether the
/// connection may carry another request.
pub fn dispatch(shard: &Shard, request: &Request<'_>, out: &mut Vec<u8>) -> bool {
    let head = &request.head;
    let conn = conn_header(head);
    let date = shard.date.get();
    match route::lookup(head.method, head.path) {
        Routed::Found(route, _params) => match route {
            Route::Healthz | Route::Livez => {
                response::write(out, Status::Ok, &date, conn, response::TEXT, None, &[b"ok"]);
            }
            Route::Readyz if shard.is_ready() => {
                response::write(out, Status::Ok, &date, conn, response::TEXT, None, &[b"ok"]);
            }
            Route::Readyz => {
                response::write_json_error(
                    out,
                    Status::ServiceUnavailable,
                    "not ready",
                    &date,
                    conn,
                    None,
                );
            }
            Route::Submit
            | Route::AddTag
            | Route::Subjects
            | Route::Summary
            | Route::Permissions => {
                response::write_reject(out, Reject::NotImplemented, &date, conn, None);
            }
        },
        Routed::MethodNotAllowed(allowed) => {
            let mut allow = [0u8; 64];
            let len = allow_header(allowed, &mut allow);
            let extra = Some((&b"Allow"[..], &allow[..len]));
            response::write_reject(out, Reject::MethodNotAllowed, &date, conn, extra);
        }
        Routed::NotFound => response::write_reject(out, Reject::NotFound, &date, conn, None),
    }
    head.keep_alive
}

/// What the response says about the connection: HTTP/1.0 keep-alive must be confirmed,
/// a close must be announced.
fn conn_header(head: &Head<'_>) -> ConnHeader {
    match (head.keep_alive, head.http10) {
        (false, _) => ConnHeader::Close,
        (true, true) => ConnHeader::KeepAlive,
        (true, false) => ConnHeader::None,
    }
}

/// Framing rejections close the connection before any handler runs; they are logged at
/// debug level so a flood of garbage cannot flood the log.
pub fn log_rejection(shard: &Shard, reject: Reject) {
    log::debug!("shard {}: rejected request: {reject:?}", shard.id);
}
