//! `epro-ingest`: `serve` parses the command line and config, checks the machine and
//! hands over to [`epro_ingest::runtime::server`], which starts one shard per CPU and shuts
//! down on SIGTERM/SIGINT; `check-config` checks a config file; `export` and `verify`
//! read a data directory offline. Every failure is one clear message and an exit
//! status that says whether a restart may help ([`epro_ingest::base::exit`]).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use epro_ingest::base::exit::{Exit, Fatal};
use epro_ingest::cli;
use epro_ingest::config::{Config, Overrides};
use epro_ingest::domain::auth::{Principal, Role};
use epro_ingest::log::Durability;
use epro_ingest::log::{backup, datadir, export, retire};
use epro_ingest::runtime::server;
use epro_ingest::ship;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

#[derive(Parser)]
#[command(
    name = "epro-ingest",
    version,
    about = "Shard-per-core ePRO ingestion server"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (embedded defaults without --config).
    ///
    /// Without a config file, one admin principal is used, its bearer token generated
    /// once into <data-dir>/admin.token (mode 0600). Logs go to stderr; RUST_LOG sets
    /// the level (default info; RUST_LOG=access=off silences the access log).
    Serve {
        /// TOML config file; flags below override its values.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Address to listen on, e.g. 0.0.0.0:8080 (port 0: any free port)
        /// [default: 127.0.0.1:8080].
        #[arg(long)]
        listen: Option<String>,
        /// Number of shards (default: one per CPU this process may run on).
        #[arg(long)]
        shards: Option<usize>,
        /// CPUs to run shards on, e.g. 2,3 (default: the process's affinity mask).
        #[arg(long, value_delimiter = ',')]
        cpus: Option<Vec<usize>>,
        /// Directory for the per-shard logs [default: ./data].
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// When a write is acknowledged: after its fdatasync (sync), or before (async)
        /// [default: sync].
        #[arg(long, value_enum)]
        durability: Option<Durability>,
        /// Create the data directory if it does not exist (its parent must). Without
        /// it, a missing data directory is an error: a mistyped path never becomes an
        /// empty store.
        #[arg(long)]
        init: bool,
    },
    /// Check a config file as `serve` would read it (every key and rule), print what it
    /// sets up, and exit 0; or print the first problem and exit 78.
    CheckConfig {
        /// The TOML config file (without it: the embedded defaults).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Write every stored record as one JSON object per line to stdout. A damaged shard
    /// is exported up to the damage and the command fails; see --salvage.
    Export {
        /// The server's data directory (the one holding shard-0, shard-1, ...).
        #[arg(long)]
        data_dir: PathBuf,
        /// Export every record that still verifies, past any damage, and report each
        /// byte range skipped on stderr.
        #[arg(long)]
        salvage: bool,
    },
    /// Move a damaged shard's log aside (after `export --salvage`) and start the shard
    /// afresh, past every id the old log used. Refused while a server runs.
    RetireShard {
        /// The server's data directory (the one holding shard-0, shard-1, ...).
        #[arg(long)]
        data_dir: PathBuf,
        /// The shard whose log is retired.
        #[arg(long)]
        shard: u16,
    },
    /// Ship every record into PostgreSQL exactly once (a cursor per node and shard moves
    /// in the same transaction as the rows), then follow new records until SIGTERM.
    /// Safe beside a running server: it only reads the logs.
    Ship {
        /// The server's data directory (the one holding shard-0, shard-1, ...).
        #[arg(long)]
        data_dir: PathBuf,
        /// PostgreSQL connection string, libpq style, e.g.
        /// "host=/run/postgresql user=epro dbname=epro" or postgresql://...
        #[arg(long)]
        postgres: String,
        /// This node's name in the tables [default: the name kept in
        /// <data-dir>/ship-node, written with the host name on the first run, so that a
        /// renamed host does not ship everything again under a new name].
        #[arg(long)]
        node: Option<String>,
        /// Ship what is there, then exit (for cron and tests).
        #[arg(long)]
        once: bool,
        /// Records per transaction.
        #[arg(long, default_value_t = 10_000)]
        batch: usize,
        /// This data directory was moved or restored here and is still its node: keep
        /// its node id (in <data-dir>/node-id) and bind the node's cursors to it.
        #[arg(long)]
        take_over: bool,
    },
    /// Check every record of every segment and the hash chain; list every problem;
    /// exit non-zero on any.
    Verify {
        /// The server's data directory (the one holding shard-0, shard-1, ...).
        #[arg(long)]
        data_dir: PathBuf,
        /// Print only each shard's chain head (last seq and SHA-256), one line per
        /// shard, on stdout (the report goes to stderr): the file to keep elsewhere.
        #[arg(long)]
        heads: bool,
        /// Also check that the heads saved in FILE (by --heads) are still in the log
        /// with the same hashes: history before them was neither rewritten nor cut.
        #[arg(long, value_name = "FILE")]
        against: Option<PathBuf>,
    },
    /// Copy a data directory, beside a running server, into a new directory that
    /// `verify` accepts: sealed segments whole, the live one up to its last whole
    /// record (docs/operations.md, "Backup and restore").
    Backup {
        /// The server's data directory (the one holding shard-0, shard-1, ...).
        #[arg(long)]
        data_dir: PathBuf,
        /// The new directory to copy into.
        #[arg(long)]
        to: PathBuf,
    },
    /// Put a backup in place as a new data directory whose shards give ids far past
    /// any the lost node may have given after the backup.
    Restore {
        /// The backup (made by `backup`).
        #[arg(long)]
        from: PathBuf,
        /// The new data directory (its parent must exist).
        #[arg(long)]
        data_dir: PathBuf,
    },
    /// Ask a running server's /readyz (or another open path) and exit 0 on 200, 1
    /// otherwise: a container's HEALTHCHECK without curl in the image.
    Probe {
        /// Where the server listens.
        #[arg(long, default_value = "127.0.0.1:8080")]
        addr: String,
        /// The path to GET.
        #[arg(long, default_value = "/readyz")]
        path: String,
    },
    /// Print the OpenAPI 3.1 document of the API (as GET /openapi.json serves it).
    Openapi,
}

