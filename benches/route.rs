//! Route lookup: our compile-time tree against matchit on the same route set (the API's
//! eight routes plus 125 realistic clinical-API routes), over the same request paths.
//! Both return the route for a (method, path) pair with its parameters.
//!
//! Run: `cargo bench --bench route`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use epro_ingest::http::parse::Method::{self, *};
use epro_ingest::route::tree::{build, capacity, Lookup, Tree};

const ROUTES: &[(Method, &str)] = &[
    (Get, "/healthz"),
    (Get, "/livez"),
    (Get, "/readyz"),
    (Post, "/epro/submit"),
    (Post, "/api/v1/tags/add"),
    (Get, "/api/v1/projects/{projectId}/sites/{siteId}/subjects"),
    (Get, "/api/v1/projects/{projectId}/reports/summary"),
    (Get, "/api/v1/users/{userId}/permissions"),
    (Get, "/api/v1/studies"),
    (Post, "/api/v1/studies"),
    (Get, "/api/v1/studies/{id}"),
    (Put, "/api/v1/studies/{id}"),
    (Delete, "/api/v1/studies/{id}"),
    (Get, "/api/v1/sites"),
    (Post, "/api/v1/sites"),
    (Get, "/api/v1/sites/{id}"),
    (Put, "/api/v1/sites/{id}"),
    (Delete, "/api/v1/sites/{id}"),
    (Get, "/api/v1/subjects"),
    (Post, "/api/v1/subjects"),
    (Get, "/api/v1/subjects/{id}"),
    (Put, "/api/v1/subjects/{id}"),
    (Delete, "/api/v1/subjects/{id}"),
    (Get, "/api/v1/visits"),
    (Post, "/api/v1/visits"),
    (Get, "/api/v1/visits/{id}"),
    (Put, "/api/v1/visits/{id}"),
    (Delete, "/api/v1/visits/{id}"),
    (Get, "/api/v1/forms"),
    (Post, "/api/v1/forms"),
    (Get, "/api/v1/forms/{id}"),
    (Put, "/api/v1/forms/{id}"),
    (Delete, "/api/v1/forms/{id}"),
    (Get, "/api/v1/queries"),
    (Post, "/api/v1/queries"),
    (Get, "/api/v1/queries/{id}"),
    (Put, "/api/v1/queries/{id}"),
    (Delete, "/api/v1/queries/{id}"),
    (Get, "/api/v1/adverse-events"),
    (Post, "/api/v1/adverse-events"),
    (Get, "/api/v1/adverse-events/{id}"),
    (Put, "/api/v1/adverse-events/{id}"),
    (Delete, "/api/v1/adverse-events/{id}"),
    (Get, "/api/v1/medications"),
    (Post, "/api/v1/medications"),
    (Get, "/api/v1/medications/{id}"),
    (Put, "/api/v1/medications/{id}"),
    (Delete, "/api/v1/medications/{id}"),
    (Get, "/api/v1/consents"),
    (Post, "/api/v1/consents"),
    (Get, "/api/v1/consents/{id}"),
    (Put, "/api/v1/consents/{id}"),
    (Delete, "/api/v1/consents/{id}"),
    (Get, "/api/v1/randomizations"),
    (Post, "/api/v1/randomizations"),
    (Get, "/api/v1/randomizations/{id}"),
    (Put, "/api/v1/randomizations/{id}"),
    (Delete, "/api/v1/randomizations/{id}"),
    (Get, "/api/v1/devices"),
    (Post, "/api/v1/devices"),
    (Get, "/api/v1/devices/{id}"),
    (Put, "/api/v1/devices/{id}"),
    (Delete, "/api/v1/devices/{id}"),
    (Get, "/api/v1/diaries"),
    (Post, "/api/v1/diaries"),
    (Get, "/api/v1/diaries/{id}"),
    (Put, "/api/v1/diaries/{id}"),
    (Delete, "/api/v1/diaries/{id}"),
    (Get, "/api/v1/questionnaires"),
    (Post, "/api/v1/questionnaires"),
    (Get, "/api/v1/questionnaires/{id}"),
    (Put, "/api/v1/questionnaires/{id}"),
    (Delete, "/api/v1/questionnaires/{id}"),
    (Get, "/api/v1/lab-results"),
    (Post, "/api/v1/lab-results"),
    (Get, "/api/v1/lab-results/{id}"),
    (Put, "/api/v1/lab-results/{id}"),
    (Delete, "/api/v1/lab-results/{id}"),
    (Get, "/api/v1/vital-signs"),
    (Post, "/api/v1/vital-signs"),
    (Get, "/api/v1/vital-signs/{id}"),
    (Put, "/api/v1/vital-signs/{id}"),
    (Delete, "/api/v1/vital-signs/{id}"),
    (Get, "/api/v1/protocol-deviations"),
    (Post, "/api/v1/protocol-deviations"),
    (Get, "/api/v1/protocol-deviations/{id}"),
    (Put, "/api/v1/protocol-deviations/{id}"),
    (Delete, "/api/v1/protocol-deviations/{id}"),
    (Get, "/api/v1/documents"),
    (Post, "/api/v1/documents"),
    (Get, "/api/v1/documents/{id}"),
    (Put, "/api/v1/documents/{id}"),
    (Delete, "/api/v1/documents/{id}"),
    (Get, "/api/v1/signatures"),
    (Post, "/api/v1/signatures"),
    (Get, "/api/v1/signatures/{id}"),
    (Put, "/api/v1/signatures/{id}"),
    (Delete, "/api/v1/signatures/{id}"),
    (Get, "/api/v1/exports"),
    (Post, "/api/v1/exports"),
    (Get, "/api/v1/exports/{id}"),
    (Put, "/api/v1/exports/{id}"),
    (Delete, "/api/v1/exports/{id}"),
    (Get, "/api/v1/audit-events"),
    (Post, "/api/v1/audit-events"),
    (Get, "/api/v1/audit-events/{id}"),
    (Put, "/api/v1/audit-events/{id}"),
    (Delete, "/api/v1/audit-events/{id}"),
    (Get, "/api/v1/investigators"),
    (Post, "/api/v1/investigators"),
    (Get, "/api/v1/investigators/{id}"),
    (Put, "/api/v1/investigators/{id}"),
    (Delete, "/api/v1/investigators/{id}"),
    (Get, "/api/v1/schedules"),
    (Post, "/api/v1/schedules"),
    (Get, "/api/v1/schedules/{id}"),
    (Put, "/api/v1/schedules/{id}"),
    (Delete, "/api/v1/schedules/{id}"),
    (
        Get,
        "/api/v1/projects/{projectId}/sites/{siteId}/subjects/{subjectId}/visits",
    ),
    (
        Get,
        "/api/v1/projects/{projectId}/sites/{siteId}/subjects/{subjectId}/forms",
    ),
    (
        Get,
        "/api/v1/projects/{projectId}/sites/{siteId}/subjects/{subjectId}/queries",
    ),
    (
        Get,
        "/api/v1/projects/{projectId}/sites/{siteId}/subjects/{subjectId}/adverse-events",
    ),
    (
        Get,
        "/api/v1/projects/{projectId}/sites/{siteId}/subjects/{subjectId}/diaries",
    ),
    (
        Get,
        "/api/v1/projects/{projectId}/sites/{siteId}/subjects/{subjectId}/consents",
    ),
    (
        Get,
        "/api/v1/projects/{projectId}/sites/{siteId}/subjects/{subjectId}/medications",
    ),
    (
        Get,
        "/api/v1/projects/{projectId}/sites/{siteId}/subjects/{subjectId}/lab-results",
    ),
    (Get, "/api/v1/projects/{projectId}/sites"),
    (Get, "/api/v1/projects/{projectId}/subjects"),
    (Get, "/api/v1/projects/{projectId}/exports"),
    (Get, "/api/v1/projects/{projectId}/queries"),
    (Get, "/api/v1/projects/{projectId}"),
    (Get, "/api/v1/projects"),
    (Post, "/api/v1/projects"),
];

