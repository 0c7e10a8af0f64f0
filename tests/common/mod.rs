//! Test harness: starts the real `epro-ingest` binary on port 0 with a temp data dir
//! and talks raw bytes to it over TCP.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_epro-ingest");

/// A device principal allowed every project, with small segments so that the scans of
/// storage tests stay quick in debug builds.
pub const DEVICE_CONFIG: &str = r#"
segment_bytes = 65536

[[principals]]
id = "site-app-001"
token = "device-token-0123456789"
role = "device"
projects = ["*"]
"#;
pub const DEVICE_TOKEN: &str = "device-token-0123456789";

/// [`DEVICE_CONFIG`] plus an admin, for tests that also read.
pub const DEVICE_ADMIN_CONFIG: &str = r#"
segment_bytes = 65536

[[principals]]
id = "site-app-001"
token = "device-token-0123456789"
role = "device"
projects = ["*"]

[[principals]]
id = "admin-1"
token = "admin-token-0123456789"
role = "admin"
projects = ["*"]
"#;
pub const ADMIN_TOKEN: &str = "admin-token-0123456789";

/// A temp dir on the same disk as `target/`: fdatasync on tmpfs proves nothing.
pub fn temp_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("epro-test-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("create temp dir")
}

/// A world-traversable temp dir (mode 0755) under the system's temp dir, for tests that
/// run something as another user: the checkout, and so [`temp_dir`], may sit below a
/// directory that user cannot enter (a 0700 home, or `mktemp -d`). Nothing in it needs
/// a real fdatasync.
pub fn open_temp_dir(prefix: &str) -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .expect("create temp dir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
        .expect("open the temp dir to other users");
    dir
}

/// Whether the tests run as root, who reads every file and may become another user.
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find(|l| l.starts_with("Uid:"))
            .and_then(|l| l.split_whitespace().nth(2))
            == Some("0")
    })
}

pub struct Server {
    child: Option<Child>,
    pub addr: SocketAddr,
    dir: Option<tempfile::TempDir>,
    log: Arc<Mutex<String>>,
}

impl Server {
    /// Starts `serve` with 2 shards (unless `extra` says) on 127.0.0.1:0, the given config file contents
    /// (empty: no config file) and extra flags, and waits until it is ready.
    pub fn start(config: &str, extra: &[&str]) -> Server {
        Self::start_in(temp_dir(), config, extra)
    }

    /// As [`Server::start`], over an existing directory (for restarts).
    pub fn start_in(dir: tempfile::TempDir, config: &str, extra: &[&str]) -> Server {
        Self::try_start_in(dir, config, extra)
            .unwrap_or_else(|log| panic!("server did not start:\n{log}"))
    }

    /// As [`Server::start_in`], but returns once it listens, ready or not.
    pub fn start_listening_in(dir: tempfile::TempDir, config: &str, extra: &[&str]) -> Server {
        Self::spawn_in(dir, config, extra)
            .unwrap_or_else(|log| panic!("server did not start:\n{log}"))
    }

    fn spawn_in(dir: tempfile::TempDir, config: &str, extra: &[&str]) -> Result<Server, String> {
        let data = dir.path().join("data");
        let mut cmd = Command::new(BIN);
        cmd.arg("serve")
            .args(["--init", "--listen", "127.0.0.1:0"])
            .arg("--data-dir")
            .arg(&data);
        if !extra.contains(&"--shards") {
            cmd.args(["--shards", "2"]);
        }
        if !config.is_empty() {
            let path = dir.path().join("config.toml");
            std::fs::write(&path, config).unwrap();
            cmd.arg("--config").arg(&path);
        }
        cmd.args(extra);
        let (child, addr, log) = spawn_and_wait(cmd)?;
        Ok(Server {
            child: Some(child),
            addr,
            dir: Some(dir),
            log,
        })
    }

