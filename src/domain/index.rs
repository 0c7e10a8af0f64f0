//! Each shard's in-memory read index over its own records: per project and site, the
//! subjects with their report counts and last receive times, and each patient's tags.
//! Updated as each record becomes durable (never before: a read counts only what is
//! on stable storage), rebuilt from the log at start-up. A report is counted by the
//! fields its validation read (on this shard, or on the one that received it and
//! handed a keyed write to this one), kept until then in [`crate::domain::pending`];
//! any other record is parsed again from its stored bytes. A read is a [`Query`] each shard answers from its own index
//! ([`Index::answer`]); the answers of every shard are merged by
//! [`crate::domain::merge`].
//!
//! Steady-state updates allocate nothing: keys are looked up by `&str` and only a new
//! project, site, subject or tag allocates its key once.

use std::hash::RandomState;

use crate::domain::pending::{Fields, Pending};
use crate::domain::validate::{Validator, NO_PROJECT};
use crate::log::record::{Kind, Record};

/// A map keyed by an owned string, found by `&str` in one lookup (`slot`).
pub type HashMap<K, V> = hashbrown::HashMap<K, V, RandomState>;

/// One subject's reports at one site of one project, on one shard.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SubjectStats {
    pub reports: u64,
    pub last_ns: u64,
}

#[derive(Debug, Default)]
pub struct SiteStats {
    pub subjects: HashMap<String, SubjectStats>,
}

/// Reports of one project: those with a `siteId` are also counted under their site.
#[derive(Debug, Default)]
pub struct ProjectStats {
    pub reports: u64,
    pub last_ns: u64,
    /// Every patient with a report in the project, with or without a site.
    pub subjects: HashMap<String, u64>,
    pub sites: HashMap<String, SiteStats>,
    /// Each patient's tags in this project.
    pub tags: HashMap<String, Vec<String>>,
}

#[derive(Debug, Default)]
pub struct Index {
    pub projects: HashMap<String, ProjectStats>,
    /// Stored records the validator's rules refused when counting them.
    pub unindexed: u64,
    /// Reports validated here and appended, waiting to be durable.
    pending: Pending,
}

/// The value under `key`, inserted (its key allocated) only if new.
fn slot<'m, V: Default>(map: &'m mut HashMap<String, V>, key: &str) -> &'m mut V {
    map.entry_ref(key).or_default()
}

/// Counts a stored report; one without a `projectId` under [`NO_PROJECT`].
fn count_report(
    projects: &mut HashMap<String, ProjectStats>,
    patient: &str,
    project: Option<&str>,
    site: Option<&str>,
    received_ns: u64,
) {
    let p = slot(projects, project.unwrap_or(NO_PROJECT));
    p.reports += 1;
    p.last_ns = p.last_ns.max(received_ns);
    *slot(&mut p.subjects, patient) += 1;
    if let Some(site) = site {
        let s = slot(&mut slot(&mut p.sites, site).subjects, patient);
        s.reports += 1;
        s.last_ns = s.last_ns.max(received_ns);
    }
}

impl Index {
    /// Counts a stored report; one without a `projectId` under [`NO_PROJECT`].
    pub fn add_report(
        &mut self,
        patient: &str,
        project: Option<&str>,
        site: Option<&str>,
        received_ns: u64,
    ) {
        count_report(&mut self.projects, patient, project, site, received_ns);
    }

    /// Records a tag on a patient of a project (once per name).
    pub fn add_tag(&mut self, project: &str, patient: &str, tag: &str) {
        let tags = slot(&mut slot(&mut self.projects, project).tags, patient);
        if !tags.iter().any(|t| t == tag) {
            tags.push(tag.to_string());
        }
    }

    /// Counts a stored record, read through the rules for stored bodies
    /// ([`Validator::for_stored`]: those it was stored under, not rules added since),
    /// so a record counts the same whether it was just synced or read back at start-up,
    /// before or after an upgrade. A record those rules refuse is not counted, and
    /// said, never skipped silently.
    pub fn add_stored(&mut self, validator: &mut Validator, record: &Record<'_>) {
        self.add(validator, record, false);
    }

    /// Remembers the fields a report appended to this shard's log as `seq` was
    /// validated with (on this shard or the one that received it), so it is counted
    /// by them once durable ([`Index::add_durable`]).
    pub fn expect_report(&mut self, seq: u64, report: Fields<'_>) {
        self.pending.push(seq, report);
    }

