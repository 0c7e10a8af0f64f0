//! Configuration: the TOML file of DESIGN section 3, command-line overrides, and the
//! embedded defaults used when there is no file at all (their principal: [`admin`]);
//! the rules every value meets are in `check.rs`.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::domain::auth::Principal;
use crate::domain::ratelimit::Rate;
use crate::http::parse::Limits;
use crate::log::Durability;

pub mod admin;
mod check;
mod proxies;

pub use proxies::Cidr;

/// The `[limits]` section, with the defaults of the API contract.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    pub max_body_bytes: usize,
    pub max_head_bytes: usize,
    pub max_headers: usize,
    pub max_connections: usize,
    pub header_timeout_ms: u64,
    pub idle_timeout_ms: u64,
    pub body_timeout_ms: u64,
    /// From a request's first byte to its response queued, whatever it waits for.
    pub request_timeout_ms: u64,
    /// Per shard: bytes that connections' buffers may hold beyond their base size
    /// (large heads and bodies being received, queued responses). `None`: the default,
    /// [`DEFAULT_MEMORY_BUDGET`] or one largest request, whichever is more.
    pub memory_budget_bytes: Option<usize>,
    /// Per shard: new writes are shed (503, before their body is read) while more
    /// bytes of records than this wait for the disk ...
    pub shed_pending_bytes: usize,
    /// ... or more records than this are stored but not yet durable.
    pub shed_inflight: u64,
    /// `SO_SNDBUF` of each connection (the kernel doubles it for its bookkeeping): the
    /// most response bytes the kernel queues for a client that does not read. 0: the
    /// kernel's autotuning (up to `net.ipv4.tcp_wmem`'s maximum, megabytes).
    pub send_buffer_bytes: usize,
    /// The rate limit of principals without their own (`None`: unlimited).
    pub default_rate_per_second: Option<f64>,
    pub default_burst: Option<u32>,
}

/// Apps retry for days: keys are remembered a week by default.
pub const DEFAULT_IDEMPOTENCY_WINDOW_HOURS: u64 = 168;

/// Shedding starts at a quarter of the most a shard's log lets wait for the disk
/// (`log::MAX_PENDING`, 64 MiB; beyond it appends are refused outright).
pub const DEFAULT_SHED_PENDING: usize = 16 << 20;
/// Records stored but not yet durable, per shard, before new writes are shed.
pub const DEFAULT_SHED_INFLIGHT: u64 = 16_384;

/// The default `SO_SNDBUF`: a few hundred responses queued for a client that stops
/// reading, 64 KiB of kernel memory with the kernel's doubling.
pub const DEFAULT_SEND_BUFFER: usize = 32 << 10;

/// The default per-shard memory budget.
pub const DEFAULT_MEMORY_BUDGET: usize = 64 << 20;

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_body_bytes: 1 << 20,
            max_head_bytes: 16 << 10,
            max_headers: 64,
            max_connections: 10_000,
            header_timeout_ms: 10_000,
            idle_timeout_ms: 60_000,
            body_timeout_ms: 30_000,
            request_timeout_ms: 30_000,
            memory_budget_bytes: None,
            shed_pending_bytes: DEFAULT_SHED_PENDING,
            shed_inflight: DEFAULT_SHED_INFLIGHT,
            send_buffer_bytes: DEFAULT_SEND_BUFFER,
            default_rate_per_second: None,
            default_burst: None,
        }
    }
}

impl Config {
    /// Each principal's rate limit, in the principals' order (`None`: unlimited).
    pub fn rates(&self) -> Vec<Option<Rate>> {
        let l = &self.limits;
        self.principals
            .iter()
            .map(|p| {
                let per_second = p.rate_per_second.or(l.default_rate_per_second)?;
                let burst = p
                    .burst
                    .or(l.default_burst)
                    .map_or(per_second.max(1.0), f64::from);
                Some(Rate { per_second, burst })
            })
            .collect()
    }
}

