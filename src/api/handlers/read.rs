//! The v1 reads: authorized here, and answered across shards by [`crate::api::reads`]
//! once the connection awaits them (a principal's permissions are answered at once).

use crate::api::ack;
use crate::api::handlers::{Ask, Handled};
use crate::api::outcome::{Outcome, Read};
use crate::api::refusal::{Refusal, Why};
use crate::domain::auth::Role;
use crate::http::response::{Reply, JSON};

/// `GET /api/v1/projects/{projectId}/sites/{siteId}/subjects`.
pub fn subjects(ask: &Ask<'_>, _: &mut Reply<'_>) -> Handled {
    let (project, site) = (ask.param("projectId")?, ask.param("siteId")?);
    let project = readable(ask, project.into_owned())?;
    let site = site.into_owned();
    Ok(deferred(ask, Read::Subjects { project, site }))
}

/// `GET /api/v1/projects/{projectId}/reports/summary`.
pub fn summary(ask: &Ask<'_>, _: &mut Reply<'_>) -> Handled {
    let project = readable(ask, ask.param("projectId")?.into_owned())?;
    Ok(deferred(ask, Read::Summary { project }))
}

/// `project`, when the caller may read it.
fn readable(ask: &Ask<'_>, project: String) -> Result<String, Refusal> {
    if ask.who.may_access(&project) {
        Ok(project)
    } else {
        Err(Refusal::Fixed(Why::ReadForbidden))
    }
}

/// `GET /api/v1/users/{userId}/permissions`: a principal's own, or anyone's for admin.
pub fn permissions(ask: &Ask<'_>, reply: &mut Reply<'_>) -> Handled {
    let user = ask.param("userId")?;
    let who = ask.who;
    if who.id != user && who.role != Role::Admin {
        return Err(Refusal::Fixed(Why::OthersPermissions));
    }
    let principals = ask.ctx.principals();
    let body = principals
        .permissions_body(&user)
        .ok_or(Refusal::Fixed(Why::NoSuchUser))?;
    reply.ok(JSON, &[body]);
    Ok(Outcome::after(ask.head()))
}

/// `GET /api/v1/records/{id}`: found by its id (`s<shard>-<seq>`), read and
/// authorized by its project in [`crate::api::reads`].
pub fn record(ask: &Ask<'_>, _: &mut Reply<'_>) -> Handled {
    let id = ask.param("id")?;
    let (shard, seq) = ack::parse_id(&id).ok_or(Refusal::Fixed(Why::BadRecordId))?;
    if shard >= ask.ctx.shards() {
        return Err(Refusal::Fixed(Why::NoSuchRecord));
    }
    Ok(record_read(ask, (shard, seq), false))
}

/// Defers the read of record `(shard, seq)` to [`crate::api::reads`] (`fhir`: as a
/// QuestionnaireResponse).
pub fn record_read(ask: &Ask<'_>, (shard, seq): (usize, u64), fhir: bool) -> Outcome {
    let principal = ask.who.id.clone();
    deferred(
        ask,
        Read::Record {
            shard,
            seq,
            principal,
            fhir,
        },
    )
}

/// `GET /api/v1/log/heads`: every shard's chain head, asked over the mesh.
pub fn heads(ask: &Ask<'_>, _: &mut Reply<'_>) -> Handled {
    Ok(deferred(ask, Read::Heads))
}

fn deferred(ask: &Ask<'_>, read: Read) -> Outcome {
    Outcome::deferred_read(read, &ask.who.id, ask.head())
}
