//! R4 conformance of QuestionnaireResponse intake, over real sockets, cross-checked by
//! an independent validator: the R4 examples in `tests/fhir_examples/` are valid R4 (the
//! server never answers them 400), and a table of resources that break R4 is refused
//! with 400 and the element's FHIRPath. The validator is `fhir.resources` 6.4.0 (the
//! last release whose models are R4 4.0.1, on pydantic 1) in the virtual environment
//! `scripts/test.sh` makes at `target/fhir-r4-venv`; it must accept every example and
//! every profile-only refusal, and refuse each invalid case the table says it refuses.
//! Where it is laxer than R4's text (it coerces `"1.5"` to a decimal, takes a
//! dateTime without a zone, does not check value sets or invariants), the table says
//! so, and the test holds it to that too, so a change of validator is noticed.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::{json, Value};

use common::{post, Server, DEVICE_TOKEN};

const EXAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fhir_examples");
const VALIDATOR: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/target/fhir-r4-venv/bin/python"
);

/// The R4 examples: (file name, body).
fn examples() -> Vec<(String, String)> {
    let mut files: Vec<_> = std::fs::read_dir(EXAMPLES)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert!(files.len() >= 3, "the R4 examples are in {EXAMPLES}");
    files
        .into_iter()
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read_to_string(&p).unwrap())
        })
        .collect()
}

/// Whether the independent validator accepts each body as a QuestionnaireResponse.
fn validator_accepts(bodies: &[String]) -> Option<Vec<Result<(), String>>> {
    let typed: Vec<(&str, String)> = bodies
        .iter()
        .map(|b| ("QuestionnaireResponse", b.clone()))
        .collect();
    validate(&typed)
}

/// Whether the independent validator accepts each (resource type, body): `None` when
/// it is not installed and CI is not set (with CI set, a missing validator fails the
/// test).
fn validate(resources: &[(&str, String)]) -> Option<Vec<Result<(), String>>> {
    if !Path::new(VALIDATOR).exists() {
        assert!(
            std::env::var_os("CI").is_none(),
            "the R4 validator is missing at {VALIDATOR}: run scripts/test.sh"
        );
        eprintln!(
            "fhir_r4: no R4 validator at {VALIDATOR} (scripts/test.sh makes it); not cross-checked"
        );
        return None;
    }
    let script = "import sys, json, importlib\n\
        import fhir.resources\n\
        assert fhir.resources.__fhir_version__ == '4.0.1', fhir.resources.__fhir_version__\n\
        for kind, body in json.load(sys.stdin):\n\
        \x20   model = getattr(importlib.import_module('fhir.resources.' + kind.lower()), kind)\n\
        \x20   try:\n\
        \x20       model.parse_obj(json.loads(body))\n\
        \x20       print('ok')\n\
        \x20   except Exception as e:\n\
        \x20       print('refused: ' + ' '.join(str(e).split()))\n";
    let mut child = Command::new(VALIDATOR)
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let input = serde_json::to_vec(resources).unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), &input).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<Result<(), String>> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            if l == "ok" {
                Ok(())
            } else {
                Err(l.to_string())
            }
        })
        .collect();
    assert_eq!(lines.len(), resources.len());
    Some(lines)
}

/// The (code, expression) of each issue of an OperationOutcome.
fn issues(body: &Value) -> Vec<(String, String)> {
    assert_eq!(body["resourceType"], "OperationOutcome", "{body}");
    body["issue"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            let expression = i["expression"][0].as_str().unwrap_or("").to_string();
            (i["code"].as_str().unwrap().to_string(), expression)
        })
        .collect()
}

/// Sets (or, with `None`, removes) the value at JSON pointer `at`.
fn put(mut v: Value, at: &str, value: Option<Value>) -> Value {
    let (parent, key) = at.rsplit_once('/').unwrap();
    match (v.pointer_mut(parent).unwrap(), value) {
        (Value::Object(map), Some(value)) => {
            map.insert(key.to_string(), value);
        }
        (Value::Object(map), None) => {
            map.remove(key);
        }
        (Value::Array(list), Some(value)) => list[key.parse::<usize>().unwrap()] = value,
        (other, _) => panic!("no parent at {at}: {other}"),
    }
    v
}

