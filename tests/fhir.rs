//! FHIR R4 QuestionnaireResponse intake over real sockets: the specification's examples
//! (written here by hand: f201 "Lifelines" and the nested "cancer questionnaire" one,
//! with this server's project and site tags added) are stored byte for byte, read back
//! with the server's id (their own `id` ignored, as R4 has it) and meta, and counted by
//! the read APIs; every rule is refused with an OperationOutcome naming
//! the element's FHIRPath; a create with an `Idempotency-Key` is stored once, across
//! shards and restarts.

mod common;

use std::io::Write;
use std::net::TcpStream;

use common::{export, get, read_response, Response, Server, ADMIN_TOKEN as ADMIN};

const DEVICE: &str = "device-p1-token-0123456789";
const STAFF_P2: &str = "staff-p2-token-0123456789";

fn config() -> String {
    format!(
        r#"{}
[[principals]]
id = "device-p1"
token = "{DEVICE}"
role = "device"
projects = ["P001"]

[[principals]]
id = "staff-p2"
token = "{STAFF_P2}"
role = "staff"
projects = ["P002"]
"#,
        common::DEVICE_ADMIN_CONFIG
    )
}

/// The R4 example `questionnaireresponse-example-f201` (Lifelines), tagged P001/S01.
const F201: &str = r#"{
  "resourceType": "QuestionnaireResponse",
  "id": "f201",
  "meta": {"tag": [
    {"system": "urn:epro-ingest:project", "code": "P001"},
    {"system": "urn:epro-ingest:site", "code": "S01"}
  ]},
  "status": "completed",
  "subject": {"reference": "Patient/f201", "display": "Roel"},
  "authored": "2013-06-18T00:00:00+01:00",
  "author": {"reference": "Practitioner/f201"},
  "source": {"reference": "Practitioner/f201"},
  "item": [
    {"linkId": "1", "text": "Do you have allergies?", "answer": [{"valueString": "I am allergic to house dust"}]},
    {"linkId": "2", "text": "General questions", "item": [
      {"linkId": "2.1", "text": "What is your gender?", "answer": [{"valueString": "Male"}]},
      {"linkId": "2.2", "text": "What is your date of birth?", "answer": [{"valueDate": "1960-03-13"}]},
      {"linkId": "2.3", "text": "What is your country of birth?", "answer": [{"valueString": "The Netherlands"}]},
      {"linkId": "2.4", "text": "What is your marital status?", "answer": [{"valueString": "married"}]}
    ]},
    {"linkId": "3", "text": "Intoxications", "item": [
      {"linkId": "3.1", "text": "Do you smoke?", "answer": [{"valueString": "No"}]},
      {"linkId": "3.2", "text": "Do you drink alchohol?", "answer": [{"valueString": "No, but I used to drink"}]}
    ]}
  ]
}"#;

/// After the R4 example `questionnaireresponse-example` (items under answers), with a
/// Patient subject and the project tag.
const NESTED: &str = r#"{"resourceType":"QuestionnaireResponse","id":"3141",
"meta":{"tag":[{"system":"urn:epro-ingest:project","code":"P001"},{"system":"urn:epro-ingest:site","code":"S02"}]},
"identifier":{"system":"http://example.org/fhir/NamingSystem/questionnaire-ids","value":"Q12349876"},
"questionnaire":"http://hl7.org/fhir/Questionnaire/3141",
"status":"completed","subject":{"reference":"Patient/A34442332"},"authored":"2013-02-19T14:15:00-05:00",
"item":[{"linkId":"1","item":[{"linkId":"1.1","answer":[{"valueCoding":{"system":"http://cancer.questionnaire.org/system/code/yesno","code":"1","display":"Yes"},
"item":[{"linkId":"1.1.1","answer":[{"valueCoding":{"system":"http://cancer.questionnaire.org/system/code/yesno","code":"1"}}]}]}]}]}]}"#;

