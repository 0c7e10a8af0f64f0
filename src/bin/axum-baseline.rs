//! The benchmark rival: the same API written as a strong axum user would, on a
//! multi-thread tokio runtime with as many workers as our shards. Same endpoints,
//! validation rules and error messages (the rule messages and the record encoding come
//! from the epro-ingest library), same bearer-token check, same record bytes appended
//! to a log file. Two storage modes, stated plainly:
//!
//! - `buffered` (default): records go to an in-memory buffer flushed to the file by a
//!   task every 5 ms with no fsync: fast, and not durable.
//! - `durable`: every request writes its record and calls fdatasync before answering.
//!
//! In both, records are hash-chained as the server chains them (each carries the
//! SHA-256 of the one before), under the lock that orders them in the file.
//!
//! `cargo run --release --features bench-servers --bin axum-baseline -- --listen
//! 127.0.0.1:8081 --workers 1 --data-dir /tmp/axum --config epro.toml [--durable]`

use std::borrow::Cow;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use clap::Parser;
use serde::Deserialize;
use serde_json::json;
use serde_json::value::RawValue;

use epro_ingest::base::clock;
use epro_ingest::config::{Config, Overrides};
use epro_ingest::domain::auth::{authenticate, Principal, Role};
use epro_ingest::domain::index::{Index, Query};
use epro_ingest::domain::malformed::{self, Fault};
use epro_ingest::domain::merge::{subject_ids, subjects_json, summary_json};
use epro_ingest::domain::validate::{
    is_clean_id, is_json_media_type, prescan, Invalid, Rules, MAX_DEPTH, MAX_ID, NO_PROJECT,
    SUBMIT_FIELDS, TAG_FIELDS,
};
use epro_ingest::log::record::{hash, Hash, Kind, Record, GENESIS};
use epro_ingest::route::{Access, Route};

#[derive(Parser)]
struct Args {
    #[arg(long, default_value = "127.0.0.1:8081")]
    listen: String,
    #[arg(long, default_value_t = 1)]
    workers: usize,
    #[arg(long)]
    data_dir: PathBuf,
    #[arg(long)]
    config: Option<PathBuf>,
    /// fdatasync every record before answering.
    #[arg(long)]
    durable: bool,
}

struct App {
    principals: Vec<Principal>,
    index: Mutex<Index>,
    seq: AtomicU64,
    /// Buffered mode: records waiting for the flusher, and the last one's hash.
    pending: Mutex<(Vec<u8>, Hash)>,
    /// The log file, and (durable mode) the last record's hash.
    file: Mutex<(std::fs::File, Hash)>,
    durable: bool,
}

/// Appends `record` to `out` chained after `chain`, and moves the chain on.
fn encode_chained(record: Record<'_>, chain: &mut Hash, out: &mut Vec<u8>) {
    let start = out.len();
    let prev = *chain;
    Record {
        prev: Some(&prev),
        ..record
    }
    .encode(out)
    .expect("fits the format");
    *chain = hash(&out[start..]);
}

type Shared = Arc<App>;

fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

fn invalid(e: Invalid) -> Response {
    let mut number = itoa::Buffer::new();
    let parts = e.message(&mut number);
    let message: String = parts.iter().map(|p| String::from_utf8_lossy(p)).collect();
    error(StatusCode::BAD_REQUEST, &message)
}

/// A refusal before any handler work: status and message.
type Refusal = (StatusCode, &'static str);

fn refused((status, message): Refusal) -> Response {
    error(status, message)
}

/// Authenticates for `route` under the access rule of the server's own route table.
fn auth<'a>(app: &'a App, headers: &HeaderMap, route: Route) -> Result<&'a Principal, Refusal> {
    let value = headers.get(header::AUTHORIZATION).map(|v| v.as_bytes());
    let unauthorized = (StatusCode::UNAUTHORIZED, "missing or unknown bearer token");
    let who = authenticate(&app.principals, value).ok_or(unauthorized)?;
    let roles: &[Role] = match route.access() {
        Access::Open => return Ok(who),
        Access::Roles(roles) => roles,
    };
    if !roles.contains(&who.role) {
        return Err((
            StatusCode::FORBIDDEN,
            "this principal's role may not use this endpoint",
        ));
    }
    Ok(who)
}

