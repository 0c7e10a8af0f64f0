//! SIGHUP: the config file's principals, tokens and rate limits read again and put in
//! force on every shard by message, without a restart and without a lock on the request
//! path. The file is judged with the command line's values applied, as at the start.
//! A file that does not load (bad TOML, a rule broken) is refused whole and the
//! principals in force stay; the log says what changed by principal id, never a token.
//! Every other key applies at the next start.

use std::sync::{mpsc, Arc};
use std::time::Duration;

use futures_channel::mpsc::UnboundedSender;
use log::{error, info, warn};

use crate::config::Config;
use crate::domain::auth::Principal;
use crate::domain::ratelimit::Rate;

/// What a shard puts in force, and how it says it did (with its number).
pub struct Reload {
    pub update: Arc<Update>,
    pub applied: mpsc::Sender<usize>,
}

/// Principals and their rate limits, by principal index.
pub struct Update {
    pub principals: Vec<Principal>,
    pub rates: Vec<Option<Rate>>,
}

/// How long a reload waits for every shard to say it applied it.
const APPLY_WAIT: Duration = Duration::from_secs(10);

/// The signal thread's side: the principals in force and each shard's reload channel.
pub struct Reloader {
    config: Config,
    shards: Vec<UnboundedSender<Reload>>,
}

impl Reloader {
    pub fn new(config: Config, shards: Vec<UnboundedSender<Reload>>) -> Reloader {
        Reloader { config, shards }
    }

    /// Reads the config file again and, if it loads, sends its principals and rate
    /// limits to every shard and waits for each to apply them.
    pub fn reload(&mut self) {
        let Some(file) = self.config.file.clone() else {
            warn!("SIGHUP: no config file to reload (the generated admin token stays)");
            return;
        };
        let new = match Config::load(Some(&file), self.config.overrides.clone()) {
            Ok(new) => new,
            Err(e) => {
                error!("reload refused, the principals in force stay: {e}");
                return;
            }
        };
        let changes = describe(&self.config, &new);
        let update = Arc::new(Update {
            rates: new.rates(),
            principals: new.principals.clone(),
        });
        let (applied, acks) = mpsc::channel();
        for shard in &self.shards {
            let reload = Reload {
                update: Arc::clone(&update),
                applied: applied.clone(),
            };
            let _ = shard.unbounded_send(reload);
        }
        drop(applied);
        let done = (0..self.shards.len())
            .take_while(|_| acks.recv_timeout(APPLY_WAIT).is_ok())
            .count();
        if done < self.shards.len() {
            error!(
                "reload of {}: applied on {done} of {} shards within {APPLY_WAIT:?}; the others \
                 apply it when they next run",
                file.display(),
                self.shards.len()
            );
        } else {
            info!(
                "reloaded {} on all {done} shards: {changes}",
                file.display()
            );
        }
        self.config.principals = new.principals;
        self.config.limits.default_rate_per_second = new.limits.default_rate_per_second;
        self.config.limits.default_burst = new.limits.default_burst;
    }
}

/// What a reload changes, by principal id: added, removed, and changed (token, role,
/// projects or rate limit: which of them, never a value of a token).
fn describe(old: &Config, new: &Config) -> String {
    let find = |list: &[Principal], id: &str| list.iter().position(|p| p.id == id);
    let (old_rates, new_rates) = (old.rates(), new.rates());
    let added: Vec<&str> = new
        .principals
        .iter()
        .filter(|p| find(&old.principals, &p.id).is_none())
        .map(|p| p.id.as_str())
        .collect();
    let removed: Vec<&str> = old
        .principals
        .iter()
        .filter(|p| find(&new.principals, &p.id).is_none())
        .map(|p| p.id.as_str())
        .collect();
    let mut changed = Vec::new();
    for (i, p) in old.principals.iter().enumerate() {
        let Some(j) = find(&new.principals, &p.id) else {
            continue;
        };
        let q = &new.principals[j];
        let what: Vec<&str> = [
            (p.token != q.token, "token"),
            (p.role != q.role, "role"),
            (p.projects != q.projects, "projects"),
            (old_rates[i] != new_rates[j], "rate limit"),
        ]
        .into_iter()
        .filter_map(|(differs, what)| differs.then_some(what))
        .collect();
        if !what.is_empty() {
            changed.push(format!("{} ({})", p.id, what.join(", ")));
        }
    }
    if added.is_empty() && removed.is_empty() && changed.is_empty() {
        return "no principal changed".to_string();
    }
    format!(
        "added [{}], removed [{}], changed [{}]",
        added.join(", "),
        removed.join(", "),
        changed.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Overrides;
    use crate::domain::auth::Role;

    fn principal(id: &str, token: &str, role: Role) -> Principal {
        Principal {
            id: id.to_string(),
            token: token.to_string(),
            role,
            projects: vec!["*".to_string()],
            rate_per_second: None,
            burst: None,
        }
    }

    fn config(principals: Vec<Principal>) -> Config {
        let mut config = Config::load(None, Overrides::default()).unwrap();
        config.principals = principals;
        config
    }

    #[test]
    fn the_change_names_ids_and_what_changed_never_a_token() {
        let old = config(vec![
            principal("a", "token-a-0123456789", Role::Device),
            principal("b", "token-b-0123456789", Role::Device),
            principal("c", "token-c-0123456789", Role::Staff),
        ]);
        let mut rated = principal("c", "token-c-0123456789", Role::Admin);
        rated.rate_per_second = Some(5.0);
        let new = config(vec![
            principal("a", "token-a-9876543210", Role::Device),
            rated,
            principal("d", "token-d-0123456789", Role::Device),
        ]);
        let said = describe(&old, &new);
        assert_eq!(
            said,
            "added [d], removed [b], changed [a (token), c (role, rate limit)]"
        );
        assert!(!said.contains("token-"), "{said}");
        assert_eq!(describe(&new, &new), "no principal changed");
    }
}
