//! A throwaway PostgreSQL for the ship tests: `initdb` into a temp dir and `pg_ctl`
//! on a Unix socket there (no TCP), as the `postgres` user when the tests run as root.
//! `scripts/test.sh` installs the server when it is missing; a test never skips.

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct Postgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    pub conninfo: String,
}

/// Where `initdb` and `pg_ctl` are: on the PATH, or Debian's versioned directory.
fn bin_dir() -> PathBuf {
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .find(|p| p.join("initdb").is_file() && p.join("pg_ctl").is_file())
    });
    if let Some(dir) = on_path {
        return dir;
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.path().join("bin"))
                .collect()
        })
        .unwrap_or_default();
    versions.retain(|p| p.join("initdb").is_file());
    versions.sort();
    versions
        .pop()
        .expect("PostgreSQL's initdb and pg_ctl (scripts/test.sh installs them)")
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find(|l| l.starts_with("Uid:"))
            .and_then(|l| l.split_whitespace().nth(2))
            == Some("0")
    })
}

impl Postgres {
    pub fn start() -> Postgres {
        let dir = tempfile::Builder::new()
            .prefix("epro-pg-")
            .tempdir_in("/tmp")
            .unwrap();
        if is_root() {
            run(Command::new("chown")
                .arg("postgres:postgres")
                .arg(dir.path()));
        }
        let pg = Postgres {
            conninfo: format!(
                "host={} port=5432 user=postgres dbname=postgres",
                dir.path().display()
            ),
            bin: bin_dir(),
            dir,
        };
        pg.as_owner(&[
            "initdb",
            "-D",
            &pg.data().display().to_string(),
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
        ]);
        pg.ctl("start");
        pg
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// `pg_ctl <action>`, waiting for it; the server listens only on the socket.
    fn ctl(&self, action: &str) {
        let options = format!(
            "-k {} -c listen_addresses='' -p 5432 -c fsync=off",
            self.dir.path().display()
        );
        let data = self.data().display().to_string();
        let log = self.dir.path().join("log").display().to_string();
        self.as_owner(&[
            "pg_ctl",
            "-D",
            &data,
            "-l",
            &log,
            "-o",
            &options,
            "-w",
            "-m",
            "immediate",
            action,
        ]);
    }

    /// Stops PostgreSQL at once (as a crash would) and starts it again.
    pub fn restart(&self) {
        self.ctl("restart");
    }

    pub fn client(&self) -> postgres::Client {
        postgres::Client::connect(&self.conninfo, postgres::NoTls).expect("connect to PostgreSQL")
    }

    fn as_owner(&self, args: &[&str]) {
        let program = self.bin.join(args[0]);
        let mut cmd = if is_root() {
            let mut cmd = Command::new("runuser");
            cmd.args(["-u", "postgres", "--"]).arg(&program);
            cmd
        } else {
            Command::new(&program)
        };
        cmd.args(&args[1..]).current_dir(self.dir.path());
        run(&mut cmd);
    }
}

fn run(cmd: &mut Command) {
    let out = cmd.output().expect("run a PostgreSQL tool");
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if Path::new(&self.data()).join("postmaster.pid").exists() {
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.ctl("stop")));
        }
    }
}
