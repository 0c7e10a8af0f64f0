//! `epro-ingest`: `serve` parses the command line and config, checks the machine and
//! hands over to [`epro_ingest::runtime::server`], which starts one shard per CPU and shuts
//! down on SIGTERM/SIGINT; `check-config` checks a config file; the offline commands
//! ([`epro_ingest::cli`], [`epro_ingest::ship`]) read a data directory beside it. Every
//! failure is one clear message and an exit status that says whether a restart may help
//! ([`epro_ingest::base::exit`]); a reader of stdout that leaves early ends a command
//! quietly ([`epro_ingest::cli::out`]).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use epro_ingest::base::exit::{Exit, Fatal};
use epro_ingest::cli::{out, tools};
use epro_ingest::config::{admin, Config, Overrides};
use epro_ingest::log::{datadir, Durability};
use epro_ingest::runtime::server;
use epro_ingest::ship;

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
    let result = run(Cli::parse().command);
    // The reader of stdout left (`| head`): it had what it wanted.
    if out::stopped() == Some(out::Stopped::Closed) {
        return ExitCode::from(out::CLOSED_STATUS);
    }
    match result.and_then(|()| out::written()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(fatal) => {
            log::error!("{fatal}");
            ExitCode::from(fatal.exit.code())
        }
    }
}

fn run(command: Command) -> Result<(), Fatal> {
    match command {
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
        Command::Probe { addr, path } => Ok(tools::probe(&addr, &path)?),
        Command::Export { data_dir, salvage } => Ok(tools::export(&data_dir, salvage)?),
        Command::Verify {
            data_dir,
            heads,
            against,
        } => Ok(epro_ingest::cli::verify::verify(
            &data_dir,
            heads,
            against.as_deref(),
        )?),
        Command::Openapi => {
            out::print(&epro_ingest::api::openapi::document());
            Ok(())
        }
        Command::Ship {
            data_dir,
            postgres,
            node,
            once,
            batch,
            take_over,
        } => Ok(ship::until_signalled(&ship::Options {
            node: ship::node::name(&data_dir, node)?,
            node_id: ship::node::identity(&data_dir, take_over)?,
            take_over,
            data_dir,
            conninfo: postgres,
            once,
            batch: batch.max(1),
        })?),
        Command::Backup { data_dir, to } => Ok(tools::backup(&data_dir, &to)?),
        Command::Restore { from, data_dir } => Ok(tools::restore(&from, &data_dir)?),
        Command::RetireShard { data_dir, shard } => Ok(tools::retire_shard(&data_dir, shard)?),
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
    #[cfg(feature = "test-seams")]
    if let Some(path) = config.test_seams.clock_offset_file.clone() {
        epro_ingest::base::clock::seam::follow(path)
            .map_err(|e| Fatal::new(Exit::Other, format!("clock seam: {e}")))?;
    }
    epro_ingest::base::logger::set_format(config.log_format);
    let cpus = server::plan_cpus(&config).map_err(config_error)?;
    server::check_memlock(cpus.len()).map_err(system_error)?;
    server::check_nofile(&mut config, cpus.len()).map_err(system_error)?;
    let _held = datadir::open(&config.data_dir, cpus.len(), init)?;
    if !config.from_file {
        config
            .principals
            .push(admin::generated_admin(&config.data_dir)?);
    }
    server::run(config, &cpus)
}

/// `check-config`: the config as `serve` would load it, without starting anything.
fn check_config(path: Option<&Path>) -> Result<(), Fatal> {
    let config = Config::load(path, Overrides::default())
        .map_err(|e| Fatal::new(Exit::Config, e.to_string()))?;
    let file = path.map_or("embedded defaults".to_string(), |p| p.display().to_string());
    let limited = config.rates().iter().filter(|r| r.is_some()).count();
    out::print(&format!(
        "ok: {file}: listen {}, data_dir {}, durability {}, {} principals ({limited} with a \
         rate limit), shards {}\n",
        config.listen,
        config.data_dir.display(),
        format!("{:?}", config.durability).to_lowercase(),
        config.principals.len(),
        config
            .shards
            .map_or("one per CPU".to_string(), |n| n.to_string()),
    ));
    Ok(())
}