fn post_fhir(stream: &mut TcpStream, token: &str, body: &str, extra: &str) -> Response {
    let request = format!(
        "POST /fhir/QuestionnaireResponse HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/fhir+json\r\n{extra}Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).unwrap();
    read_response(stream).expect("a response")
}

/// The issues of an OperationOutcome: (code, expression).
fn issues(r: &Response) -> Vec<(String, String)> {
    assert_eq!(r.header("content-type"), Some("application/fhir+json"));
    let outcome = r.json();
    assert_eq!(outcome["resourceType"], "OperationOutcome");
    outcome["issue"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            assert_eq!(i["severity"], "error");
            let code = i["code"].as_str().unwrap().to_string();
            (code, i["expression"][0].as_str().unwrap_or("").to_string())
        })
        .collect()
}

/// The id a 201's `Location` names.
fn location_id(r: &Response) -> String {
    let location = r.header("location").expect("a Location");
    location
        .strip_prefix("/fhir/QuestionnaireResponse/")
        .unwrap()
        .to_string()
}

/// `served` is `sent` as FHIR serves it: the server's `id` (the URL's) and
/// `meta.versionId` 1 and `meta.lastUpdated`, everything else as sent.
fn assert_served(served: &[u8], sent: &str, id: &str) {
    let mut served: serde_json::Value = serde_json::from_slice(served).unwrap();
    let mut sent: serde_json::Value = serde_json::from_str(sent).unwrap();
    assert_eq!(served["id"], id);
    assert_eq!(served["meta"]["versionId"], "1");
    let updated = served["meta"]["lastUpdated"].as_str().unwrap().to_string();
    assert!(
        epro_ingest::domain::fhir::primitive::is_instant(&updated),
        "{updated}"
    );
    for v in [&mut served, &mut sent] {
        let object = v.as_object_mut().unwrap();
        object.remove("id");
        let meta = object.entry("meta").or_insert(serde_json::json!({}));
        let meta = meta.as_object_mut().unwrap();
        meta.remove("versionId");
        meta.remove("lastUpdated");
        if meta.is_empty() {
            object.remove("meta");
        }
    }
    assert_eq!(served, sent);
}

#[test]
fn r4_examples_are_stored_byte_for_byte_read_back_and_counted() {
    let server = Server::start(&config(), &[]);
    let mut s = server.connect();
    let mut ids = Vec::new();
    for body in [F201, NESTED] {
        let r = post_fhir(&mut s, DEVICE, body, "");
        assert_eq!(r.status, 201, "{}", r.text());
        let location = r.header("location").unwrap().to_string();
        let id = location
            .strip_prefix("/fhir/QuestionnaireResponse/")
            .unwrap()
            .to_string();
        assert_eq!(r.header("etag"), Some("W/\"1\""));
        assert_eq!(r.json()["issue"][0]["severity"], "information");
        assert!(r.text().contains(&format!("QuestionnaireResponse/{id}")));
        let back = get(&mut s, &location, ADMIN);
        assert_eq!(back.status, 200, "{}", back.text());
        assert_eq!(back.header("content-type"), Some("application/fhir+json"));
        assert_served(&back.body, body, &id);
        assert_eq!(back.header("etag"), Some("W/\"1\""));
        // The id percent-decoded, as any path parameter.
        let escaped = get(&mut s, &location.replace('-', "%2D"), ADMIN);
        assert_eq!(escaped.body, back.body, "{id}");
        ids.push(id);
    }
    // Counted like reports: patient from subject, project and site from meta.tag.
    let summary = get(&mut s, "/api/v1/projects/P001/reports/summary", ADMIN).json();
    assert_eq!(summary["reports"], 2);
    assert_eq!(summary["sites"]["S01"]["reports"], 1);
    let subjects = get(&mut s, "/api/v1/projects/P001/sites/S01/subjects", ADMIN).json();
    assert_eq!(subjects["subjects"][0]["patientId"], "f201");
    // Another project's staff may not read it, and cannot tell it from no resource;
    // a plain report is no QuestionnaireResponse, with the same answer: neither the
    // record's existence nor its kind leaks.
    let none = get(&mut s, "/fhir/QuestionnaireResponse/s0-999999", STAFF_P2);
    let malformed = get(&mut s, "/fhir/QuestionnaireResponse/nope", STAFF_P2);
    let r = get(
        &mut s,
        &format!("/fhir/QuestionnaireResponse/{}", ids[0]),
        STAFF_P2,
    );
    assert_eq!((r.status, none.status, malformed.status), (404, 404, 404));
    assert_eq!(issues(&r)[0].0, "not-found");
    assert_eq!(r.body, none.body);
    assert_eq!(r.body, malformed.body);
    let plain = common::post(
        &mut s,
        "/epro/submit",
        common::DEVICE_TOKEN,
        &common::project_report("P-x"),
    );
    let plain_id = plain.json()["id"].as_str().unwrap().to_string();
    let r = get(
        &mut s,
        &format!("/fhir/QuestionnaireResponse/{plain_id}"),
        ADMIN,
    );
    assert_eq!(r.status, 404);
    assert_eq!(r.body, none.body);
    // The records API reads it too, as JSON, as it was received.
    let r = get(&mut s, &format!("/api/v1/records/{}", ids[1]), ADMIN);
    assert_eq!((r.status, r.body.as_slice()), (200, NESTED.as_bytes()));
}

