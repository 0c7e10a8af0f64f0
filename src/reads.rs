//! The read APIs that aggregate across shards: subjects of a site and a project's
//! report summary. They run after the onion has authenticated and authorized the
//! request, ask every shard through [`crate::fanout`], merge, and answer. Counts are
//! exact: every acknowledged record is in exactly one shard's index.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use serde_json::json;

use crate::clock::format_rfc3339;
use crate::fanout::{Answer, Query};
use crate::handlers::{conn_header, Outcome};
use crate::http::parse::Head;
use crate::http::response::{self, Status};
use crate::index::SubjectStats;
use crate::shard::Shard;

/// A read that needs every shard, authorized, with its parameters owned so they
/// outlive the request's borrow while the answers come in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Deferred {
    pub read: Read,
    /// For the access log.
    pub principal: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Read {
    Subjects { project: String, site: String },
    Summary { project: String },
}

/// Answers a deferred read, appending its response to `out`.
pub async fn answer(
    shard: &Shard,
    deferred: Deferred,
    head: &Head<'_>,
    out: &mut Vec<u8>,
) -> Outcome {
    let began = Instant::now();
    let start = out.len();
    let body = match &deferred.read {
        Read::Subjects { project, site } => subjects(shard, project, site).await,
        Read::Summary { project } => summary(shard, project).await,
    };
    let date = shard.date.get();
    match body {
        Ok(body) => {
            let text = body.to_string();
            response::write(
                out,
                Status::Ok,
                &date,
                conn_header(head),
                response::JSON,
                None,
                &[text.as_bytes()],
            );
        }
        Err(message) => response::write_json_error(
            out,
            Status::ServiceUnavailable,
            message,
            &date,
            conn_header(head),
            None,
        ),
    }
    crate::middleware::access_log(shard, head, &out[start..], began, &deferred.principal);
    Outcome::after(head)
}

async fn ask(shard: &Shard, query: Query) -> Result<Vec<Answer>, &'static str> {
    match shard.fanout() {
        Some(fanout) => fanout.ask_all(shard, query).await,
        None => Err("not ready"),
    }
}

async fn subjects(
    shard: &Shard,
    project: &str,
    site: &str,
) -> Result<serde_json::Value, &'static str> {
    let query = Query::Subjects {
        project: project.to_string(),
        site: site.to_string(),
    };
    let answers = ask(shard, query).await?;
    let patients = subject_ids(&answers);
    // Tags live on whichever shard stored them.
    let tags = if patients.is_empty() {
        Vec::new()
    } else {
        ask(shard, Query::Tags { patients }).await?
    };
    Ok(subjects_json(project, site, answers, tags))
}

async fn summary(shard: &Shard, project: &str) -> Result<serde_json::Value, &'static str> {
    let answers = ask(
        shard,
        Query::Summary {
            project: project.to_string(),
        },
    )
    .await?;
    Ok(summary_json(project, answers))
}

/// Every patient named in subjects answers.
pub fn subject_ids(answers: &[Answer]) -> Vec<String> {
    let mut ids = BTreeSet::new();
    for answer in answers {
        if let Answer::Subjects(rows) = answer {
            ids.extend(rows.iter().map(|(patient, _)| patient.clone()));
        }
    }
    ids.into_iter().collect()
}

/// Merges every shard's subjects and tags answers into the API's JSON.
pub fn subjects_json(
    project: &str,
    site: &str,
    answers: Vec<Answer>,
    tag_answers: Vec<Answer>,
) -> serde_json::Value {
    let mut merged: BTreeMap<String, SubjectStats> = BTreeMap::new();
    for answer in answers {
        if let Answer::Subjects(rows) = answer {
            for (patient, stats) in rows {
                let m = merged.entry(patient).or_default();
                m.reports += stats.reports;
                m.last_ns = m.last_ns.max(stats.last_ns);
            }
        }
    }
    let mut tags: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for answer in tag_answers {
        if let Answer::Tags(rows) = answer {
            for (patient, names) in rows {
                tags.entry(patient).or_default().extend(names);
            }
        }
    }
    let subjects: Vec<_> = merged
        .iter()
        .map(|(patient, stats)| {
            json!({
                "patientId": patient,
                "reports": stats.reports,
                "lastReceivedAt": rfc3339(stats.last_ns),
                "tags": tags.get(patient).map(|t| t.iter().collect::<Vec<_>>()).unwrap_or_default(),
            })
        })
        .collect();
    json!({"projectId": project, "siteId": site, "subjects": subjects})
}

/// Merges every shard's summary answers into the API's JSON (subjects as sets).
pub fn summary_json(project: &str, answers: Vec<Answer>) -> serde_json::Value {
    let mut reports = 0;
    let mut last_ns = 0;
    let mut subjects = BTreeSet::new();
    let mut sites: BTreeMap<String, (u64, BTreeSet<String>)> = BTreeMap::new();
    for answer in answers {
        if let Answer::Summary(part) = answer {
            reports += part.reports;
            last_ns = last_ns.max(part.last_ns);
            subjects.extend(part.subjects);
            for (site, n, site_subjects) in part.sites {
                let s = sites.entry(site).or_default();
                s.0 += n;
                s.1.extend(site_subjects);
            }
        }
    }
    let sites: serde_json::Map<_, _> = sites
        .into_iter()
        .map(|(site, (n, s))| (site, json!({"reports": n, "subjects": s.len()})))
        .collect();
    json!({
        "projectId": project,
        "reports": reports,
        "subjects": subjects.len(),
        "sites": sites,
        "lastReceivedAt": (last_ns > 0).then(|| rfc3339(last_ns)),
    })
}

fn rfc3339(ns: u64) -> String {
    String::from_utf8_lossy(&format_rfc3339(ns)).into_owned()
}
