//! The fleet views answer exactly as the read APIs do, on data that holds every kind
//! the APIs count: plain reports (with and without project and site), FHIR
//! QuestionnaireResponses (one patient has nothing else), tags, and replays of keyed
//! reports, FHIR resources and tags, which store nothing new.

mod common;
#[path = "common/pg.rs"]
#[allow(dead_code)]
mod pg;
#[path = "common/shipper.rs"]
#[allow(dead_code)]
mod shipper;

use std::collections::BTreeMap;
use std::io::Write;
use std::net::TcpStream;

use common::{
    get, post, read_response, Response, Server, ADMIN_TOKEN as ADMIN,
    DEVICE_ADMIN_CONFIG as CONFIG, DEVICE_TOKEN as DEVICE,
};
use pg::Postgres;
use shipper::ship_once;

fn fhir(stream: &mut TcpStream, patient: &str, project: &str, site: &str, key: &str) -> Response {
    let body = format!(
        r#"{{"resourceType":"QuestionnaireResponse","meta":{{"tag":[{{"system":"urn:epro-ingest:project","code":"{project}"}},{{"system":"urn:epro-ingest:site","code":"{site}"}}]}},"status":"completed","subject":{{"reference":"Patient/{patient}"}},"authored":"2026-11-26T08:15:30Z","item":[{{"linkId":"1","answer":[{{"valueInteger":3}}]}}]}}"#
    );
    let key = match key {
        "" => String::new(),
        key => format!("Idempotency-Key: {key}\r\n"),
    };
    let request = format!(
        "POST /fhir/QuestionnaireResponse HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {DEVICE}\r\n\
         Content-Type: application/fhir+json\r\n{key}Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).unwrap();
    read_response(stream).expect("a response")
}

/// Stores the mix, every write twice where a replay is possible.
fn fill(server: &Server) {
    for i in 0..24 {
        let mut s = server.connect();
        let project = ["\"projectId\":\"P001\",", "\"projectId\":\"P002\",", ""][i % 3];
        let site = ["\"siteId\":\"S01\",", "\"siteId\":\"S02\",", "", ""][i % 4];
        let key = match i % 5 {
            0 => format!(",\"submissionId\":\"sub-{i}\""),
            _ => String::new(),
        };
        let body = format!(
            r#"{{"patientId":"pat-{}",{project}{site}"reportData":{{"q":{i}}}{key}}}"#,
            i % 7
        );
        let times = if key.is_empty() { 1 } else { 2 };
        for _ in 0..times {
            let r = post(&mut s, "/epro/submit", DEVICE, &body);
            assert_eq!(r.status, 200, "{}", r.text());
        }
    }
    for (i, (patient, project, site)) in [
        ("pat-1", "P001", "S01"),
        ("fhir-only", "P001", "S01"),
        ("fhir-only", "P001", "S03"),
        ("pat-2", "P002", "S02"),
        ("fhir-2", "P002", "S01"),
    ]
    .into_iter()
    .enumerate()
    {
        let mut s = server.connect();
        for _ in 0..2 {
            let r = fhir(&mut s, patient, project, site, &format!("fhir-key-{i}"));
            assert!(matches!(r.status, 200 | 201), "{}", r.text());
        }
        let r = fhir(&mut s, patient, project, site, "");
        assert_eq!(r.status, 201, "{}", r.text());
    }
    for (patient, project, tag) in [
        ("pat-1", "P001", "high-risk"),
        ("pat-1", "P001", "high-risk"),
        ("pat-1", "P001", "follow-up"),
        ("fhir-only", "P001", "high-risk"),
        ("pat-3", "P002", "follow-up"),
    ] {
        let mut s = server.connect();
        let tag =
            format!(r#"{{"projectId":"{project}","patientId":"{patient}","tagName":"{tag}"}}"#);
        assert_eq!(post(&mut s, "/api/v1/tags/add", ADMIN, &tag).status, 200);
    }
}

fn rfc3339(ns: i64) -> String {
    String::from_utf8(epro_ingest::base::clock::format_rfc3339(ns as u64).to_vec()).unwrap()
}

type Subjects = BTreeMap<String, (i64, String, Vec<String>)>;

#[test]
fn every_view_answers_as_the_read_apis_with_fhir_tags_and_replays() {
    let pg = Postgres::start();
    let server = Server::start(CONFIG, &[]);
    fill(&server);
    ship_once(&server.data_dir(), &pg, "n1");
    let mut client = pg.client();
    let mut api = server.connect();
    let projects: Vec<String> = client
        .query("SELECT project_id FROM epro_summary ORDER BY 1", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(projects, ["-", "P001", "P002"]);
    let mut subjects_compared = 0;
    for project in &projects {
        let summary = get(
            &mut api,
            &format!("/api/v1/projects/{project}/reports/summary"),
            ADMIN,
        );
        assert_eq!(summary.status, 200, "{}", summary.text());
        let summary = summary.json();
        let row = client
            .query_one(
                "SELECT reports, subjects, last_received_ns FROM epro_summary WHERE project_id = $1",
                &[project],
            )
            .unwrap();
        assert_eq!(
            (
                row.get::<_, i64>(0),
                row.get::<_, i64>(1),
                rfc3339(row.get(2))
            ),
            (
                summary["reports"].as_i64().unwrap(),
                summary["subjects"].as_i64().unwrap(),
                summary["lastReceivedAt"].as_str().unwrap().to_string()
            ),
            "summary of {project}"
        );
        let from_api: BTreeMap<String, (i64, i64)> = summary["sites"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(site, s)| {
                let n = |k: &str| s[k].as_i64().unwrap();
                (site.clone(), (n("reports"), n("subjects")))
            })
            .collect();
        let from_view: BTreeMap<String, (i64, i64)> = client
            .query(
                "SELECT site_id, reports, subjects FROM epro_site_summary WHERE project_id = $1",
                &[project],
            )
            .unwrap()
            .iter()
            .map(|r| (r.get(0), (r.get(1), r.get(2))))
            .collect();
        assert_eq!(from_view, from_api, "sites of {project}");
        for site in from_api.keys() {
            let listed = get(
                &mut api,
                &format!("/api/v1/projects/{project}/sites/{site}/subjects"),
                ADMIN,
            )
            .json();
            let from_api: Subjects = listed["subjects"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| {
                    let tags = s["tags"].as_array().unwrap();
                    let tags = tags
                        .iter()
                        .map(|t| t.as_str().unwrap().to_string())
                        .collect();
                    let last = s["lastReceivedAt"].as_str().unwrap().to_string();
                    let patient = s["patientId"].as_str().unwrap().to_string();
                    (patient, (s["reports"].as_i64().unwrap(), last, tags))
                })
                .collect();
            let from_view: Subjects = client
                .query(
                    "SELECT patient_id, reports, last_received_ns, tags FROM epro_subjects
                     WHERE project_id = $1 AND site_id = $2",
                    &[project, site],
                )
                .unwrap()
                .iter()
                .map(|r| {
                    let mut tags: Vec<String> = r.get(3);
                    tags.sort();
                    (r.get(0), (r.get(1), rfc3339(r.get(2)), tags))
                })
                .collect();
            let from_api = from_api
                .into_iter()
                .map(|(p, (n, last, mut tags))| {
                    tags.sort();
                    (p, (n, last, tags))
                })
                .collect::<Subjects>();
            assert_eq!(from_view, from_api, "subjects of {project}/{site}");
            subjects_compared += from_view.len();
        }
    }
    // The patient with only FHIR records, at both its sites, with its tag.
    let fhir_only = client
        .query(
            "SELECT site_id, reports, tags FROM epro_subjects WHERE patient_id = 'fhir-only'
             ORDER BY 1",
            &[],
        )
        .unwrap();
    let rows: Vec<(String, i64, Vec<String>)> = fhir_only
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let tagged = vec!["high-risk".to_string()];
    assert_eq!(
        rows,
        [("S01".into(), 2, tagged.clone()), ("S03".into(), 2, tagged)]
    );
    assert!(subjects_compared >= 10, "{subjects_compared}");
}
