//! `epro-ingest serve`: parse the command line and config, check the machine, start one
//! shard per CPU, and turn any start-up failure into one clear message and exit code 1.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use epro_ingest::config::{Config, Durability, Overrides};
use epro_ingest::shard;

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
    Serve {
        /// TOML config file; flags below override its values.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Address to listen on, e.g. 0.0.0.0:8080 (port 0: any free port).
        #[arg(long)]
        listen: Option<String>,
        /// Number of shards (default: one per CPU this process may run on).
        #[arg(long)]
        shards: Option<usize>,
        /// CPUs to run shards on, e.g. 2,3 (default: the process's affinity mask).
        #[arg(long, value_delimiter = ',')]
        cpus: Option<Vec<usize>>,
        /// Directory for the per-shard logs.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        #[arg(long, value_enum)]
        durability: Option<Durability>,
    },
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve {
            config,
            listen,
            shards,
            cpus,
            data_dir,
            durability,
        } => serve(
            config,
            Overrides {
                listen,
                shards,
                cpus,
                data_dir,
                durability,
            },
        ),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            log::error!("{message}");
            ExitCode::FAILURE
        }
    }
}

fn serve(config_path: Option<PathBuf>, overrides: Overrides) -> Result<(), String> {
    let config = Config::load(config_path.as_deref(), overrides).map_err(|e| e.to_string())?;
    let cpus = shard::plan_cpus(&config)?;
    shard::check_memlock(cpus.len())?;
    check_data_dir(&config)?;
    shard::run(config, &cpus)
}

/// The data directory must exist (it is created) and be writable before any shard starts.
fn check_data_dir(config: &Config) -> Result<(), String> {
    let dir = &config.data_dir;
    std::fs::create_dir_all(dir)
        .map_err(|e| format!("cannot create data dir {}: {e}", dir.display()))?;
    let probe = dir.join(".write-probe");
    std::fs::write(&probe, b"")
        .and_then(|()| std::fs::remove_file(&probe))
        .map_err(|e| format!("data dir {} is not writable: {e}", dir.display()))
}