static TREE: Tree<{ capacity(ROUTES) }> = build(ROUTES);

/// Requests as a clinical API sees them: mostly deep parameterised reads, some misses.
const REQUESTS: &[(Method, &str)] = &[
    (Post, "/epro/submit"),
    (Get, "/healthz"),
    (Get, "/api/v1/projects/P001/sites/S01/subjects"),
    (Get, "/api/v1/projects/P001/reports/summary"),
    (Get, "/api/v1/users/site-app-001/permissions"),
    (Post, "/api/v1/tags/add"),
    (Get, "/api/v1/studies"),
    (Get, "/api/v1/adverse-events/AE-2231"),
    (Put, "/api/v1/protocol-deviations/PD-17"),
    (Delete, "/api/v1/documents/DOC-99812"),
    (
        Get,
        "/api/v1/projects/P001/sites/S01/subjects/SUBJ-0042/diaries",
    ),
    (
        Get,
        "/api/v1/projects/P001/sites/S07/subjects/SUBJ-1337/lab-results",
    ),
    (Get, "/api/v1/projects/P002/exports"),
    (Get, "/api/v1/schedules/SCH-1"),
    (Get, "/api/v1/nope"),
    (
        Get,
        "/api/v1/projects/P001/sites/S01/subjects/SUBJ-0042/unknown",
    ),
];

fn method_index(m: Method) -> usize {
    Method::ALL.iter().position(|&x| x == m).unwrap()
}

fn matchit_router() -> matchit::Router<[Option<usize>; 7]> {
    let mut paths: Vec<(&str, [Option<usize>; 7])> = Vec::new();
    for (i, &(method, path)) in ROUTES.iter().enumerate() {
        match paths.iter_mut().find(|(p, _)| *p == path) {
            Some((_, methods)) => methods[method_index(method)] = Some(i),
            None => {
                let mut methods = [None; 7];
                methods[method_index(method)] = Some(i);
                paths.push((path, methods));
            }
        }
    }
    let mut router = matchit::Router::new();
    for (path, methods) in paths {
        router.insert(path, methods).unwrap();
    }
    router
}

fn bench(c: &mut Criterion) {
    let router = matchit_router();
    // Both routers must agree before their speed means anything.
    for &(method, path) in REQUESTS {
        let ours = match TREE.lookup(method, path) {
            Lookup::Found(i, _) => Some(i),
            _ => None,
        };
        let theirs = router
            .at(path)
            .ok()
            .and_then(|m| m.value[method_index(method)]);
        assert_eq!(ours, theirs, "{method:?} {path}");
    }

    let mut group = c.benchmark_group("route");
    group.throughput(Throughput::Elements(REQUESTS.len() as u64));
    group.bench_function("epro-ingest tree", |b| {
        b.iter(|| {
            for &(method, path) in REQUESTS {
                match TREE.lookup(black_box(method), black_box(path)) {
                    Lookup::Found(i, params) => {
                        black_box((i, params.iter().next()));
                    }
                    other => {
                        black_box(other);
                    }
                }
            }
        })
    });
    group.bench_function("matchit", |b| {
        b.iter(|| {
            for &(method, path) in REQUESTS {
                match router.at(black_box(path)) {
                    Ok(m) => {
                        black_box((
                            m.value[method_index(black_box(method))],
                            m.params.iter().next(),
                        ));
                    }
                    Err(e) => {
                        black_box(e);
                    }
                }
            }
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