#[test]
fn prefer_return_minimal_and_representation() {
    let server = Server::start(&config(), &[]);
    let mut s = server.connect();
    let r = post_fhir(&mut s, DEVICE, F201, "Prefer: return=minimal\r\n");
    assert_eq!(r.status, 201);
    assert!(r.body.is_empty());
    assert!(r
        .header("location")
        .unwrap()
        .starts_with("/fhir/QuestionnaireResponse/s"));
    let r = post_fhir(&mut s, DEVICE, F201, "Prefer: return=representation\r\n");
    assert_eq!(r.status, 201);
    assert_served(&r.body, F201, &location_id(&r));
    // RFC 7240's spellings: any case, spaces around `=`, a quoted value, among others.
    let r = post_fhir(&mut s, DEVICE, F201, "Prefer: RETURN=MINIMAL\r\n");
    assert_eq!((r.status, r.body.len()), (201, 0));
    let r = post_fhir(
        &mut s,
        DEVICE,
        F201,
        "Prefer: respond-async, return = \"representation\"\r\n",
    );
    assert_eq!(r.status, 201);
    assert_served(&r.body, F201, &location_id(&r));
    // No return preference: the OperationOutcome naming the id.
    let r = post_fhir(&mut s, DEVICE, F201, "Prefer: handling=strict\r\n");
    assert_eq!(r.status, 201);
    assert_eq!(r.json()["resourceType"], "OperationOutcome");
}

/// Creates over a fresh connection (so retries land on either shard).
fn create_keyed(server: &Server, body: &str, key: &str, prefer: &str) -> Response {
    let extra = format!("Idempotency-Key: {key}\r\nPrefer: return={prefer}\r\n");
    post_fhir(&mut server.connect(), DEVICE, body, &extra)
}

#[test]
fn a_create_retried_with_an_idempotency_key_is_stored_once_across_shards_and_kill_9() {
    let server = Server::start(&config(), &[]);
    // Sixteen keys: with two shards, some are owned by the shard that receives the
    // create and some by the other (the odds of all on one are 1 in 32768).
    let keys: Vec<String> = (0..16).map(|i| format!("fhir-key-{i}")).collect();
    let mut firsts = Vec::new();
    for key in &keys {
        let first = create_keyed(&server, F201, key, "minimal");
        assert_eq!(first.status, 201, "{}", first.text());
        assert_eq!(first.header("idempotent-replayed"), None);
        firsts.push(first.header("location").unwrap().to_string());
    }
    for (key, location) in keys.iter().zip(&firsts) {
        // The first answer again, with the body this request prefers.
        let again = create_keyed(&server, F201, key, "representation");
        assert_eq!(again.status, 201, "{}", again.text());
        assert_eq!(again.header("idempotent-replayed"), Some("true"));
        assert_eq!(again.header("location"), Some(location.as_str()));
        assert_served(&again.body, F201, &location_id(&again));
        let other = create_keyed(&server, NESTED, key, "minimal");
        assert_eq!(other.status, 422, "{}", other.text());
        let diagnostics = other.json()["issue"][0]["diagnostics"].clone();
        assert_eq!(diagnostics, "Idempotency-Key reused with a different body");
    }
    let bad = create_keyed(&server, F201, "two words", "minimal");
    assert_eq!(bad.status, 400);
    assert_eq!(bad.json()["resourceType"], "OperationOutcome");
    // The creates arrived over both shards' connections and were decided by both
    // owners; one record per key.
    assert_eq!(export(&server.data_dir()).len(), keys.len());

    // The log alone is the keys' truth: after kill -9, the same answers.
    let dir = server.kill();
    let server = Server::start_in(dir, &config(), &[]);
    for (key, location) in keys.iter().zip(&firsts) {
        let again = create_keyed(&server, F201, key, "minimal");
        assert_eq!(again.status, 201, "{}", again.text());
        assert_eq!(again.header("idempotent-replayed"), Some("true"));
        assert_eq!(again.header("location"), Some(location.as_str()));
    }
    let stored = export(&server.data_dir());
    assert_eq!(stored.len(), keys.len());
    assert!(stored.iter().all(|r| r["kind"] == "fhir"), "{stored:?}");
}

