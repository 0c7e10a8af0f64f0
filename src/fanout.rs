//! Read queries across shards, by message passing: each shard holds the sending ends
//! of a glommio channel mesh to every other shard and answers the queries that arrive
//! on its receiving ends from its own index. A query carries a oneshot channel for its
//! answer. Nothing here is on the submit path, and no lock is shared.

use std::rc::Rc;

use futures_channel::oneshot;
use glommio::channels::channel_mesh::{Receivers, Senders};

use crate::index::{Index, SubjectStats};
use crate::shard::Shard;

/// What one shard is asked.
#[derive(Clone, Debug)]
pub enum Query {
    Subjects { project: String, site: String },
    Summary { project: String },
    Tags { patients: Vec<String> },
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

#[derive(Debug)]
pub enum Answer {
    Subjects(Vec<(String, SubjectStats)>),
    Summary(SummaryPart),
    Tags(Vec<(String, Vec<String>)>),
}

pub struct Message {
    query: Query,
    reply: oneshot::Sender<Answer>,
}

/// Answers a query from one shard's index.
pub fn answer(index: &Index, query: &Query) -> Answer {
    match query {
        Query::Subjects { project, site } => Answer::Subjects(
            index
                .projects
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
            index
                .projects
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
        Query::Tags { patients } => Answer::Tags(
            patients
                .iter()
                .filter_map(|p| index.tags.get(p).map(|t| (p.clone(), t.clone())))
                .collect(),
        ),
    }
}

/// This shard's ends of the mesh.
pub struct Fanout {
    senders: Senders<Message>,
}

impl Fanout {
    pub fn new(senders: Senders<Message>) -> Self {
        Fanout { senders }
    }

    /// Asks every shard (this one directly) and returns all answers. A peer still
    /// recovering answers once it is done, so the result is always complete.
    pub async fn ask_all(&self, shard: &Shard, query: Query) -> Result<Vec<Answer>, &'static str> {
        let mut pending = Vec::new();
        for peer in 0..self.senders.nr_consumers() {
            if peer == self.senders.peer_id() {
                continue;
            }
            let (reply, answer) = oneshot::channel();
            let message = Message {
                query: query.clone(),
                reply,
            };
            if self.senders.send_to(peer, message).await.is_err() {
                return Err("a shard is not answering");
            }
            pending.push(answer);
        }
        let mut answers = vec![answer(&shard.index.borrow(), &query)];
        for answer in pending {
            answers.push(answer.await.map_err(|_| "a shard dropped a query")?);
        }
        Ok(answers)
    }
}

/// Answers the queries of every peer until the mesh closes.
pub fn serve_peers(shard: &Rc<Shard>, mut receivers: Receivers<Message>) {
    for (_, stream) in receivers.streams() {
        let shard = Rc::clone(shard);
        glommio::spawn_local(async move {
            while let Some(message) = stream.recv().await {
                let answer = answer(&shard.index.borrow(), &message.query);
                let _ = message.reply.send(answer);
            }
        })
        .detach();
    }
}