/// An invalid case: what it breaks, where (JSON pointer), the value put there (`None`:
/// removed), the first issue's (code, FHIRPath), and whether the validator refuses it
/// too (`false`: a known leniency of it).
type Case = (
    &'static str,
    &'static str,
    Option<Value>,
    (&'static str, &'static str),
    bool,
);

#[rustfmt::skip]
fn invalid_cases() -> Vec<Case> {
    let answer = "/item/0/item/0/answer/0";
    let ans = |v: Value| Some(v);
    vec![
        ("integer as a string", answer, ans(json!({"valueInteger": "six"})), ("structure", "QuestionnaireResponse.item[0].item[0].answer[0].valueInteger"), true),
        ("two value[x] types", answer, ans(json!({"valueString": "x", "valueInteger": 1})), ("structure", "QuestionnaireResponse.item[0].item[0].answer[0].value[x]"), true),
        ("an unknown value[x] type", answer, ans(json!({"valueFoo": "x"})), ("structure", "QuestionnaireResponse.item[0].item[0].answer[0].valueFoo"), true),
        ("an unknown top-level element", "/foo", Some(json!(1)), ("structure", "QuestionnaireResponse.foo"), true),
        ("a contained resource of no R4 type", "/contained", Some(json!([{"resourceType": "Nope", "id": "a"}])), ("structure", "QuestionnaireResponse.contained[0].resourceType"), true),
        ("a contained resource without id", "/contained", Some(json!([{"resourceType": "Patient", "gender": "male"}])), ("required", "QuestionnaireResponse.contained[0].id"), false),
        ("a contained resource in a contained one", "/contained", Some(json!([{"resourceType": "Patient", "id": "p", "contained": [{"resourceType": "Patient", "id": "q"}]}])), ("invariant", "QuestionnaireResponse.contained[0].contained"), false),
        ("answer as an object", "/item/0/item/0/answer", Some(json!({"valueString": "x"})), ("structure", "QuestionnaireResponse.item[0].item[0].answer"), true),
        ("a value as an array", answer, ans(json!({"valueString": ["x"]})), ("structure", "QuestionnaireResponse.item[0].item[0].answer[0].valueString"), true),
        ("meta as an array", "/meta", Some(json!([1])), ("structure", "QuestionnaireResponse.meta"), true),
        ("a date in another form", answer, ans(json!({"valueDate": "26/11/2026"})), ("value", "QuestionnaireResponse.item[0].item[0].answer[0].valueDate"), true),
        ("an empty string", answer, ans(json!({"valueString": ""})), ("value", "QuestionnaireResponse.item[0].item[0].answer[0].valueString"), true),
        ("authored month 13", "/authored", Some(json!("2026-13-45")), ("value", "QuestionnaireResponse.authored"), true),
        ("authored on February 30th", "/authored", Some(json!("2026-02-30T10:00:00Z")), ("value", "QuestionnaireResponse.authored"), true),
        ("a dateTime with a time and no zone", "/authored", Some(json!("2026-11-26T10:00:00")), ("value", "QuestionnaireResponse.authored"), false),
        ("a time of hour 25", answer, ans(json!({"valueTime": "25:00:00"})), ("value", "QuestionnaireResponse.item[0].item[0].answer[0].valueTime"), true),
        ("a NUL in a linkId", "/item/0/linkId", Some(json!("a\u{0}b")), ("value", "QuestionnaireResponse.item[0].linkId"), false),
        ("an integer past 32 bits", answer, ans(json!({"valueInteger": 2147483648u64})), ("value", "QuestionnaireResponse.item[0].item[0].answer[0].valueInteger"), false),
        ("an integer with a fraction", answer, ans(json!({"valueInteger": 1.5})), ("structure", "QuestionnaireResponse.item[0].item[0].answer[0].valueInteger"), false),
        ("a decimal as a string", answer, ans(json!({"valueDecimal": "1.5"})), ("structure", "QuestionnaireResponse.item[0].item[0].answer[0].valueDecimal"), false),
        ("a boolean as a string", answer, ans(json!({"valueBoolean": "true"})), ("structure", "QuestionnaireResponse.item[0].item[0].answer[0].valueBoolean"), false),
        ("a URI with a space", answer, ans(json!({"valueUri": "a b"})), ("value", "QuestionnaireResponse.item[0].item[0].answer[0].valueUri"), false),
        ("a Reference with an unknown element", answer, ans(json!({"valueReference": {"ref": "Patient/1"}})), ("structure", "QuestionnaireResponse.item[0].item[0].answer[0].valueReference.ref"), true),
        ("a Coding with a code of two spaces", answer, ans(json!({"valueCoding": {"code": "a  b"}})), ("value", "QuestionnaireResponse.item[0].item[0].answer[0].valueCoding.code"), true),
        ("a Quantity comparator outside its value set", answer, ans(json!({"valueQuantity": {"value": 1, "comparator": "~"}})), ("value", "QuestionnaireResponse.item[0].item[0].answer[0].valueQuantity.comparator"), false),
        ("an Attachment of negative size", answer, ans(json!({"valueAttachment": {"size": -1}})), ("value", "QuestionnaireResponse.item[0].item[0].answer[0].valueAttachment.size"), true),
        ("an empty answer", answer, ans(json!({})), ("structure", "QuestionnaireResponse.item[0].item[0].answer[0]"), false),
        ("an empty item list", "/item/0/item", Some(json!([])), ("structure", "QuestionnaireResponse.item[0].item"), false),
        ("a null", "/item/1/text", Some(Value::Null), ("structure", "QuestionnaireResponse.item[1].text"), false),
        ("a status outside its value set", "/status", Some(json!("done")), ("value", "QuestionnaireResponse.status"), false),
        ("no status", "/status", None, ("required", "QuestionnaireResponse.status"), true),
        ("no linkId", "/item/1/linkId", None, ("required", "QuestionnaireResponse.item[1].linkId"), true),
        ("an invalid id", "/id", Some(json!("a b")), ("value", "QuestionnaireResponse.id"), true),
        ("qrs-1: items under the item and its answer", "/item/0/item/0/item", Some(json!([{"linkId": "x"}])), ("invariant", "QuestionnaireResponse.item[0].item[0]"), false),
        ("ext-1: an extension with a value and extensions", "/extension", Some(json!([{"url": "http://x", "valueString": "a", "extension": [{"url": "http://y", "valueString": "b"}]}])), ("invariant", "QuestionnaireResponse.extension[0]"), false),
        ("an extension without url", "/extension", Some(json!([{"valueString": "a"}])), ("required", "QuestionnaireResponse.extension[0].url"), false),
        ("ref-1: a local reference to nothing contained", "/author", Some(json!({"reference": "#nobody"})), ("invariant", "QuestionnaireResponse.author.reference"), false),
        ("ele-1: a Coding with only an id", answer, ans(json!({"valueCoding": {"id": "c"}})), ("invariant", "QuestionnaireResponse.item[0].item[0].answer[0].valueCoding"), false),
        ("a primitive's extension object with only an id", "/_authored", Some(json!({"id": "x"})), ("invariant", "QuestionnaireResponse._authored"), true),
    ]
}