fn require_json(headers: &HeaderMap) -> Result<(), Refusal> {
    if headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| is_json_media_type(v.as_bytes()))
    {
        Ok(())
    } else {
        Err((
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Content-Type must be application/json (with a charset, only UTF-8)",
        ))
    }
}

/// Borrowed, zero-copy view of a body; each field checked by the shared rules.
#[derive(Deserialize)]
struct Fields<'a> {
    #[serde(rename = "patientId", borrow)]
    patient_id: Option<&'a RawValue>,
    #[serde(rename = "reportData", borrow)]
    report_data: Option<&'a RawValue>,
    #[serde(borrow)]
    timestamp: Option<&'a RawValue>,
    #[serde(rename = "projectId", borrow)]
    project_id: Option<&'a RawValue>,
    #[serde(rename = "siteId", borrow)]
    site_id: Option<&'a RawValue>,
    #[serde(rename = "submissionId", borrow)]
    submission_id: Option<&'a RawValue>,
    #[serde(rename = "tagName", borrow)]
    tag_name: Option<&'a RawValue>,
}

fn parse(body: &[u8]) -> Result<Fields<'_>, Invalid> {
    prescan(body, MAX_DEPTH, Rules::Create)?;
    serde_json::from_slice(body).map_err(|e| {
        let text = e.to_string();
        if let Some(field) = text
            .strip_prefix("duplicate field `")
            .and_then(|t| t.split('`').next())
        {
            for name in SUBMIT_FIELDS.iter().chain(&TAG_FIELDS) {
                if *name == field {
                    return Invalid::Duplicate(name);
                }
            }
        }
        if e.is_data() {
            Invalid::NotObject
        } else {
            // serde_json reports line and column; bodies are one line in practice.
            // serde_json stops at the first fault; a string's fault is named only if it
            // is that one (no later than where serde_json stopped).
            let at = e.column().saturating_sub(1);
            let (at, fault) = if text.starts_with("number out of range") {
                (at, Fault::Number)
            } else {
                malformed::in_strings(body)
                    .filter(|&(found, _)| found <= at)
                    .unwrap_or((at, Fault::Syntax))
            };
            Invalid::Malformed(at, fault)
        }
    })
}

fn text<'a>(
    raw: Option<&'a RawValue>,
    name: &'static str,
) -> Result<Option<Cow<'a, str>>, Invalid> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    let value: Cow<'a, str> =
        serde_json::from_str(raw.get()).map_err(|_| Invalid::NotString(name))?;
    if value.is_empty() {
        return Err(Invalid::Empty(name));
    }
    if value.len() > MAX_ID {
        return Err(Invalid::TooLong(name));
    }
    if !is_clean_id(&value) {
        return Err(Invalid::Control(name));
    }
    Ok(Some(value))
}

fn required<'a>(raw: Option<&'a RawValue>, name: &'static str) -> Result<Cow<'a, str>, Invalid> {
    text(raw, name)?.ok_or(Invalid::Missing(name))
}

/// A record's fixed fields; principal and body are filled in by the caller.
fn record_at(kind: Kind, seq: u64, received_ns: u64) -> Record<'static> {
    Record {
        kind,
        shard: 0,
        seq,
        received_ns,
        group_index: 0,
        principal: "",
        key: None,
        body: b"",
        prev: None,
    }
}

/// Appends a record: to the buffer (flushed by a task), or written and synced now.
async fn store(
    app: &Shared,
    kind: Kind,
    who: &Principal,
    received_ns: u64,
    body: &Bytes,
) -> Result<u64, Refusal> {
    let seq = app.seq.fetch_add(1, Ordering::Relaxed);
    if !app.durable {
        let record = Record {
            principal: &who.id,
            body,
            ..record_at(kind, seq, received_ns)
        };
        let mut pending = app.pending.lock().unwrap();
        let (bytes, chain) = &mut *pending;
        encode_chained(record, chain, bytes);
        return Ok(seq);
    }
    let app = Arc::clone(app);
    let (principal, body) = (who.id.clone(), body.clone());
    tokio::task::spawn_blocking(move || {
        let mut bytes = Vec::with_capacity(body.len() + 128);
        let record = Record {
            principal: &principal,
            body: &body,
            ..record_at(kind, seq, received_ns)
        };
        let mut file = app.file.lock().unwrap();
        let (file, chain) = &mut *file;
        encode_chained(record, chain, &mut bytes);
        file.write_all(&bytes).and_then(|()| file.sync_data())
    })
    .await
    .map_err(|_| (StatusCode::INTERNAL_SERVER_ERROR, "internal error"))?
    .map_err(|_| (StatusCode::SERVICE_UNAVAILABLE, "storage failed"))?;
    Ok(seq)
}

