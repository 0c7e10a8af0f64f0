//! Behind a TLS-terminating reverse proxy: the access log names the real client, taken
//! from `X-Forwarded-For` only on connections from `trusted_proxies`; anyone else's
//! `X-Forwarded-For` is ignored. The nginx config in `deploy/` is run for real: TLS
//! with a throwaway certificate, a request through it, the redirect of plain HTTP.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{read_response, temp_dir, Server, DEVICE_TOKEN};

const NGINX_CONF: &str = include_str!("../deploy/nginx/epro-ingest.conf");

fn config(trusted: &str) -> String {
    format!("trusted_proxies = [{trusted}]\n{}", common::DEVICE_CONFIG)
}

/// The `peer=` of the access log's latest submit line, once there are `n` of them.
fn nth_logged_peer(server: &Server, n: usize) -> String {
    let lines = |log: &str| -> Vec<String> {
        log.lines()
            .filter(|l| l.contains("POST /epro/submit"))
            .map(str::to_string)
            .collect()
    };
    let logged = common::wait_until(Duration::from_secs(5), || lines(&server.log()).len() >= n);
    assert!(logged, "{}", server.log());
    let line = lines(&server.log())[n - 1].clone();
    line.split("peer=")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .to_string()
}

/// One submit from 127.0.0.1 with `X-Forwarded-For: xff`.
fn submit_forwarded(server: &Server, xff: &str) {
    let body = common::report("P-1");
    let mut s = server.connect();
    write!(
        s,
        "POST /epro/submit HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {DEVICE_TOKEN}\r\n\
         X-Forwarded-For: {xff}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    assert_eq!(read_response(&mut s).unwrap().status, 200);
}

#[test]
fn only_a_trusted_proxy_names_the_client() {
    let server = Server::start(&config("\"127.0.0.1\", \"10.0.0.0/8\""), &[]);
    // The proxy appended the client; the entry to its left is the client's own claim.
    submit_forwarded(&server, "198.51.100.9, 203.0.113.7");
    assert_eq!(nth_logged_peer(&server, 1), "203.0.113.7");
    // Through two trusted proxies: the rightmost untrusted address.
    submit_forwarded(&server, "2001:db8::5, 10.1.2.3");
    assert_eq!(nth_logged_peer(&server, 2), "2001:db8::5");
    // A chain that is not addresses names nobody: the proxy itself stays.
    submit_forwarded(&server, "unknown");
    assert!(nth_logged_peer(&server, 3).starts_with("127.0.0.1:"));

    // A server that trusts no proxy ignores the header: clients cannot forge it.
    let server = Server::start(common::DEVICE_CONFIG, &[]);
    submit_forwarded(&server, "203.0.113.7");
    assert!(nth_logged_peer(&server, 1).starts_with("127.0.0.1:"));
}

#[test]
fn a_malformed_trusted_proxy_is_a_config_error() {
    let dir = temp_dir();
    let path = dir.path().join("c.toml");
    std::fs::write(&path, config("\"10.0.0.0/33\"")).unwrap();
    let out = Command::new(common::BIN)
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{err}");
    assert!(err.contains("trusted_proxies[0]: \"10.0.0.0/33\""), "{err}");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// deploy/nginx/epro-ingest.conf, as shipped but for its ports and certificate paths.
#[test]
fn the_nginx_config_terminates_tls_and_forwards_the_client() {
    let server = Server::start(&config("\"127.0.0.1\""), &[]);
    let dir = temp_dir();
    let d = dir.path();
    let ok = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args([
            "-subj",
            "/CN=epro.example.org",
            "-addext",
            "subjectAltName=DNS:epro.example.org",
        ])
        .arg("-keyout")
        .arg(d.join("tls.key"))
        .arg("-out")
        .arg(d.join("tls.crt"))
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success();
    assert!(ok, "openssl req");
    let (https, http) = (free_port(), free_port());
    let site = NGINX_CONF
        .replace(
            "server 127.0.0.1:8080;",
            &format!("server {};", server.addr),
        )
        .replace(
            "listen 443 ssl http2;",
            &format!("listen 127.0.0.1:{https} ssl http2;"),
        )
        .replace("listen [::]:443 ssl http2;", "")
        .replace("listen 80;", &format!("listen 127.0.0.1:{http};"))
        .replace("listen [::]:80;", "")
        .replace(
            "/etc/nginx/tls/epro.example.org.crt",
            &format!("\"{}\"", d.join("tls.crt").display()),
        )
        .replace(
            "/etc/nginx/tls/epro.example.org.key",
            &format!("\"{}\"", d.join("tls.key").display()),
        );
    assert_ne!(site, NGINX_CONF);
    std::fs::write(d.join("site.conf"), site).unwrap();
    let temp = d.display();
    let user = if common::is_root() { "user root;" } else { "" };
    // Paths quoted: the checkout's path may hold a space.
    let main = format!(
        "{user}\ndaemon off;\npid \"{temp}/nginx.pid\";\nerror_log \"{temp}/error.log\";\n\
         events {{}}\nhttp {{\n access_log off;\n client_body_temp_path \"{temp}/body\";\n\
         proxy_temp_path \"{temp}/proxy\";\n fastcgi_temp_path \"{temp}/fcgi\";\n\
         uwsgi_temp_path \"{temp}/uwsgi\";\n scgi_temp_path \"{temp}/scgi\";\n\
         include \"{temp}/site.conf\";\n}}\n"
    );
    std::fs::write(d.join("nginx.conf"), main).unwrap();
    let nginx = Command::new("nginx")
        .arg("-p")
        .arg(d)
        .arg("-c")
        .arg(d.join("nginx.conf"))
        .stderr(Stdio::piped())
        .spawn()
        .expect("nginx (scripts/test.sh installs nginx-light)");
    let curl = |url: String, extra: &[&str]| {
        Command::new("curl")
            .args(["-sS", "--max-time", "5", "--interface", "127.0.0.2"])
            .args(["--resolve", &format!("epro.example.org:{https}:127.0.0.1")])
            .args(["--resolve", &format!("epro.example.org:{http}:127.0.0.1")])
            .arg("--cacert")
            .arg(d.join("tls.crt"))
            .args(extra)
            .arg(url)
            .output()
            .unwrap()
    };
    let body = common::report("P-TLS");
    let auth = format!("Authorization: Bearer {DEVICE_TOKEN}");
    let submit = [
        "-H",
        auth.as_str(),
        "-H",
        "Content-Type: application/json",
        "--data",
        body.as_str(),
    ];
    let url = format!("https://epro.example.org:{https}/epro/submit");
    let up = common::wait_until(Duration::from_secs(10), || {
        curl(url.clone(), &submit).status.success()
    });
    let out = curl(url, &submit);
    let plain = curl(
        format!("http://epro.example.org:{http}/epro/submit"),
        &["-o", "/dev/null", "-w", "%{http_code} %{redirect_url}"],
    );
    // SIGTERM: the master stops its workers too (a SIGKILL would orphan them).
    let pid = nix::unistd::Pid::from_raw(nginx.id() as i32);
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    let nginx_err = nginx.wait_with_output().unwrap().stderr;
    assert!(
        up,
        "{}{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&nginx_err)
    );
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(answer["status"], "success", "{answer}");
    // The client connected from 127.0.0.2; nginx (127.0.0.1, trusted) said so.
    assert_eq!(nth_logged_peer(&server, 1), "127.0.0.2");
    // Plain HTTP carries no token or report: it only redirects.
    let plain = String::from_utf8_lossy(&plain.stdout).to_string();
    assert_eq!(plain, "308 https://epro.example.org/epro/submit", "{plain}");
}
