//! The read APIs that aggregate across shards: subjects of a site, a project's report
//! summary, `/readyz` (every shard able to write), `/metrics` (every shard's counters)
//! and `/api/v1/log/heads` (every shard's chain head). They run after the onion has
//! authenticated and authorized the request, ask every shard over the mesh
//! ([`crate::shard::peers`]), merge ([`crate::domain::merge`]) and answer. Counts are exact: every
//! acknowledged record is in exactly one shard's index.

use crate::api::ack;
use crate::api::outcome::Read;
use crate::api::refusal::{Refusal, Why, FHIR_JSON};
use crate::base::clock;
use crate::domain::index::{Answer, Query};
use crate::domain::merge::{subject_ids, subjects_json, summary_json};
use crate::domain::validate::Validator;
use crate::http::response::{Reply, Status, JSON, TEXT};
use crate::log::files::shard_dir;
use crate::log::heads::Head;
use crate::log::locations::{read_record, Location, Stored};
use crate::log::record::{Kind, GENESIS};
use crate::shard::context::Context;

/// Answers `read` through `reply`: 200 with the merged JSON, or the refusal (503 when
/// a shard cannot answer).
pub async fn answer(ctx: &Context, read: &Read, reply: &mut Reply<'_>) -> Result<(), Refusal> {
    #[cfg(feature = "test-seams")]
    let seam = ctx.config().test_seams.panic_project.clone();
    let body = match read {
        Read::Ready => return ready(ctx, reply).await,
        Read::Metrics => return metrics(ctx, reply).await,
        Read::Heads => return heads(ctx, reply).await,
        Read::Record {
            shard,
            seq,
            principal,
            fhir,
        } => {
            let found = record(ctx, (*shard, *seq), principal, *fhir, reply).await;
            // The FHIR read refuses about the resource.
            return found.map_err(|r| if *fhir { r.about_resource() } else { r });
        }
        Read::Subjects { project, site } => subjects(ctx, project, site).await,
        Read::Summary { project } => summary(ctx, project).await,
    };
    #[cfg(feature = "test-seams")]
    if let (Some(seam), Read::Subjects { project, .. } | Read::Summary { project }) = (seam, read) {
        if seam == *project {
            panic!("test seam: panic_project");
        }
    }
    let body = body.map_err(Refusal::Unavailable)?;
    reply.ok(JSON, &[body.to_string().as_bytes()]);
    Ok(())
}

/// 200 `ok` when every other shard can take writes too, else 503 naming one that cannot.
async fn ready(ctx: &Context, reply: &mut Reply<'_>) -> Result<(), Refusal> {
    let unhealthy = match ctx.peers() {
        Some(peers) => peers.first_unhealthy().await,
        None => Some((ctx.shard(), None)),
    };
    if let Some((shard, fault)) = unhealthy {
        return Err(Refusal::NotReady { shard, fault });
    }
    reply.ok(TEXT, &[b"ok"]);
    Ok(())
}

/// The Prometheus text exposition of every shard's counters.
async fn metrics(ctx: &Context, reply: &mut Reply<'_>) -> Result<(), Refusal> {
    let all = match ctx.peers() {
        Some(peers) => peers.metrics_all(ctx.shard_metrics()).await,
        None => Ok(vec![ctx.shard_metrics()]),
    };
    let all = all.map_err(Refusal::Unavailable)?;
    reply.ok(EXPOSITION, &[crate::metrics::render(&all).as_bytes()]);
    Ok(())
}

/// `GET /api/v1/log/heads`: each shard's chain head on stable storage, in the format of
/// `verify --heads` (so the answer, saved, is a file for `verify --against`).
async fn heads(ctx: &Context, reply: &mut Reply<'_>) -> Result<(), Refusal> {
    let local = ctx.log().map_or((0, GENESIS), |log| log.durable_head());
    let all = match ctx.peers() {
        Some(peers) => peers.heads_all(local).await,
        None => Ok(vec![(ctx.shard(), local.0, local.1)]),
    };
    let lines: String = all
        .map_err(Refusal::Unavailable)?
        .iter()
        .map(|&(shard, seq, hash)| {
            let shard = u16::try_from(shard).unwrap_or(u16::MAX);
            Head { shard, seq, hash }.line()
        })
        .collect();
    reply.ok(TEXT, &[lines.as_bytes()]);
    Ok(())
}

/// Where record `seq` of this shard's log is, once it is durable (a record stored but
/// still being synced is waited for); `None`: no such record.
pub async fn locate(ctx: &Context, seq: u64) -> Option<Location> {
    let log = ctx.log()?;
    if log.is_pending(seq) {
        log.durable(seq).await.ok()?;
    }
    ctx.locations().borrow().get(seq)
}