/// A body, the status it gets, and the (code, FHIRPath) of each issue named.
type Case = (String, u16, Vec<(&'static str, &'static str)>);

#[test]
fn every_rule_is_refused_with_the_elements_fhirpath() {
    let server = Server::start(&config(), &[]);
    let mut s = server.connect();
    let f201: serde_json::Value = serde_json::from_str(F201).unwrap();
    let with = |change: &dyn Fn(&mut serde_json::Value)| {
        let mut v = f201.clone();
        change(&mut v);
        v.to_string()
    };
    let cases: Vec<Case> = vec![
        (
            "{not json".into(),
            400,
            vec![("structure", "QuestionnaireResponse")],
        ),
        (
            "[1]".into(),
            400,
            vec![("structure", "QuestionnaireResponse")],
        ),
        (
            with(&|v| v["resourceType"] = "Observation".into()),
            400,
            vec![("invalid", "QuestionnaireResponse.resourceType")],
        ),
        (
            with(&|v| {
                v.as_object_mut().unwrap().remove("status");
            }),
            400,
            vec![("required", "QuestionnaireResponse.status")],
        ),
        (
            with(&|v| v["status"] = "done".into()),
            400,
            vec![("value", "QuestionnaireResponse.status")],
        ),
        (
            with(&|v| v["subject"]["reference"] = "Group/1".into()),
            422,
            vec![("value", "QuestionnaireResponse.subject.reference")],
        ),
        (
            with(&|v| v["authored"] = "yesterday".into()),
            400,
            vec![("value", "QuestionnaireResponse.authored")],
        ),
        (
            with(&|v| v["questionnaire"] = "not a url".into()),
            400,
            vec![("value", "QuestionnaireResponse.questionnaire")],
        ),
        (
            with(&|v| {
                v["item"][1]["item"][0]
                    .as_object_mut()
                    .unwrap()
                    .remove("linkId");
            }),
            400,
            vec![("required", "QuestionnaireResponse.item[1].item[0].linkId")],
        ),
        (
            with(&|v| v["item"][0]["answer"][0]["item"] = serde_json::json!([{"linkId": ""}])),
            400,
            vec![(
                "value",
                "QuestionnaireResponse.item[0].answer[0].item[0].linkId",
            )],
        ),
        // A property given twice, at the top or deeper: serde_json would keep the last,
        // so a first `meta` naming another project, or a first `status` that breaks
        // the rules, would be stored unchecked behind a second one.
        (
            format!(
                r#"{{"meta":{{"tag":[{{"system":"urn:epro-ingest:project","code":"P999"}}]}},{}"#,
                &with(&|_| {})[1..]
            ),
            400,
            vec![("structure", "QuestionnaireResponse")],
        ),
        (
            format!(r#"{{"status":"bogus",{}"#, &with(&|_| {})[1..]),
            400,
            vec![("structure", "QuestionnaireResponse")],
        ),
        (
            with(&|_| {}).replacen(r#""linkId":"#, r#""linkId":"x","linkId":"#, 1),
            400,
            vec![("structure", "QuestionnaireResponse")],
        ),
        // A tag code is an identifier like a submit's projectId: no control character
        // (an R4 string rule too, so 400); one of 129 bytes breaks only the profile.
        (
            with(&|v| v["meta"]["tag"][1]["code"] = "S\u{0}1".into()),
            400,
            vec![("value", "QuestionnaireResponse.meta.tag[1].code")],
        ),
        (
            with(&|v| v["meta"]["tag"][1]["code"] = "S".repeat(129).into()),
            422,
            vec![("value", "QuestionnaireResponse.meta.tag[1].code")],
        ),
        // Several at once: all named.
        (
            with(&|v| {
                v["status"] = "done".into();
                v["item"][2]["linkId"] = "".into();
            }),
            400,
            vec![
                ("value", "QuestionnaireResponse.status"),
                ("value", "QuestionnaireResponse.item[2].linkId"),
            ],
        ),
    ];
    for (body, status, want) in cases {
        let r = post_fhir(&mut s, DEVICE, &body, "");
        assert_eq!(r.status, status, "{body}: {}", r.text());
        if body.contains(r#""status":"bogus","#) {
            let diagnostics = r.json()["issue"][0]["diagnostics"].clone();
            assert!(
                diagnostics
                    .as_str()
                    .is_some_and(|d| d.contains(r#"the property "status" is given more than once"#)),
                "{diagnostics}"
            );
        }
        let got = issues(&r);
        let got: Vec<(&str, &str)> = got.iter().map(|(c, e)| (c.as_str(), e.as_str())).collect();
        assert_eq!(got, want, "{body}");
    }
    // A project outside the principal's scope: 403, nothing stored.
    let other = F201.replace("\"code\": \"P001\"", "\"code\": \"P999\"");
    let r = post_fhir(&mut s, DEVICE, &other, "");
    assert_eq!(r.status, 403);
    let summary = get(&mut s, "/api/v1/projects/P999/reports/summary", ADMIN).json();
    assert_eq!(summary["reports"], 0);
    let p1 = get(&mut s, "/api/v1/projects/P001/reports/summary", ADMIN).json();
    assert_eq!(p1["reports"], 0);
}

#[test]
fn the_capability_statement_says_what_is_supported() {
    let server = Server::start(&config(), &[]);
    let mut s = server.connect();
    let r = get(&mut s, "/fhir/metadata", "");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/fhir+json"));
    let statement = r.json();
    assert_eq!(statement["resourceType"], "CapabilityStatement");
    assert_eq!(statement["fhirVersion"], "4.0.1");
    let resource = &statement["rest"][0]["resource"][0];
    assert_eq!(resource["type"], "QuestionnaireResponse");
    assert_eq!(
        resource["supportedProfile"],
        serde_json::json!([epro_ingest::domain::fhir::PROFILE])
    );
    assert_eq!(
        resource["interaction"],
        serde_json::json!([{"code": "create"}, {"code": "read"}])
    );
}

#[test]
fn refusals_on_fhir_paths_are_operation_outcomes_whatever_refuses() {
    let server = Server::start(&config(), &[]);
    let mut s = server.connect();
    // No token, and an unknown one: 401 "login" with the Bearer challenge.
    let r = post_fhir(&mut s, "", F201, "");
    assert_eq!(r.status, 401);
    assert_eq!(issues(&r)[0].0, "login");
    assert_eq!(
        r.header("www-authenticate"),
        Some("Bearer realm=\"epro-ingest\"")
    );
    let r = post_fhir(&mut s, "no-such-token-0123456789", F201, "");
    assert_eq!(r.status, 401);
    assert!(r
        .header("www-authenticate")
        .unwrap()
        .contains("invalid_token"));
    // A resource type this server does not serve, and a method it does not take.
    let r = get(&mut s, "/fhir/Patient/f201", ADMIN);
    assert_eq!(r.status, 404);
    assert_eq!(issues(&r)[0].0, "not-found");
    s.write_all(b"DELETE /fhir/metadata HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let r = read_response(&mut s).unwrap();
    assert_eq!(r.status, 405);
    assert_eq!(issues(&r)[0].0, "not-supported");
    assert!(r.header("allow").unwrap().contains("GET"));
    // Another media type, or JSON in another charset: 415 "not-supported".
    for content_type in [
        "application/fhir+xml",
        "application/fhir+json; charset=utf-16",
    ] {
        let request = format!(
            "POST /fhir/QuestionnaireResponse HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {DEVICE}\r\n\
             Content-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{F201}",
            F201.len()
        );
        s.write_all(request.as_bytes()).unwrap();
        let r = read_response(&mut s).unwrap();
        assert_eq!(r.status, 415, "{content_type}");
        assert_eq!(issues(&r)[0].0, "not-supported");
    }
    // A role that may not create: 403 "forbidden"; the v1 API keeps its JSON errors.
    let r = post_fhir(&mut s, STAFF_P2, F201, "");
    assert_eq!(r.status, 403);
    assert_eq!(issues(&r)[0].0, "forbidden");
    let r = get(&mut s, "/api/v1/projects/P001/reports/summary", "");
    assert_eq!(r.status, 401);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert!(r.json()["error"].is_string());
}

/// Sends `request` (a head and body) and reads the response.
fn exchange(s: &mut TcpStream, request: &str) -> Response {
    s.write_all(request.as_bytes()).unwrap();
    read_response(s).unwrap()
}

#[test]
fn formats_the_server_cannot_write_are_406_on_every_fhir_route() {
    let server = Server::start(&config(), &[]);
    let mut s = server.connect();
    let created = post_fhir(&mut s, DEVICE, F201, "");
    let location = created.header("location").unwrap().to_string();
    let read = |s: &mut TcpStream, target: &str, accept: &str| {
        exchange(
            s,
            &format!(
                "GET {target} HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {ADMIN}\r\n{accept}\r\n"
            ),
        )
    };
    for target in ["/fhir/metadata", location.as_str()] {
        for (query, accept, status) in [
            ("", "Accept: application/fhir+xml\r\n", 406),
            ("", "Accept: application/xml, text/html\r\n", 406),
            ("", "Accept: application/fhir+json;q=0\r\n", 406),
            ("?_format=xml", "", 406),
            ("?_format=application/fhir%2Bxml", "", 406),
            (
                "?_format=text/turtle",
                "Accept: application/fhir+json\r\n",
                406,
            ),
            ("", "", 200),
            ("", "Accept: */*\r\n", 200),
            (
                "",
                "Accept: application/fhir+xml;q=0.9, application/fhir+json\r\n",
                200,
            ),
            ("", "Accept: application/json\r\n", 200),
            ("?_format=json", "Accept: application/fhir+xml\r\n", 200),
            ("?_format=application/fhir+json", "", 200),
            ("?_format=application%2Ffhir%2Bjson", "", 200),
        ] {
            let r = read(&mut s, &format!("{target}{query}"), accept);
            assert_eq!(r.status, status, "{target}{query} {accept}: {}", r.text());
            if status == 406 {
                assert_eq!(issues(&r)[0].0, "not-supported");
            }
        }
    }
    // A create that asks for XML back is refused before anything is stored.
    let r = post_fhir(&mut s, DEVICE, F201, "Accept: application/fhir+xml\r\n");
    assert_eq!(r.status, 406, "{}", r.text());
    assert_eq!(export(&server.data_dir()).len(), 1);
}

#[test]
fn refusals_below_the_routes_are_operation_outcomes_on_fhir_paths_once_the_head_is_in() {
    let server = Server::start(&config(), &[]);
    let cases = [
        // An expectation this server cannot meet: 417.
        ("GET /fhir/metadata HTTP/1.1\r\nHost: t\r\nExpect: bogus\r\n\r\n", 417),
        // A transfer coding it does not know: 501.
        (
            "POST /fhir/QuestionnaireResponse HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
            501,
        ),
        // A version it does not speak: 505 (httparse reads no such head; its request
        // line is read for the path).
        ("GET /fhir/metadata HTTP/2.0\r\nHost: t\r\n\r\n", 505),
        // Ambiguous framing: 400.
        (
            "POST /fhir/QuestionnaireResponse?x=1 HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            400,
        ),
    ];
    for (request, status) in cases {
        let r = exchange(&mut server.connect(), request);
        assert_eq!(r.status, status, "{request}");
        assert_eq!(r.header("connection"), Some("close"));
        assert!(r.header("x-request-id").is_some());
        let issues = issues(&r);
        assert_eq!(issues.len(), 1, "{request}");
        // The v1 API keeps its {"error"} bodies for the same refusals.
        let v1 = request
            .replace("/fhir/metadata", "/healthz")
            .replace("/fhir/QuestionnaireResponse", "/epro/submit");
        let r = exchange(&mut server.connect(), &v1);
        assert_eq!(r.status, status, "{v1}");
        assert!(r.json()["error"].is_string(), "{v1}");
    }
}