fn main() -> ExitCode {
    epro_ingest::base::logger::init();
    let result = match Cli::parse().command {
        Command::Serve {
            config,
            listen,
            shards,
            cpus,
            data_dir,
            durability,
            init,
        } => serve(
            config,
            Overrides {
                listen,
                shards,
                cpus,
                data_dir,
                durability,
            },
            init,
        ),
        Command::CheckConfig { config } => check_config(config.as_deref()),
        Command::Probe { addr, path } => probe(&addr, &path).map_err(Fatal::from),
        Command::Export { data_dir, salvage } => {
            let bar = cli::progress::progress_bar(&data_dir, "export");
            let exported = export::export(
                &data_dir,
                &mut std::io::BufWriter::with_capacity(1 << 20, std::io::stdout().lock()),
                salvage,
                &mut cli::progress::advance(&bar),
            );
            bar.finish_and_clear();
            exported
                .map(|count| {
                    log::info!("exported {count} records");
                })
                .map_err(Fatal::from)
        }
        Command::Verify {
            data_dir,
            heads,
            against,
        } => cli::verify::verify(&data_dir, heads, against.as_deref()).map_err(Fatal::from),
        Command::Openapi => {
            print!("{}", epro_ingest::api::openapi::document());
            Ok(())
        }
        Command::Ship {
            data_dir,
            postgres,
            node,
            once,
            batch,
            take_over,
        } => node_name(&data_dir, node)
            .and_then(|node| {
                ship(ship::Options {
                    node_id: ship::node::identity(&data_dir, take_over)?,
                    take_over,
                    data_dir,
                    conninfo: postgres,
                    node,
                    once,
                    batch: batch.max(1),
                })
            })
            .map_err(Fatal::from),
        Command::Backup { data_dir, to } => backup::backup(&data_dir, &to)
            .map(|copied| {
                for c in copied {
                    log::info!(
                        "shard {}: {} records, up to s{}-{}{}",
                        c.shard,
                        c.records,
                        c.shard,
                        c.next_seq.saturating_sub(1),
                        if c.cut > 0 {
                            format!(" ({} bytes of a half-written group left out)", c.cut)
                        } else {
                            String::new()
                        }
                    );
                }
                log::info!("backup in {} verifies", to.display());
            })
            .map_err(Fatal::from),
        Command::Restore { from, data_dir } => backup::restore(&from, &data_dir)
            .map(|next| {
                for (shard, first) in next {
                    log::info!("shard {shard}: new records start at s{shard}-{first}");
                }
            })
            .map_err(Fatal::from),
        Command::RetireShard { data_dir, shard } => retire::retire_shard(&data_dir, shard)
            .map(|done| {
                let next = done.next_seq;
                match done.moved_to {
                    Some(retired) => log::info!(
                        "shard {shard}: old log moved to {}; new records start at s{shard}-{next}",
                        retired.display()
                    ),
                    None => log::info!(
                        "shard {shard}: its log was gone; new records start at s{shard}-{next}"
                    ),
                }
            })
            .map_err(Fatal::from),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(fatal) => {
            log::error!("{fatal}");
            ExitCode::from(fatal.exit.code())
        }
    }
}

fn serve(config_path: Option<PathBuf>, overrides: Overrides, init: bool) -> Result<(), Fatal> {
    let config_error = |e: String| Fatal::new(Exit::Config, e);
    let system_error = |e: String| Fatal::new(Exit::Unsupported, e);
    let mut config =
        Config::load(config_path.as_deref(), overrides).map_err(|e| config_error(e.to_string()))?;
    #[cfg(feature = "test-seams")]
    if let Some(seconds) = config.test_seams.clock_offset_s {
        epro_ingest::base::clock::seam::set_offset(seconds);
    }
    epro_ingest::base::logger::set_format(config.log_format);
    let cpus = server::plan_cpus(&config).map_err(config_error)?;
    server::check_memlock(cpus.len()).map_err(system_error)?;
    server::check_nofile(&mut config, cpus.len()).map_err(system_error)?;
    let _held = datadir::open(&config.data_dir, cpus.len(), init)?;
    if !config.from_file {
        config.principals.push(generated_admin(&config.data_dir)?);
    }
    server::run(config, &cpus)
}