/// `GET /api/v1/records/{id}`: the record's body exactly as received, with who sent it
/// and when; for admins and the staff of its project (`-` for a report without one).
/// `fhir` (`GET /fhir/QuestionnaireResponse/{id}`): only a QuestionnaireResponse is
/// found, as `application/fhir+json`.
async fn record(
    ctx: &Context,
    (shard, seq): (usize, u64),
    principal: &str,
    fhir: bool,
    reply: &mut Reply<'_>,
) -> Result<(), Refusal> {
    let at = locate_anywhere(ctx, shard, seq).await?;
    let stored = read_stored(ctx, shard, seq, at).await?;
    // A record the caller may not see is one it cannot tell from no record: the same
    // 404 as an unknown id, so neither its existence nor its kind leaks.
    if (fhir && stored.kind != Kind::Fhir) || !may_read(ctx, principal, &stored) {
        return Err(Refusal::Fixed(Why::NoSuchRecord));
    }
    let at = clock::format_rfc3339(stored.received_ns);
    let headers = [
        (&b"X-Record-Principal"[..], stored.principal.as_bytes()),
        (&b"X-Received-At"[..], &at[..]),
        (&b"ETag"[..], &b"W/\"1\""[..]),
    ];
    if !fhir {
        reply.with(Status::Ok, JSON, &headers[..2], &[&stored.body]);
        return Ok(());
    }
    // Served with the id of its URL and the server's meta; the record keeps the
    // body as received.
    let mut id = [0u8; 32];
    let shard = u16::try_from(shard).unwrap_or(u16::MAX);
    let id = std::str::from_utf8(ack::format_id(shard, seq, &mut id)).unwrap_or_default();
    let last_updated = std::str::from_utf8(&at).unwrap_or_default();
    let Some(body) = crate::domain::fhir::render::served(&stored.body, id, last_updated) else {
        let shard = ctx.shard();
        log::error!("shard {shard}: record {id} (FHIR) is not a JSON object");
        return Err(Refusal::Fixed(Why::Unreadable));
    };
    reply.with(Status::Ok, FHIR_JSON, &headers, &[&body]);
    Ok(())
}

/// Where record `seq` of shard `shard` is, asking that shard when it is another.
async fn locate_anywhere(ctx: &Context, shard: usize, seq: u64) -> Result<Location, Refusal> {
    let location = if shard == ctx.shard() {
        Ok(locate(ctx, seq).await)
    } else {
        match ctx.peers() {
            Some(peers) => peers.locate(shard, seq).await,
            None => Err("not ready"),
        }
    };
    match location {
        Ok(Some(at)) => Ok(at),
        Ok(None) => Err(Refusal::Fixed(Why::NoSuchRecord)),
        Err(message) => Err(Refusal::Unavailable(message)),
    }
}

/// Reads record `seq` of shard `shard` from `at`, off the shard's thread.
async fn read_stored(
    ctx: &Context,
    shard: usize,
    seq: u64,
    at: Location,
) -> Result<Stored, Refusal> {
    let dir = shard_dir(&ctx.config().data_dir, shard);
    let read = glommio::executor()
        .spawn_blocking(move || read_record(&dir, shard as u16, seq, at))
        .await;
    read.map_err(|e| {
        log::error!("shard {}: reading record s{shard}-{seq}: {e}", ctx.shard());
        Refusal::Fixed(Why::Unreadable)
    })
}

/// Whether `principal` may read `stored`: it may access the record's project.
fn may_read(ctx: &Context, principal: &str, stored: &Stored) -> bool {
    let project = match stored.kind {
        Kind::Fhir => crate::domain::fhir::fields(&stored.body)
            .and_then(|f| f.project_id)
            .unwrap_or_else(|| "-".to_string()),
        kind => project_of(kind, &stored.body),
    };
    ctx.principals()
        .find(principal)
        .is_some_and(|who| who.may_access(&project))
}

/// The project a stored report or tag belongs to, read as the index counted it (the
/// rules it was stored under, [`Validator::for_stored`]): its `projectId`, or `-` for
/// a report without one.
fn project_of(kind: Kind, body: &[u8]) -> String {
    let mut validator = Validator::for_stored();
    let project = match kind {
        Kind::Tag => validator.tag(body, |t| Some(t.project_id.to_owned())),
        _ => validator.submit(body, |s| s.project_id.map(str::to_owned)),
    };
    project.ok().flatten().unwrap_or_else(|| "-".to_string())
}

/// The Prometheus text format's media type.
const EXPOSITION: &[u8] = b"text/plain; version=0.0.4; charset=utf-8";

async fn ask(ctx: &Context, query: Query) -> Result<Vec<Answer>, &'static str> {
    match ctx.peers() {
        Some(peers) => peers.ask_all(ctx.index(), query).await,
        None => Err("not ready"),
    }
}

async fn subjects(
    ctx: &Context,
    project: &str,
    site: &str,
) -> Result<serde_json::Value, &'static str> {
    let query = Query::Subjects {
        project: project.to_string(),
        site: site.to_string(),
    };
    let answers = ask(ctx, query).await?;
    let patients = subject_ids(&answers);
    // Tags live on whichever shard stored them.
    let tags = if patients.is_empty() {
        Vec::new()
    } else {
        let project = project.to_string();
        ask(ctx, Query::Tags { project, patients }).await?
    };
    Ok(subjects_json(project, site, answers, tags))
}

async fn summary(ctx: &Context, project: &str) -> Result<serde_json::Value, &'static str> {
    let query = Query::Summary {
        project: project.to_string(),
    };
    Ok(summary_json(project, ask(ctx, query).await?))
}
