//! The hot path's pieces, each with byte throughput: request framing (httparse plus
//! our strict checks), body validation (simd-json on a reused tape, as the server
//! does, against serde_json into borrowed fields, as the axum baseline does), and
//! record encoding with its CRC32C.
//!
//! Run: `cargo bench --bench hot_path`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use epro_ingest::domain::validate::Validator;
use epro_ingest::http::parse::Limits;
use epro_ingest::http::request::{RequestParser, Step};
use epro_ingest::log::record::{Kind, Record};
use serde::Deserialize;

/// The ~280-byte report of the HTTP benchmark.
const BODY: &str = r#"{"patientId":"P-000123","projectId":"P001","siteId":"S01","submissionId":"3f2a9c1e-5b7d-4e2a-9f1c-8d6b4a2e7c31","reportData":{"q1":3,"q2":1,"q3":4,"painScore":6,"sleepHours":7.5,"nausea":false,"notes":"mild headache after lunch"},"timestamp":"2026-11-26T08:15:30Z"}"#;

const LIMITS: Limits = Limits {
    max_head: 16 << 10,
    max_headers: 64,
    max_body: 1 << 20,
};

fn framing(c: &mut Criterion) {
    let request = format!(
        "POST /epro/submit HTTP/1.1\r\nHost: ingest.example.org\r\nUser-Agent: epro-app/4.2 (Android 14)\r\nAccept: application/json\r\nAuthorization: Bearer device-token-0123456789\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{BODY}",
        BODY.len()
    );
    let chunked = {
        let (a, b) = BODY.split_at(100);
        format!(
            "POST /epro/submit HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer t\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{a}\r\n{:x}\r\n{b}\r\n0\r\n\r\n",
            a.len(),
            b.len()
        )
    };
    let mut group = c.benchmark_group("framing");
    for (name, bytes) in [("content-length", request), ("chunked", chunked)] {
        group.throughput(Throughput::Bytes(bytes.len() as u64));
        let mut body = Vec::with_capacity(4096);
        group.bench_function(name, |b| {
            b.iter(|| {
                let mut parser = RequestParser::new(LIMITS);
                match parser.next(black_box(bytes.as_bytes()), &mut body) {
                    Ok(Step::Request(r)) => black_box(r.consumed),
                    other => panic!("{other:?}"),
                }
            })
        });
    }
    group.finish();
}

/// What the axum baseline deserializes: borrowed raw fields, checked afterwards.
#[derive(Deserialize)]
struct Fields<'a> {
    #[serde(rename = "patientId", borrow)]
    patient_id: Option<&'a serde_json::value::RawValue>,
    #[serde(rename = "reportData", borrow)]
    report_data: Option<&'a serde_json::value::RawValue>,
    #[serde(borrow)]
    timestamp: Option<&'a serde_json::value::RawValue>,
    #[serde(rename = "projectId", borrow)]
    project_id: Option<&'a serde_json::value::RawValue>,
    #[serde(rename = "siteId", borrow)]
    site_id: Option<&'a serde_json::value::RawValue>,
}

fn validation(c: &mut Criterion) {
    let mut group = c.benchmark_group("validate");
    group.throughput(Throughput::Bytes(BODY.len() as u64));
    let mut validator = Validator::default();
    group.bench_function("simd-json tape (server)", |b| {
        b.iter(|| {
            validator
                .submit(black_box(BODY.as_bytes()), |s| s.patient_id.len())
                .unwrap()
        })
    });
    group.bench_function("serde_json borrowed (axum baseline)", |b| {
        b.iter(|| {
            let f: Fields<'_> = serde_json::from_slice(black_box(BODY.as_bytes())).unwrap();
            let patient: std::borrow::Cow<'_, str> =
                serde_json::from_str(f.patient_id.unwrap().get()).unwrap();
            black_box((
                patient.len(),
                f.report_data.is_some(),
                f.timestamp,
                f.project_id,
                f.site_id,
            ))
        })
    });
    group.bench_function("serde_json Value", |b| {
        b.iter(|| {
            let v: serde_json::Value = serde_json::from_slice(black_box(BODY.as_bytes())).unwrap();
            black_box(v["patientId"].as_str().map(str::len))
        })
    });
    group.finish();
}

fn encoding(c: &mut Criterion) {
    let record = Record {
        kind: Kind::Report,
        shard: 3,
        seq: 123_456,
        received_ns: 1_795_680_930_500_000_000,
        group_index: 7,
        principal: "site-app-001",
        key: None,
        body: BODY.as_bytes(),
        prev: Some(&[7; 32]),
    };
    let mut out = Vec::with_capacity(4096);
    let mut group = c.benchmark_group("record");
    group.throughput(Throughput::Bytes(
        Record::encoded_len(record.principal, None, record.body).expect("fits the format") as u64,
    ));
    group.bench_function("encode", |b| {
        b.iter(|| {
            out.clear();
            black_box(&record)
                .encode(&mut out)
                .expect("fits the format");
            black_box(out.len())
        })
    });
    // The hash chain's cost per record: the shard hashes each record it appends.
    group.bench_function("sha256", |b| {
        b.iter(|| black_box(epro_ingest::log::record::hash(black_box(&out))))
    });
    group.finish();
}

criterion_group!(benches, framing, validation, encoding);
criterion_main!(benches);