    pub fn try_start_in(
        dir: tempfile::TempDir,
        config: &str,
        extra: &[&str],
    ) -> Result<Server, String> {
        let mut server = Self::spawn_in(dir, config, extra)?;
        // Ready once every shard recovered its log; a server that exits instead failed.
        let ready = |server: &mut Server| {
            let log = server.log();
            log.contains("] ready: ") || log.contains("\"msg\":\"ready: ")
        };
        let began = Instant::now();
        while !ready(&mut server) {
            let exited = server
                .child
                .as_mut()
                .is_some_and(|c| matches!(c.try_wait(), Ok(Some(_))));
            if exited || began.elapsed() > Duration::from_secs(30) {
                std::thread::sleep(Duration::from_millis(50));
                return Err(format!("never ready:\n{}", server.log()));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(server)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.as_ref().unwrap().path().join("data")
    }

    pub fn connect(&self) -> TcpStream {
        let stream = TcpStream::connect(self.addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream.set_nodelay(true).unwrap();
        stream
    }

    /// Everything the server wrote to stderr so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// The server's stderr as it grows, readable after [`Server::terminate`].
    pub fn log_handle(&self) -> Arc<Mutex<String>> {
        Arc::clone(&self.log)
    }

    /// The admin bearer token generated without a config file.
    pub fn admin_token(&self) -> String {
        std::fs::read_to_string(self.data_dir().join("admin.token")).expect("admin.token")
    }

    /// `kill -9`; returns the directory for a restart.
    pub fn kill(mut self) -> tempfile::TempDir {
        let mut child = self.child.take().unwrap();
        let _ = child.kill();
        let _ = child.wait();
        self.dir.take().unwrap()
    }

    /// Waits up to `limit` for the server to exit on its own; its status, if it did.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let child = self.child.as_mut()?;
        let began = Instant::now();
        while began.elapsed() < limit {
            if let Some(status) = child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }

    /// SIGTERM, then waits (up to 30 s) for the exit status.
    pub fn terminate(mut self) -> (std::process::ExitStatus, tempfile::TempDir) {
        let mut child = self.child.take().unwrap();
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let began = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if began.elapsed() > Duration::from_secs(30) {
                let _ = child.kill();
                panic!("server did not exit after SIGTERM:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        (status, self.dir.take().unwrap())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `serve --listen 127.0.0.1:0 --shards SHARDS`, no more: the caller names the data
/// directory (and a config), for a start that [`Server`] would not make (no `--init`).
pub fn serve_cmd(shards: &str) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--shards", shards]);
    cmd
}

/// Spawns `cmd` and waits for its `listening on ADDR` line; on failure returns the log.
pub fn spawn_and_wait(mut cmd: Command) -> Result<(Child, SocketAddr, Arc<Mutex<String>>), String> {
    cmd.stdout(Stdio::null())
        .stderr(Stdio::piped())
        .env("RUST_LOG", "info");
    let mut child = cmd.spawn().expect("spawn server");
    let stderr = child.stderr.take().unwrap();
    let log = Arc::new(Mutex::new(String::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    let sink = Arc::clone(&log);
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if let Some(addr) = line.split("listening on ").nth(1) {
                // The address ends the text line; a JSON line closes its string after it.
                let addr: String = addr
                    .chars()
                    .take_while(|c| c.is_ascii_hexdigit() || matches!(c, '.' | ':' | '[' | ']'))
                    .collect();
                if let Some(tx) = tx.take() {
                    let _ = tx.send(addr);
                }
            }
            let mut log = sink.lock().unwrap();
            log.push_str(&line);
            log.push('\n');
        }
    });
    match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(addr) => Ok((child, addr.parse().expect("listening address"), log)),
        Err(_) => {
            let _ = child.kill();
            let status = child.wait().ok();
            std::thread::sleep(Duration::from_millis(100));
            let text = log.lock().unwrap().clone();
            Err(format!("exit: {status:?}\n{text}"))
        }
    }
}

/// One parsed HTTP response.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.text()))
    }

    /// The `error` message of a JSON error body.
    pub fn error(&self) -> String {
        self.json()["error"]
            .as_str()
            .expect("error field")
            .to_string()
    }
}

/// Reads one response (Content-Length framed, as this server always sends).
/// `None` if the connection closed before a status line.
pub fn read_response(stream: &mut impl Read) -> Option<Response> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(0) | Err(_) if head.is_empty() => return None,
            Ok(0) => panic!(
                "connection closed inside a response head: {:?}",
                String::from_utf8_lossy(&head)
            ),
            Ok(_) => head.push(byte[0]),
            Err(e) => panic!("read error inside a response head: {e}"),
        }
    }
    let text = String::from_utf8(head).expect("ASCII head");
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap();
    assert!(
        status_line.starts_with("HTTP/1.1 "),
        "status line {status_line:?}"
    );
    let status = status_line[9..12].parse().unwrap();
    let headers: Vec<(String, String)> = lines
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (n, v) = l.split_once(": ").expect("header line");
            (n.to_string(), v.to_string())
        })
        .collect();
    let len: usize = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .map(|(_, v)| v.parse().unwrap())
        .unwrap_or(0);
    let mut body = vec![0; len];
    if status != 100 {
        stream.read_exact(&mut body).expect("body");
    }
    Some(Response {
        status,
        headers,
        body,
    })
}