impl LimitsConfig {
    /// The per-shard memory budget in force.
    pub fn memory_budget(&self) -> usize {
        self.memory_budget_bytes
            .unwrap_or(DEFAULT_MEMORY_BUDGET.max(self.largest_request()))
    }

    /// What one largest request can hold beyond a connection's base buffers: its raw
    /// bytes (head, body, chunk lines of up to half the body, 64 KiB of slack) and a
    /// decoded chunked body (a buffer of up to twice the body).
    pub fn largest_request(&self) -> usize {
        self.max_head_bytes + self.max_body_bytes * 4 + (64 << 10)
    }

    pub fn http(&self) -> Limits {
        Limits {
            max_head: self.max_head_bytes,
            max_headers: self.max_headers,
            max_body: self.max_body_bytes,
        }
    }
}

/// The file as written; every key optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<String>,
    shards: Option<usize>,
    cpus: Option<Vec<usize>>,
    data_dir: Option<PathBuf>,
    durability: Option<Durability>,
    segment_bytes: Option<u64>,
    idempotency_window_hours: Option<u64>,
    log_format: Option<crate::base::logger::Format>,
    trusted_proxies: Option<Vec<String>>,
    #[cfg(feature = "test-seams")]
    #[serde(default)]
    test_seams: TestSeams,
    #[serde(default)]
    limits: LimitsConfig,
    #[serde(default)]
    principals: Vec<Principal>,
}

/// Faults the tests inject through requests, to prove what happens on a panic, faster
/// progress and key-expiry clocks, and a wall clock set off (or stepped while running).
/// Only in builds with the `test-seams` feature.
#[cfg(feature = "test-seams")]
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestSeams {
    /// A submit for this patient panics in its handler (the onion makes it a 500).
    pub panic_patient: Option<String>,
    /// A submit for this patient panics in a task of its own, outside the onion.
    pub escape_patient: Option<String>,
    /// A submit for this patient blocks its shard's thread for 3 s (a wedged shard).
    pub wedge_patient: Option<String>,
    /// A read of this project panics while answering (after the cross-shard query).
    pub panic_project: Option<String>,
    /// Recovery reports its progress this often instead of every second.
    pub progress_every_ms: Option<u64>,
    /// The server's wall clock reads this many seconds off the real time.
    pub clock_offset_s: Option<i64>,
    /// The server's wall clock reads the seconds written in this file off the real
    /// time, re-read while it runs: a test steps the clock by rewriting the file.
    pub clock_offset_file: Option<PathBuf>,
    /// Keys past the idempotency window are forgotten this often instead of every
    /// 10 minutes.
    pub key_expiry_every_ms: Option<u64>,
    /// Ids are reserved this many at a time instead of 2^20, so that a test reaches a
    /// renewal of the reservation.
    pub reserve_block: Option<u64>,
}

/// Command-line values that override the file.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub listen: Option<String>,
    pub shards: Option<usize>,
    pub cpus: Option<Vec<usize>>,
    pub data_dir: Option<PathBuf>,
    pub durability: Option<Durability>,
}

/// The resolved configuration a server runs with.
#[derive(Clone, Debug)]
pub struct Config {
    pub listen: SocketAddr,
    pub shards: Option<usize>,
    pub cpus: Option<Vec<usize>>,
    /// Where `shards` and `cpus` came from, as an error about them should name it:
    /// the flag, or the config file's key.
    pub shards_from: &'static str,
    pub cpus_from: &'static str,
    pub data_dir: PathBuf,
    pub durability: Durability,
    pub limits: LimitsConfig,
    pub principals: Vec<Principal>,
    /// Target size of a log segment before the next one starts.
    pub segment_bytes: u64,
    /// How long idempotency keys are remembered.
    pub idempotency_window_hours: u64,
    /// Log lines as text or JSON.
    pub log_format: crate::base::logger::Format,
    /// Reverse proxies whose `X-Forwarded-For` names the client in the access log.
    pub trusted_proxies: Vec<Cidr>,
    #[cfg(feature = "test-seams")]
    pub test_seams: TestSeams,
    /// Whether a config file was given (without one, an admin token is generated).
    pub from_file: bool,
    /// The config file, re-read on SIGHUP for its principals and rate limits.
    pub file: Option<PathBuf>,
    /// The command line's values, applied again when the file is re-read, so a reload
    /// judges the file as the start did.
    pub overrides: Overrides,
}

