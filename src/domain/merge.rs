//! Merging the answers of every shard's index into the read APIs' JSON. Subjects are
//! merged as sets, so counts stay exact however patients spread over shards. Pure
//! functions over [`Answer`]s: the server merges what the mesh brought back, and the
//! axum baseline merges its single index the same way.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::json;

use crate::base::clock::format_rfc3339;
use crate::domain::index::{Answer, SubjectStats};

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