    /// Counts a record that just became durable: a report this shard validated by
    /// the fields it was validated with (the same parser read them from the same
    /// bytes, so they equal what [`Index::add_stored`] reads), anything else through
    /// [`Index::add_stored`].
    pub fn add_durable(&mut self, validator: &mut Validator, record: &Record<'_>) {
        if record.kind == Kind::Report {
            if let Some(f) = self.pending.take(record.seq) {
                let (projects, at) = (&mut self.projects, record.received_ns);
                count_report(projects, f.patient, f.project, f.site, at);
                return;
            }
        }
        self.add_stored(validator, record);
    }

    /// As [`Index::add_stored`], at start-up: also returns a report's `submissionId`,
    /// its idempotency key (a key sent only as a header is in the record itself).
    pub fn add_recovered(
        &mut self,
        validator: &mut Validator,
        record: &Record<'_>,
    ) -> Option<String> {
        self.add(validator, record, true)
    }

    fn add(&mut self, validator: &mut Validator, record: &Record<'_>, key: bool) -> Option<String> {
        let mut submission_id = None;
        let counted = match record.kind {
            Kind::Report => validator.submit(record.body, |s| {
                if key {
                    submission_id = s.submission_id.map(str::to_owned);
                }
                self.add_report(s.patient_id, s.project_id, s.site_id, record.received_ns)
            }),
            Kind::Tag => validator.tag(record.body, |t| {
                self.add_tag(t.project_id, t.patient_id, t.tag_name)
            }),
            Kind::Fhir => {
                // Validated before it was stored: counted like a report.
                if let Some(f) = crate::domain::fhir::fields(record.body) {
                    let (project, site) = (f.project_id.as_deref(), f.site_id.as_deref());
                    self.add_report(&f.patient_id, project, site, record.received_ns);
                } else {
                    self.unindexed += 1;
                    log::warn!(
                        "record s{}-{} (FHIR) is stored but not counted in reads",
                        record.shard,
                        record.seq
                    );
                }
                Ok(())
            }
        };
        if let Err(invalid) = counted {
            self.unindexed += 1;
            let mut number = itoa::Buffer::new();
            let why: String = invalid
                .first()
                .message(&mut number)
                .iter()
                .map(|part| String::from_utf8_lossy(part))
                .collect();
            log::warn!(
                "record s{}-{} is stored but not counted in reads: {why}",
                record.shard,
                record.seq
            );
        }
        submission_id
    }
}

/// What one shard's index is asked.
#[derive(Clone, Debug)]
pub enum Query {
    Subjects {
        project: String,
        site: String,
    },
    Summary {
        project: String,
    },
    Tags {
        project: String,
        patients: Vec<String>,
    },
}

/// One shard's part of a project summary.
#[derive(Debug, Default)]
pub struct SummaryPart {
    pub reports: u64,
    pub last_ns: u64,
    pub subjects: Vec<String>,
    /// (site, reports, subjects)
    pub sites: Vec<(String, u64, Vec<String>)>,
}

/// One shard's answer to a [`Query`].
#[derive(Debug)]
pub enum Answer {
    Subjects(Vec<(String, SubjectStats)>),
    Summary(SummaryPart),
    Tags(Vec<(String, Vec<String>)>),
}

impl Index {
    /// Answers a query from this index alone.
    pub fn answer(&self, query: &Query) -> Answer {
        match query {
            Query::Subjects { project, site } => Answer::Subjects(
                self.projects
                    .get(project)
                    .and_then(|p| p.sites.get(site))
                    .map(|s| {
                        s.subjects
                            .iter()
                            .map(|(k, v)| (k.clone(), v.clone()))
                            .collect()
                    })
                    .unwrap_or_default(),
            ),
            Query::Summary { project } => Answer::Summary(
                self.projects
                    .get(project)
                    .map(|p| SummaryPart {
                        reports: p.reports,
                        last_ns: p.last_ns,
                        subjects: p.subjects.keys().cloned().collect(),
                        sites: p
                            .sites
                            .iter()
                            .map(|(site, s)| {
                                let reports = s.subjects.values().map(|v| v.reports).sum();
                                (site.clone(), reports, s.subjects.keys().cloned().collect())
                            })
                            .collect(),
                    })
                    .unwrap_or_default(),
            ),
            Query::Tags { project, patients } => Answer::Tags(
                self.projects
                    .get(project)
                    .map(|p| {
                        patients
                            .iter()
                            .filter_map(|id| p.tags.get(id).map(|t| (id.clone(), t.clone())))
                            .collect()
                    })
                    .unwrap_or_default(),
            ),
        }
    }
}