fn base() -> Value {
    let (_, f201) = examples()
        .into_iter()
        .find(|(name, _)| name.contains("f201"))
        .unwrap();
    serde_json::from_str(&f201).unwrap()
}

#[test]
fn r4_examples_are_valid_and_each_r4_rule_is_refused_with_400_as_the_validator_does() {
    let server = Server::start(common::DEVICE_ADMIN_CONFIG, &[]);
    let mut s = server.connect();
    let mut checked = Vec::new();
    // The examples: valid R4. Those that meet this server's profile are stored; the
    // others (a subject that is a contained Patient) are 422 for the profile alone.
    for (name, body) in examples() {
        let r = post(&mut s, "/fhir/QuestionnaireResponse", DEVICE_TOKEN, &body);
        let profiled = !body.contains("\"reference\": \"#patsub\"");
        if profiled {
            assert_eq!(r.status, 201, "{name}: {}", r.text());
        } else {
            assert_eq!(r.status, 422, "{name}: {}", r.text());
            let got = issues(&r.json());
            assert_eq!(
                got,
                [(
                    "value".to_string(),
                    "QuestionnaireResponse.subject.reference".to_string()
                )],
                "{name}"
            );
        }
        checked.push((name, body, true));
    }
    // Valid R4 that breaks only the profile: the validator accepts it.
    for (what, at, value) in [
        (
            "an absolute subject URL",
            "/subject",
            Some(json!({"reference": "http://example.org/fhir/Patient/1"})),
        ),
        (
            "a Group subject",
            "/subject",
            Some(json!({"reference": "Group/1"})),
        ),
        (
            "an identifier-only subject",
            "/subject",
            Some(json!({"identifier": {"value": "A1"}})),
        ),
        ("no authored", "/authored", None),
    ] {
        let body = put(base(), at, value).to_string();
        let r = post(&mut s, "/fhir/QuestionnaireResponse", DEVICE_TOKEN, &body);
        assert_eq!(r.status, 422, "{what}: {}", r.text());
        checked.push((what.to_string(), body, true));
    }
    for (what, at, value, (code, path), validator_refuses) in invalid_cases() {
        let body = put(base(), at, value).to_string();
        let r = post(&mut s, "/fhir/QuestionnaireResponse", DEVICE_TOKEN, &body);
        assert_eq!(r.status, 400, "{what}: {}", r.text());
        let got = issues(&r.json());
        assert_eq!(
            got.first().map(|(c, p)| (c.as_str(), p.as_str())),
            Some((code, path)),
            "{what}: {got:?}"
        );
        checked.push((what.to_string(), body, !validator_refuses));
    }
    // Nothing invalid was stored: the two profiled examples only.
    assert_eq!(common::export(&server.data_dir()).len(), 2);
    let bodies: Vec<String> = checked.iter().map(|(_, b, _)| b.clone()).collect();
    let Some(verdicts) = validator_accepts(&bodies) else {
        return;
    };
    let disagreements: Vec<String> = checked
        .iter()
        .zip(verdicts)
        .filter(|((_, _, accepts), verdict)| verdict.is_ok() != *accepts)
        .map(|((what, _, accepts), verdict)| {
            format!("{what}: accepts {accepts}? it said {verdict:?}")
        })
        .collect();
    assert!(
        disagreements.is_empty(),
        "the R4 validator disagrees:\n{}",
        disagreements.join("\n")
    );
}