pub const DEFAULT_SEGMENT_BYTES: u64 = 64 << 20;
/// Largest segment: a larger preallocation buys nothing (rotation is cheap) and makes
/// a full disk show later; readers stream segments whatever their size.
pub const MAX_SEGMENT_BYTES: u64 = 1 << 30;

#[derive(Debug)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_DATA_DIR: &str = "./data";

/// `listen`: an IP:port, or a host name and port (`localhost:8080`) that resolves to
/// the host's addresses, of which the first IPv4 one is bound (clients that try both
/// families, as curl does, reach it).
fn resolve_listen(text: &str) -> Result<SocketAddr, ConfigError> {
    use std::net::ToSocketAddrs;
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let bad = |why: String| ConfigError(format!("listen: {text:?} {why}"));
    let addrs: Vec<SocketAddr> = text
        .to_socket_addrs()
        .map_err(|e| bad(format!("is not an IP:port or host:port address ({e})")))?
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .copied()
        .ok_or_else(|| bad("resolves to no address".to_string()))
}

impl Config {
    /// Reads `path` (if any), applies `overrides`, and checks every value.
    pub fn load(path: Option<&Path>, overrides: Overrides) -> Result<Config, ConfigError> {
        let file = match path {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        let given = overrides.clone();
        let listen_text = overrides
            .listen
            .or(file.listen)
            .unwrap_or_else(|| DEFAULT_LISTEN.to_string());
        let listen = resolve_listen(&listen_text)?;
        let from = |flag: bool, flag_name, key| if flag { flag_name } else { key };
        let config = Config {
            listen,
            shards_from: from(
                overrides.shards.is_some(),
                "--shards",
                "shards (config file)",
            ),
            cpus_from: from(overrides.cpus.is_some(), "--cpus", "cpus (config file)"),
            shards: overrides.shards.or(file.shards),
            cpus: overrides.cpus.or(file.cpus),
            data_dir: overrides
                .data_dir
                .or(file.data_dir)
                .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR)),
            durability: overrides
                .durability
                .or(file.durability)
                .unwrap_or(Durability::Sync),
            limits: file.limits,
            principals: file.principals,
            segment_bytes: file.segment_bytes.unwrap_or(DEFAULT_SEGMENT_BYTES),
            log_format: file.log_format.unwrap_or_default(),
            trusted_proxies: trusted_proxies(file.trusted_proxies.unwrap_or_default())?,
            idempotency_window_hours: file
                .idempotency_window_hours
                .unwrap_or(DEFAULT_IDEMPOTENCY_WINDOW_HOURS),
            #[cfg(feature = "test-seams")]
            test_seams: file.test_seams,
            from_file: path.is_some(),
            file: path.map(Path::to_path_buf),
            overrides: given,
        };
        config.check()?;
        Ok(config)
    }
}

/// The config file as written, every key known.
fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError(format!("cannot read config file {}: {e}", path.display())))?;
    toml::from_str::<FileConfig>(&text)
        .map_err(|e| ConfigError(format!("invalid config file {}: {e}", path.display())))
}

/// `trusted_proxies`: each an address or a network.
fn trusted_proxies(texts: Vec<String>) -> Result<Vec<Cidr>, ConfigError> {
    texts
        .iter()
        .enumerate()
        .map(|(i, text)| {
            Cidr::parse(text).ok_or_else(|| {
                ConfigError(format!(
                    "trusted_proxies[{i}]: {text:?} is not an IP address or a network \
                     (10.0.0.0/8, fd00::/8)"
                ))
            })
        })
        .collect()
}
