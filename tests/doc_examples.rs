//! The request examples of docs/api.md and docs/fhir.md run as written against the
//! real binary, one after another as the pages say, and answer as the pages show: each
//! `# {json}` comment is matched by what its block printed (ids and times may differ),
//! each `# HTTP/1.1 ...` comment by the status line and the header names it lists.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

const API: &str = include_str!("../docs/api.md");
const FHIR: &str = include_str!("../docs/fhir.md");
/// The line of api.md that names the server; the test points it at its own.
const ADDR_LINE: &str = "ADDR=localhost:8080\n";

/// The page's `sh` blocks that talk to the server (`$ADDR`), in order.
fn request_blocks(page: &str) -> Vec<String> {
    page.split("```sh\n")
        .skip(1)
        .map(|rest| rest[..rest.find("```").expect("a closed block")].to_string())
        .filter(|block| block.contains("$ADDR") || block.contains(ADDR_LINE))
        .collect()
}

/// Whether `s` is a record id: `s<shard>-<sequence number>`.
fn is_id(s: &str) -> bool {
    s.strip_prefix('s')
        .and_then(|r| r.split_once('-'))
        .is_some_and(|(a, b)| {
            !a.is_empty()
                && !b.is_empty()
                && a.bytes().all(|c| c.is_ascii_digit())
                && b.bytes().all(|c| c.is_ascii_digit())
        })
}

/// Ids and RFC 3339 UTC times replaced by placeholders: what differs from run to run.
fn normalize(s: &str) -> String {
    let b = s.as_bytes();
    if b.len() >= 20 && b[4] == b'-' && b[10] == b'T' && s.ends_with('Z') {
        return "TIME".into();
    }
    s.split('/')
        .map(|part| if is_id(part) { "ID" } else { part })
        .collect::<Vec<_>>()
        .join("/")
        .split(' ')
        .map(|part| if is_id(part) { "ID" } else { part })
        .collect::<Vec<_>>()
        .join(" ")
}

fn same_shape(doc: &serde_json::Value, got: &serde_json::Value) -> bool {
    use serde_json::Value::*;
    match (doc, got) {
        (Object(d), Object(g)) => {
            d.len() == g.len()
                && d.iter()
                    .all(|(k, v)| g.get(k).is_some_and(|w| same_shape(v, w)))
        }
        (Array(d), Array(g)) => {
            d.len() == g.len() && d.iter().zip(g).all(|(v, w)| same_shape(v, w))
        }
        (String(d), String(g)) => normalize(d) == normalize(g),
        _ => doc == got,
    }
}

/// Every JSON value in `text`, which may hold several back to back (curl prints no
/// newline after a body).
fn json_values(text: &str) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    for (at, _) in text.match_indices('{') {
        // Only values that start a line or follow another value's end.
        if at == 0 || matches!(text.as_bytes()[at - 1], b'\n' | b'}') {
            let mut stream = serde_json::Deserializer::from_str(&text[at..]).into_iter();
            if let Some(Ok(value)) = stream.next() {
                out.push(value);
            }
        }
    }
    out
}

/// Checks one block's printed output against its `# ` comments.
fn check(block: &str, output: &str) -> Result<(), String> {
    let got = json_values(output);
    for comment in block.lines().filter_map(|l| l.trim().strip_prefix("# ")) {
        if comment.starts_with('{') {
            let doc: serde_json::Value = serde_json::from_str(comment)
                .map_err(|e| format!("the documented answer {comment} is not JSON: {e}"))?;
            if !got.iter().any(|g| same_shape(&doc, g)) {
                return Err(format!("documented {comment}, got {output}"));
            }
        } else if let Some(head) = comment.strip_prefix("HTTP/1.1 ") {
            let (status, headers) = head.split_once(" ... ").unwrap_or((head, ""));
            if !output.contains(&format!("HTTP/1.1 {status}\r\n")) {
                return Err(format!("documented HTTP/1.1 {status}, got {output}"));
            }
            for header in headers.split(", ").filter(|h| !h.is_empty()) {
                let name = header.split(':').next().unwrap();
                if !output.contains(&format!("\r\n{name}: ")) {
                    return Err(format!("documented header {name}, got {output}"));
                }
            }
        }
    }
    Ok(())
}

#[test]
fn the_api_and_fhir_examples_answer_as_documented() {
    assert!(
        API.contains(ADDR_LINE),
        "api.md names its server as {ADDR_LINE:?}"
    );
    let blocks: Vec<String> = request_blocks(API)
        .into_iter()
        .chain(request_blocks(FHIR))
        .collect();
    assert!(blocks.len() >= 8, "found {} request blocks", blocks.len());

    // A server as scripts/start.sh starts it: embedded defaults, ./data, --init.
    let dir = tempfile::Builder::new()
        .prefix("doc examples ")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap();
    let mut serve = Command::new(common::BIN);
    serve
        .args([
            "serve",
            "--init",
            "--shards",
            "2",
            "--listen",
            "127.0.0.1:0",
        ])
        .current_dir(dir.path());
    let (mut child, addr, log) = common::spawn_and_wait(serve).expect("the server starts");
    assert!(
        common::wait_until(Duration::from_secs(30), || common::probe_readyz(addr).0
            == 200),
        "not ready: {}",
        log.lock().unwrap()
    );

    // One shell, so that each block carries on from the ones before (TOKEN, id).
    let mut script = String::from("set -eu\n");
    for block in &blocks {
        script.push_str(&block.replace(ADDR_LINE, &format!("ADDR={addr}\n")));
        script.push_str("echo; echo '@@ end of block'\n");
    }
    let out = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .current_dir(dir.path())
        .stderr(Stdio::inherit())
        .output()
        .expect("run bash");
    let _ = child.kill();
    let _ = child.wait();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "the examples failed:\n{stdout}");

    let outputs: Vec<&str> = stdout.split("@@ end of block\n").collect();
    assert_eq!(outputs.len(), blocks.len() + 1, "{stdout}");
    let failures: Vec<String> = blocks
        .iter()
        .zip(&outputs)
        .filter_map(|(block, output)| check(block, output).err().map(|e| format!("{block}\n{e}")))
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn ids_and_times_are_what_may_differ() {
    let doc = serde_json::json!({"id": "s0-1", "at": "2026-11-26T08:15:31.002003004Z",
        "d": "stored as QuestionnaireResponse/s0-3", "n": 1});
    let run = serde_json::json!({"id": "s1-7", "at": "2026-12-04T20:01:02.5Z",
        "d": "stored as QuestionnaireResponse/s1-9", "n": 1});
    assert!(same_shape(&doc, &run));
    let other = serde_json::json!({"id": "s1-7", "at": "2026-12-04T20:01:02.5Z",
        "d": "stored as QuestionnaireResponse/s1-9", "n": 2});
    assert!(!same_shape(&doc, &other));
    assert!(!same_shape(&serde_json::json!({"error": "x"}), &run));
}