/// What the server writes is valid R4 too: the CapabilityStatement, the profile's
/// StructureDefinition (the one the CapabilityStatement names), a read-back resource,
/// and the OperationOutcomes of a stored resource and of a refusal.
#[test]
fn what_the_server_writes_is_valid_r4() {
    let server = Server::start(common::DEVICE_ADMIN_CONFIG, &[]);
    let mut s = server.connect();
    let statement = common::get(&mut s, "/fhir/metadata", "");
    let profile_url = statement.json()["rest"][0]["resource"][0]["supportedProfile"][0]
        .as_str()
        .unwrap()
        .to_string();
    let profile = common::get(
        &mut s,
        "/fhir/StructureDefinition/epro-questionnaireresponse",
        "",
    );
    assert_eq!(profile.status, 200);
    assert_eq!(profile.json()["url"], profile_url.as_str());
    assert_eq!(profile.json()["type"], "QuestionnaireResponse");
    let stored = post(
        &mut s,
        "/fhir/QuestionnaireResponse",
        DEVICE_TOKEN,
        &base().to_string(),
    );
    assert_eq!(stored.status, 201);
    let location = stored.header("location").unwrap().to_string();
    let read = common::get(&mut s, &location, common::ADMIN_TOKEN);
    assert_eq!(read.status, 200);
    let refused = post(
        &mut s,
        "/fhir/QuestionnaireResponse",
        DEVICE_TOKEN,
        "{\"resourceType\":\"QuestionnaireResponse\"}",
    );
    assert_eq!(refused.status, 400);
    let written = [
        ("CapabilityStatement", statement.text()),
        ("StructureDefinition", profile.text()),
        ("QuestionnaireResponse", read.text()),
        ("OperationOutcome", stored.text()),
        ("OperationOutcome", refused.text()),
    ];
    let Some(verdicts) = validate(&written) else {
        return;
    };
    for ((kind, body), verdict) in written.iter().zip(verdicts) {
        assert_eq!(verdict, Ok(()), "{kind}: {body}");
    }
}