/// `probe`: one `GET path` to `addr` within 3 s; Ok on a 200.
fn probe(addr: &str, path: &str) -> Result<(), String> {
    use std::io::Write;
    use std::net::{TcpStream, ToSocketAddrs};
    let limit = std::time::Duration::from_secs(3);
    let target = addr
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| format!("probe: {addr:?} is not an address"))?;
    let mut stream = TcpStream::connect_timeout(&target, limit)
        .map_err(|e| format!("probe: connecting to {addr}: {e}"))?;
    let _ = stream.set_read_timeout(Some(limit));
    let _ = stream.set_write_timeout(Some(limit));
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| format!("probe: writing to {addr}: {e}"))?;
    let mut head = [0u8; 12];
    stream
        .read_exact(&mut head)
        .map_err(|e| format!("probe: reading from {addr}: {e}"))?;
    match &head[9..12] {
        b"200" => Ok(()),
        status => Err(format!(
            "probe: GET {path} answered {}",
            String::from_utf8_lossy(status)
        )),
    }
}

/// `check-config`: the config as `serve` would load it, without starting anything.
fn check_config(path: Option<&Path>) -> Result<(), Fatal> {
    let config = Config::load(path, Overrides::default())
        .map_err(|e| Fatal::new(Exit::Config, e.to_string()))?;
    let file = path.map_or("embedded defaults".to_string(), |p| p.display().to_string());
    let limited = config.rates().iter().filter(|r| r.is_some()).count();
    println!(
        "ok: {file}: listen {}, data_dir {}, durability {}, {} principals ({limited} with a \
         rate limit), shards {}",
        config.listen,
        config.data_dir.display(),
        format!("{:?}", config.durability).to_lowercase(),
        config.principals.len(),
        config
            .shards
            .map_or("one per CPU".to_string(), |n| n.to_string()),
    );
    Ok(())
}

/// Without a config file, the one principal is an admin whose token is generated once
/// into `<data_dir>/admin.token` (mode 0600): never a shared default secret.
fn generated_admin(data_dir: &Path) -> Result<Principal, String> {
    use std::os::unix::fs::OpenOptionsExt;
    let path = data_dir.join("admin.token");
    let token = match std::fs::read_to_string(&path) {
        Ok(token) => token.trim().to_string(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut random = [0u8; 32];
            std::fs::File::open("/dev/urandom")
                .and_then(|mut f| f.read_exact(&mut random))
                .map_err(|e| format!("reading /dev/urandom: {e}"))?;
            let token: String = random.iter().map(|b| format!("{b:02x}")).collect();
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .and_then(|mut f| std::io::Write::write_all(&mut f, token.as_bytes()))
                .map_err(|e| format!("writing {}: {e}", path.display()))?;
            token
        }
        Err(e) => return Err(format!("reading {}: {e}", path.display())),
    };
    log::info!(
        "no config file: admin bearer token is in {}",
        path.display()
    );
    Ok(Principal {
        id: "admin".to_string(),
        token,
        role: Role::Admin,
        projects: vec!["*".to_string()],
        rate_per_second: None,
        burst: None,
    })
}

/// `ship`: SIGTERM or SIGINT stop it after its current transaction, with status 0.
fn ship(opts: ship::Options) -> Result<(), String> {
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, Arc::clone(&stop))
            .map_err(|e| format!("ship: cannot handle signals: {e}"))?;
    }
    match ship::run(&opts, &stop) {
        Ok(_) => Ok(()),
        Err(ship::Stop::Shards(message) | ship::Stop::Fatal(message)) => Err(message),
    }
}

/// The node's name: `--node`, else the one kept in `<data_dir>/ship-node`, else the
/// host name, kept there for the next run (rows and cursors are per node name).
fn node_name(data_dir: &Path, given: Option<String>) -> Result<String, String> {
    if let Some(node) = given {
        return Ok(node);
    }
    let path = data_dir.join("ship-node");
    match std::fs::read_to_string(&path) {
        Ok(kept) if !kept.trim().is_empty() => Ok(kept.trim().to_string()),
        Ok(_) | Err(_) if !data_dir.is_dir() => {
            Err(format!("{}: not a data directory", data_dir.display()))
        }
        _ => {
            let node = host_name();
            std::fs::write(&path, format!("{node}\n"))
                .map_err(|e| format!("writing {}: {e}", path.display()))?;
            Ok(node)
        }
    }
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "node".to_string())
}