async fn submit(State(app): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let who = match auth(&app, &headers, Route::Submit) {
        Ok(who) => who.clone(),
        Err(r) => return refused(r),
    };
    if let Err(r) = require_json(&headers) {
        return refused(r);
    }
    let checked = (|| {
        let f = parse(&body)?;
        let patient = required(f.patient_id, "patientId")?.into_owned();
        let report_ok = f.report_data.is_some_and(|raw| {
            let t = raw.get().trim();
            (t.starts_with('"') && t != "\"\"")
                || (t.starts_with('{') && !t[1..t.len() - 1].trim().is_empty())
        });
        if f.report_data.is_none() {
            return Err(Invalid::Missing("reportData"));
        }
        if !report_ok {
            return Err(Invalid::ReportDataType);
        }
        if let Some(raw) = f.timestamp {
            let ts: Cow<str> =
                serde_json::from_str(raw.get()).map_err(|_| Invalid::NotString("timestamp"))?;
            if !clock::is_rfc3339(&ts) {
                return Err(Invalid::Timestamp);
            }
        }
        let project = text(f.project_id, "projectId")?.map(Cow::into_owned);
        if project.as_deref() == Some(NO_PROJECT) {
            return Err(Invalid::ReservedProject);
        }
        let site = text(f.site_id, "siteId")?.map(Cow::into_owned);
        text(f.submission_id, "submissionId")?;
        Ok((patient, project, site))
    })();
    let (patient, project, site) = match checked {
        Ok(fields) => fields,
        Err(e) => return invalid(e),
    };
    if project.as_deref().is_some_and(|p| !who.may_access(p)) {
        return error(
            StatusCode::FORBIDDEN,
            "this principal may not write to the report's projectId",
        );
    }
    let received_ns = clock::now_ns();
    let seq = match store(&app, Kind::Report, &who, received_ns, &body).await {
        Ok(seq) => seq,
        Err(r) => return refused(r),
    };
    app.index.lock().unwrap().add_report(
        &patient,
        project.as_deref(),
        site.as_deref(),
        received_ns,
    );
    let at = String::from_utf8_lossy(&clock::format_rfc3339(received_ns)).into_owned();
    Json(json!({"status": "success", "message": "report received", "id": format!("s0-{seq}"), "receivedAt": at})).into_response()
}

async fn add_tag(State(app): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let who = match auth(&app, &headers, Route::AddTag) {
        Ok(who) => who.clone(),
        Err(r) => return refused(r),
    };
    if let Err(r) = require_json(&headers) {
        return refused(r);
    }
    let fields = parse(&body)
        .and_then(|f| {
            Ok((
                required(f.patient_id, "patientId")?.into_owned(),
                required(f.tag_name, "tagName")?.into_owned(),
                required(f.project_id, "projectId")?.into_owned(),
            ))
        })
        .and_then(|(patient, tag, project)| match project.as_str() {
            NO_PROJECT => Err(Invalid::ReservedProject),
            _ => Ok((patient, tag, project)),
        });
    let (patient, tag, project) = match fields {
        Ok(fields) => fields,
        Err(e) => return invalid(e),
    };
    if !who.may_access(&project) {
        return error(
            StatusCode::FORBIDDEN,
            "this principal may not write to the tag's projectId",
        );
    }
    if let Err(r) = store(&app, Kind::Tag, &who, clock::now_ns(), &body).await {
        return refused(r);
    }
    app.index.lock().unwrap().add_tag(&project, &patient, &tag);
    Json(json!({"success": true})).into_response()
}

