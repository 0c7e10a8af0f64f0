//! The OpenAPI contract: generated from the route table and the validation rules,
//! served at `GET /openapi.json`, committed as `docs/openapi.json` (this test fails
//! when that copy is stale), and valid for a real OpenAPI validator
//! (`openapi-spec-validator`; `scripts/test.sh` installs it).

mod common;

use std::process::Command;

use common::{get, Server};
use epro_ingest::http::parse::Method;
use epro_ingest::route::{Access, TABLE};

const COMMITTED: &str = include_str!("../docs/openapi.json");

#[test]
fn the_committed_document_is_the_generated_one() {
    assert!(
        COMMITTED == epro_ingest::api::openapi::document(),
        "docs/openapi.json is stale: run `cargo run -- openapi > docs/openapi.json`"
    );
}

#[test]
fn every_route_is_documented_with_its_access() {
    let doc: serde_json::Value = serde_json::from_str(COMMITTED).unwrap();
    for (method, path, route) in TABLE {
        let op = &doc["paths"][*path][method.as_str().to_ascii_lowercase()];
        assert!(op.is_object(), "{method:?} {path} missing");
        let open = op["security"] == serde_json::json!([]);
        assert_eq!(open, route.access() == Access::Open, "{path}");
        let statuses = op["responses"].as_object().unwrap();
        let created = *route == epro_ingest::route::Route::FhirCreate;
        assert!(
            statuses.contains_key(if created { "201" } else { "200" }),
            "{path}"
        );
        if !open {
            for status in ["401", "403", "429"] {
                assert!(statuses.contains_key(status), "{path}: {status}");
            }
        }
    }
}

#[test]
fn the_server_serves_it_and_a_validator_accepts_it() {
    let server = Server::start("", &[]);
    let mut stream = server.connect();
    let r = get(&mut stream, "/openapi.json", "");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.body, COMMITTED.as_bytes());
    let script = "import sys, json\n\
        from openapi_spec_validator import validate\n\
        validate(json.load(sys.stdin))\n\
        print('valid')";
    let out = common::python(script, &r.body);
    assert!(
        out.status.success(),
        "the validator refused the document:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "valid");
}

/// schemathesis (PyPI) against a live server with a bearer token, every check
/// (`--checks all`), bounded (20 examples per operation, a fixed seed): no 5xx, no
/// response that breaks the schema, no status, header or media type the document does
/// not list, every schema-valid request accepted and every schema-invalid one
/// refused. The one rule a schema cannot hold, an idempotency key's history, is kept
/// out by `tests/schemathesis_hooks.py` (fresh keys per request).
#[test]
fn schemathesis_finds_no_5xx_no_schema_break_and_no_undocumented_status() {
    let server = Server::start("", &[]);
    let token = std::fs::read_to_string(server.data_dir().join("admin.token")).unwrap();
    let schema = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/openapi.json");
    let dir = common::temp_dir();
    let hooks = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/schemathesis_hooks.py");
    let out = Command::new("schemathesis")
        .current_dir(dir.path())
        .env("SCHEMATHESIS_HOOKS", hooks)
        .args(["run", schema, "--url"])
        .arg(format!("http://{}", server.addr))
        .arg("-H")
        .arg(format!("Authorization: Bearer {}", token.trim()))
        .args([
            "--checks",
            "all",
            "--max-examples",
            "20",
            "--seed",
            "20261127",
            "--workers",
            "1",
            "--generation-database",
            "none",
            "--no-color",
        ])
        .output()
        .expect("schemathesis (scripts/test.sh installs it from PyPI)");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "schemathesis found problems:\n{said}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // It really tested every operation, HEAD twins of the GETs included.
    let gets = TABLE.iter().filter(|(m, _, _)| *m == Method::Get).count();
    let operations = TABLE.len() + gets;
    assert!(
        said.contains(&format!("Tested: {operations}")),
        "not every operation was tested:\n{said}"
    );
}