/// Whether the peer closed the connection (within the stream's read timeout).
pub fn is_closed(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 1];
    matches!(stream.read(&mut buf), Ok(0))
        || matches!(stream.read(&mut buf), Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset)
}

/// Sends `bytes` on a fresh connection and collects every response until the server
/// closes or goes quiet for `quiet`. Returns the responses and whether it closed.
pub fn exchange(addr: SocketAddr, bytes: &[u8], quiet: Duration) -> (Vec<Response>, bool) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(quiet)).unwrap();
    let _ = stream.write_all(bytes);
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    let closed = loop {
        match stream.read(&mut buf) {
            Ok(0) => break true,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break true,
            Err(_) => break false,
        }
    };
    let mut cursor = std::io::Cursor::new(raw);
    let mut responses = Vec::new();
    while let Some(r) = read_response(&mut cursor) {
        responses.push(r);
    }
    (responses, closed)
}

/// Polls `f` until it is true or `limit` passes.
pub fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    f()
}

/// Sends one POST with a JSON body on `stream` and reads the response.
pub fn post(stream: &mut TcpStream, path: &str, token: &str, body: &str) -> Response {
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).unwrap();
    read_response(stream).expect("a response")
}

/// Sends one GET and reads the response.
pub fn get(stream: &mut TcpStream, path: &str, token: &str) -> Response {
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {token}\r\n\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    read_response(stream).expect("a response")
}

/// A submission body in the original Gin clients' shape, with the given patient.
pub fn report(patient: &str) -> String {
    format!(
        r#"{{"patientId":"{patient}","reportData":"{{\"q1\":3,\"painScore\":6}}","timestamp":"2026-11-26T08:15:30Z"}}"#
    )
}

/// `GET /readyz` on a new connection (the kernel picks the shard): its status, and the
/// connection for a follow-up request.
pub fn probe_readyz(addr: SocketAddr) -> (u16, TcpStream) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
        .write_all(b"GET /readyz HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let status = read_response(&mut stream)
        .expect("a response to /readyz")
        .status;
    (status, stream)
}

/// A report to project P001, site S01, for `patient`: counted by the read APIs.
pub fn project_report(patient: &str) -> String {
    format!(r#"{{"patientId":"{patient}","projectId":"P001","siteId":"S01","reportData":"fine"}}"#)
}

/// How [`stored_reports`] ends its server.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// SIGTERM: a clean stop, marked in the manifest.
    Clean,
    /// kill -9.
    Crash,
}

/// A 1-shard server under `config` that stored `n` project reports (`P-0`, `P-1`, ...)
/// with [`DEVICE_TOKEN`], then ended as `ending` says: its data directory.
pub fn stored_reports(config: &str, n: usize, ending: Ending) -> tempfile::TempDir {
    let server = Server::start(config, &["--shards", "1"]);
    let mut stream = server.connect();
    for i in 0..n {
        let r = post(
            &mut stream,
            "/epro/submit",
            DEVICE_TOKEN,
            &project_report(&format!("P-{i}")),
        );
        assert_eq!(r.status, 200, "{}", r.text());
    }
    if ending == Ending::Crash {
        return server.kill();
    }
    let (status, dir) = server.terminate();
    assert!(status.success(), "{status:?}");
    dir
}