async fn permissions(
    State(app): State<Shared>,
    headers: HeaderMap,
    Path(user): Path<String>,
) -> Response {
    let who = match auth(&app, &headers, Route::Permissions) {
        Ok(who) => who,
        Err(r) => return refused(r),
    };
    if who.id != user && who.role != Role::Admin {
        return error(
            StatusCode::FORBIDDEN,
            "only admin may read another user's permissions",
        );
    }
    match app.principals.iter().find(|p| p.id == user) {
        Some(target) => Json(target.permissions_json()).into_response(),
        None => error(StatusCode::NOT_FOUND, "no such user"),
    }
}

/// Staff of the project or admin may read it.
fn may_read(app: &App, headers: &HeaderMap, route: Route, project: &str) -> Option<Refusal> {
    match auth(app, headers, route) {
        Ok(who) if who.may_access(project) => None,
        Ok(_) => Some((
            StatusCode::FORBIDDEN,
            "this principal may not read this project",
        )),
        Err(refusal) => Some(refusal),
    }
}

async fn subjects(
    State(app): State<Shared>,
    headers: HeaderMap,
    Path((project, site)): Path<(String, String)>,
) -> Response {
    if let Some(refusal) = may_read(&app, &headers, Route::Subjects, &project) {
        return refused(refusal);
    }
    let index = app.index.lock().unwrap();
    let rows = index.answer(&Query::Subjects {
        project: project.clone(),
        site: site.clone(),
    });
    let patients = subject_ids(std::slice::from_ref(&rows));
    let tags = index.answer(&Query::Tags {
        project: project.clone(),
        patients,
    });
    Json(subjects_json(&project, &site, vec![rows], vec![tags])).into_response()
}

async fn summary(
    State(app): State<Shared>,
    headers: HeaderMap,
    Path(project): Path<String>,
) -> Response {
    if let Some(refusal) = may_read(&app, &headers, Route::Summary, &project) {
        return refused(refusal);
    }
    let part = app.index.lock().unwrap().answer(&Query::Summary {
        project: project.clone(),
    });
    Json(summary_json(&project, vec![part])).into_response()
}

async fn ok() -> &'static str {
    "ok"
}

fn main() -> Result<(), String> {
    let args = Args::parse();
    let overrides = Overrides {
        data_dir: Some(args.data_dir.clone()),
        ..Overrides::default()
    };
    let config = Config::load(args.config.as_deref(), overrides).map_err(|e| e.to_string())?;
    std::fs::create_dir_all(&args.data_dir).map_err(|e| e.to_string())?;
    let path = args.data_dir.join("axum.log");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|e| e.to_string())?;
    let app = Arc::new(App {
        principals: config.principals.clone(),
        index: Mutex::new(Index::default()),
        seq: AtomicU64::new(1),
        pending: Mutex::new((Vec::new(), GENESIS)),
        file: Mutex::new((file, GENESIS)),
        durable: args.durable,
    });
    let router = Router::new()
        .route("/healthz", get(ok))
        .route("/livez", get(ok))
        .route("/readyz", get(ok))
        .route("/epro/submit", post(submit))
        .route("/api/v1/tags/add", post(add_tag))
        .route(
            "/api/v1/projects/{project_id}/sites/{site_id}/subjects",
            get(subjects),
        )
        .route(
            "/api/v1/projects/{project_id}/reports/summary",
            get(summary),
        )
        .route("/api/v1/users/{user_id}/permissions", get(permissions))
        .layer(DefaultBodyLimit::max(config.limits.max_body_bytes))
        .with_state(Arc::clone(&app));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.workers)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async move {
        if !app.durable {
            let flusher = Arc::clone(&app);
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_millis(5));
                loop {
                    tick.tick().await;
                    let batch = std::mem::take(&mut flusher.pending.lock().unwrap().0);
                    if !batch.is_empty() {
                        let app = Arc::clone(&flusher);
                        let _ = tokio::task::spawn_blocking(move || {
                            app.file.lock().unwrap().0.write_all(&batch)
                        })
                        .await;
                    }
                }
            });
        }
        let listener = tokio::net::TcpListener::bind(&args.listen)
            .await
            .map_err(|e| e.to_string())?;
        eprintln!(
            "listening on {}",
            listener.local_addr().map_err(|e| e.to_string())?
        );
        axum::serve(listener, router)
            .await
            .map_err(|e| e.to_string())
    })
}