/// The bytes of a submit of `body` with the device token.
pub fn submit_request(body: &str) -> Vec<u8> {
    format!(
        "POST /epro/submit HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {DEVICE_TOKEN}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Submits reports for patients `<tag>-0`, `<tag>-1`, ... until `stop` is set or the
/// server goes away, `depth` requests pipelined at a time; `acked(id, patient)` for
/// every 200. Any other status panics: under load a server answers or dies.
pub fn submit_until_gone(
    addr: SocketAddr,
    depth: usize,
    tag: &str,
    stop: &std::sync::atomic::AtomicBool,
    mut acked: impl FnMut(String, String),
) {
    let Ok(mut stream) = TcpStream::connect(addr) else {
        return;
    };
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut n = 0;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let mut batch = Vec::new();
        let mut patients = Vec::new();
        for _ in 0..depth {
            let patient = format!("{tag}-{n}");
            n += 1;
            batch.extend_from_slice(&submit_request(&report(&patient)));
            patients.push(patient);
        }
        if stream.write_all(&batch).is_err() {
            return;
        }
        for patient in patients {
            // A killed server ends the stream inside or before a response: stop there.
            let response = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                read_response(&mut stream)
            }));
            match response {
                Ok(Some(r)) if r.status == 200 => {
                    acked(r.json()["id"].as_str().unwrap().to_string(), patient)
                }
                Ok(Some(r)) => panic!("unexpected status {}: {}", r.status, r.text()),
                _ => return,
            }
        }
    }
}

/// Asserts that every acknowledged `(id, patientId)` in `acked` is exported from
/// `data_dir` under its id.
pub fn assert_exported(data_dir: &Path, acked: &[(String, String)]) {
    let exported: std::collections::HashMap<String, String> = export(data_dir)
        .into_iter()
        .map(|r| {
            let id = r["id"].as_str().unwrap().to_string();
            (id, r["body"]["patientId"].as_str().unwrap().to_string())
        })
        .collect();
    for (id, patient) in acked {
        assert_eq!(exported.get(id), Some(patient), "acknowledged {id} lost");
    }
}

/// Asserts that `data_dir` stores no id twice and every id in `acked`; returns the
/// ids stored.
pub fn assert_stored_once<'a>(
    data_dir: &Path,
    acked: impl IntoIterator<Item = &'a String>,
) -> Vec<String> {
    let stored: Vec<String> = export(data_dir)
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    let unique: std::collections::HashSet<&String> = stored.iter().collect();
    assert_eq!(unique.len(), stored.len(), "an id stored twice");
    for id in acked {
        assert!(unique.contains(id), "acknowledged {id} lost");
    }
    stored
}

/// Runs `epro-ingest export` over `data_dir`: the JSON lines, parsed.
pub fn export(data_dir: &Path) -> Vec<serde_json::Value> {
    let out = Command::new(BIN)
        .arg("export")
        .arg("--data-dir")
        .arg(data_dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "export failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad export line {l:?}: {e}")))
        .collect()
}

/// Runs `epro-ingest verify`: (success, stdout).
pub fn verify(data_dir: &Path) -> (bool, String) {
    let out = Command::new(BIN)
        .arg("verify")
        .arg("--data-dir")
        .arg(data_dir)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// Runs `script` with python3, `input` on its stdin (the Python tools the tests use,
/// which `scripts/test.sh` installs).
pub fn python(script: &str, input: &[u8]) -> std::process::Output {
    let mut child = Command::new("python3")
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 (scripts/test.sh installs it)");
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

/// xorshift64*: deterministic, so a failure names a seed that reproduces it.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Runs `epro-ingest <args> --data-dir <data>` and returns what it did.
pub fn run_cli(args: &[&str], data: &Path) -> std::process::Output {
    Command::new(BIN)
        .args(args)
        .arg("--data-dir")
        .arg(data)
        .output()
        .unwrap()
}

/// Writes a `MANIFEST` for a hand-made shard directory, listing its segments as they
/// are (a shard with segments and no manifest is damage).
pub fn write_manifest(shard_dir: &Path, shard: u16) {
    use epro_ingest::log::files::list_segments;
    use epro_ingest::log::manifest::{Listed, Manifest};
    let mut manifest = Manifest::new(shard, 1);
    for segment in list_segments(shard_dir).unwrap() {
        let size = std::fs::metadata(&segment.path).unwrap().len();
        manifest.segments.push(Listed {
            first_seq: segment.first_seq,
            size,
        });
    }
    manifest.write(shard_dir).unwrap();
}
