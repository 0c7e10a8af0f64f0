//! R4's own rules for a QuestionnaireResponse, checked against the tables of
//! [`super::structure`]: every element known (unknown ones refused), each with the
//! JSON type and lexical form of its type ([`super::primitive`]), arrays where the
//! cardinality is many and never elsewhere, no empty object or array, no `null`
//! outside a primitive's `_name` array; at most one type of a `value[x]`; required
//! elements present; and the invariants ele-1 (an element has a value or children),
//! ext-1 (an extension has a value or extensions, not both), qrs-1 (an item's children
//! are under `item` or under `answer`, not both), ref-1 (a `#id` reference names a
//! contained resource), dom-2 and dom-4 (a contained resource holds no contained
//! resources, no `meta.versionId` or `meta.lastUpdated`). A contained resource is
//! checked for a known `resourceType`, a valid and unique `id`, and the JSON rules;
//! its own elements are not.

use serde_json::{Map, Value};

use super::primitive::{self, Fault};
use super::resource_types::RESOURCE_TYPES;
use super::structure::{elements, Cx, El, Shape, Ty};
use super::Issue;

/// The most issues one refusal lists: an OperationOutcome stays small whatever the
/// body holds.
pub const MAX_ISSUES: usize = 50;

/// Checks `resource` (a JSON object whose `resourceType` is QuestionnaireResponse)
/// against R4; the issues found, in document order, at most [`MAX_ISSUES`].
pub fn check(resource: &Map<String, Value>) -> Vec<Issue> {
    let mut walk = Walk::default();
    walk.object(resource, Cx::QuestionnaireResponse, "QuestionnaireResponse");
    walk.local_references();
    walk.issues
}

#[derive(Default)]
struct Walk {
    issues: Vec<Issue>,
    /// Contained resources' ids.
    contained: Vec<String>,
    /// `#id` references outside contained resources: (FHIRPath, id).
    local: Vec<(String, String)>,
}

impl Walk {
    fn push(&mut self, code: &'static str, path: String, diagnostics: impl Into<String>) {
        if self.issues.len() < MAX_ISSUES {
            self.issues.push(Issue {
                code,
                expression: path,
                diagnostics: diagnostics.into(),
            });
        }
    }

    fn object(&mut self, map: &Map<String, Value>, cx: Cx, path: &str) {
        for el in elements(cx) {
            match el.shape {
                Shape::One(ty) => self.element(map, el, ty, path),
                Shape::Choice(types) => self.choice(map, el, types, path),
            }
        }
        self.unknown_keys(map, cx, path);
        self.invariants(map, cx, path);
    }

    /// Element `el` of type `ty`, and its primitive extension `_name`.
    fn element(&mut self, map: &Map<String, Value>, el: &El, ty: Ty, path: &str) {
        let here = format!("{path}.{}", el.name);
        let value = map.get(el.name);
        let ext = map.get(&format!("_{}", el.name));
        if let Some(value) = value {
            self.value(value, ty, el.many, &here);
        } else if el.required && ext.is_none() {
            self.push("required", here.clone(), format!("{} is required", el.name));
        }
        if let (Some(ext), Ty::P(_)) = (ext, ty) {
            self.primitive_element(ext, el.many, &format!("{path}._{}", el.name));
        }
    }

    /// A `name[x]` choice: one type given at most, each given one checked.
    fn choice(&mut self, map: &Map<String, Value>, el: &El, types: &[(&str, Ty)], path: &str) {
        let given: Vec<_> = types
            .iter()
            .filter(|(t, _)| {
                map.contains_key(&format!("{}{t}", el.name))
                    || map.contains_key(&format!("_{}{t}", el.name))
            })
            .collect();
        if given.len() > 1 {
            let names: Vec<String> = given
                .iter()
                .map(|(t, _)| format!("{}{t}", el.name))
                .collect();
            let why = format!(
                "{}[x] takes one type; given as {}",
                el.name,
                names.join(" and ")
            );
            self.push("structure", format!("{path}.{}[x]", el.name), why);
        }
        for (t, ty) in given {
            let name = format!("{}{t}", el.name);
            if let Some(value) = map.get(&name) {
                self.value(value, *ty, false, &format!("{path}.{name}"));
            }
            if let (Some(ext), Ty::P(_)) = (map.get(&format!("_{name}")), ty) {
                self.primitive_element(ext, false, &format!("{path}._{name}"));
            }
        }
    }

    /// Names that are no element of `cx` in R4.
    fn unknown_keys(&mut self, map: &Map<String, Value>, cx: Cx, path: &str) {
        for key in map.keys() {
            let top = cx == Cx::QuestionnaireResponse && key == "resourceType";
            if !top && !known(cx, key) {
                self.push(
                    "structure",
                    format!("{path}.{key}"),
                    format!("{key} is not an element of {cx:?} in R4"),
                );
            }
        }
    }

    fn invariants(&mut self, map: &Map<String, Value>, cx: Cx, path: &str) {
        // ele-1: an element holds a value or children besides its id.
        if cx != Cx::QuestionnaireResponse && map.keys().all(|k| k == "id") {
            let why = "ele-1: an element must have a value or children";
            self.push("invariant", path.to_string(), why);
        }
        match cx {
            Cx::Item if map.contains_key("answer") && map.contains_key("item") => {
                let why = "qrs-1: nested items go under item or under answer, not both";
                self.push("invariant", path.to_string(), why);
            }
            Cx::Extension => {
                let valued = map.keys().any(|k| {
                    k.strip_prefix("value")
                        .or_else(|| k.strip_prefix("_value"))
                        .is_some_and(|t| !t.is_empty())
                });
                if valued == map.contains_key("extension") {
                    let why = "ext-1: an extension has a value or extensions, not both";
                    self.push("invariant", path.to_string(), why);
                }
            }
            Cx::Reference => {
                let local = map.get("reference").and_then(Value::as_str);
                if let Some(id) = local.and_then(|r| r.strip_prefix('#')) {
                    self.local
                        .push((format!("{path}.reference"), id.to_string()));
                }
            }
            _ => {}
        }
    }

    fn value(&mut self, value: &Value, ty: Ty, many: bool, path: &str) {
        match (value, many) {
            (Value::Array(list), true) => {
                if list.is_empty() {
                    self.push("structure", path.to_string(), "an array is never empty");
                }
                for (i, v) in list.iter().enumerate() {
                    self.single(v, ty, &format!("{path}[{i}]"));
                }
            }
            (_, true) => self.push("structure", path.to_string(), "must be an array"),
            (Value::Array(_), false) => {
                self.push("structure", path.to_string(), "must not be an array")
            }
            (v, false) => self.single(v, ty, path),
        }
    }

    fn single(&mut self, value: &Value, ty: Ty, path: &str) {
        if value.is_null() {
            return self.push("structure", path.to_string(), "null is not a value");
        }
        match ty {
            Ty::P(prim) => match primitive::check(prim, value) {
                Ok(()) => {}
                Err(Fault::JsonType(want)) => {
                    self.push("structure", path.to_string(), format!("must be {want}"))
                }
                Err(Fault::Form(want)) => {
                    self.push("value", path.to_string(), format!("must be {want}"))
                }
            },
            Ty::C(cx) => match value.as_object() {
                Some(map) if map.is_empty() => {
                    self.push("structure", path.to_string(), "an object is never empty")
                }
                Some(map) => self.object(map, cx, path),
                None => self.push("structure", path.to_string(), "must be a JSON object"),
            },
            Ty::Resource => self.contained(value, path),
            Ty::Opaque => {
                if value.is_object() {
                    self.json_rules(value, path, false);
                } else {
                    self.push("structure", path.to_string(), "must be a JSON object");
                }
            }
        }
    }

    /// A primitive's `_name`: an object with extensions (an array of those or `null`s
    /// beside an array of primitives).
    fn primitive_element(&mut self, value: &Value, many: bool, path: &str) {
        let one = |walk: &mut Walk, v: &Value, path: &str| match v.as_object() {
            Some(map) if !map.is_empty() => walk.object(map, Cx::PrimitiveElement, path),
            _ => walk.push(
                "structure",
                path.to_string(),
                "must be a non-empty JSON object",
            ),
        };
        match (value, many) {
            (Value::Array(list), true) if !list.is_empty() => {
                for (i, v) in list.iter().enumerate() {
                    if !v.is_null() {
                        one(self, v, &format!("{path}[{i}]"));
                    }
                }
            }
            (_, true) => self.push("structure", path.to_string(), "must be a non-empty array"),
            (v, false) => one(self, v, path),
        }
    }

    fn contained(&mut self, value: &Value, path: &str) {
        let Some(map) = value.as_object() else {
            return self.push("structure", path.to_string(), "must be a JSON object");
        };
        match map.get("resourceType").and_then(Value::as_str) {
            Some(t) if RESOURCE_TYPES.contains(&t) => {}
            _ => self.push(
                "structure",
                format!("{path}.resourceType"),
                "must name an R4 resource type",
            ),
        }
        match map.get("id").and_then(Value::as_str) {
            Some(id) if primitive::is_id(id) => {
                if self.contained.iter().any(|c| c == id) {
                    let why = "two contained resources have this id";
                    self.push("invariant", format!("{path}.id"), why);
                }
                self.contained.push(id.to_string());
            }
            Some(_) => self.push(
                "value",
                format!("{path}.id"),
                "must be an id: 1 to 64 of A-Z a-z 0-9 - .",
            ),
            None => self.push(
                "required",
                format!("{path}.id"),
                "a contained resource needs an id",
            ),
        }
        if map.contains_key("contained") {
            let why = "dom-2: a contained resource holds no contained resources";
            self.push("invariant", format!("{path}.contained"), why);
        }
        let meta = map.get("meta");
        if ["versionId", "lastUpdated"]
            .iter()
            .any(|k| meta.and_then(|m| m.get(k)).is_some())
        {
            let why = "dom-4: a contained resource has no meta.versionId or meta.lastUpdated";
            self.push("invariant", format!("{path}.meta"), why);
        }
        self.json_rules(value, path, false);
    }

    /// The JSON rules every FHIR value meets, for what is not modelled: no empty
    /// string, object or array, no control character, `null` only in a `_name` array.
    fn json_rules(&mut self, value: &Value, path: &str, null_ok: bool) {
        match value {
            Value::Null if !null_ok => {
                self.push("structure", path.to_string(), "null is not a value")
            }
            Value::String(s) => {
                if let Err(Fault::Form(want) | Fault::JsonType(want)) =
                    primitive::check_str(primitive::Prim::String, s)
                {
                    self.push("value", path.to_string(), format!("must be {want}"));
                }
            }
            Value::Array(list) => {
                if list.is_empty() {
                    self.push("structure", path.to_string(), "an array is never empty");
                }
                for (i, v) in list.iter().enumerate() {
                    self.json_rules(v, &format!("{path}[{i}]"), null_ok);
                }
            }
            Value::Object(map) => {
                if map.is_empty() {
                    self.push("structure", path.to_string(), "an object is never empty");
                }
                for (k, v) in map {
                    self.json_rules(v, &format!("{path}.{k}"), k.starts_with('_'));
                }
            }
            _ => {}
        }
    }

    /// ref-1: every `#id` names a contained resource (`#` alone is the container).
    fn local_references(&mut self) {
        let local = std::mem::take(&mut self.local);
        for (path, id) in local {
            if !id.is_empty() && !self.contained.contains(&id) {
                let why = format!("ref-1: no contained resource has the id {id}");
                self.push("invariant", path, why);
            }
        }
    }
}

/// Whether `key` names an element of `cx` (or a primitive's `_name` beside it).
fn known(cx: Cx, key: &str) -> bool {
    let (name, underscore) = match key.strip_prefix('_') {
        Some(name) => (name, true),
        None => (key, false),
    };
    elements(cx).iter().any(|el| match el.shape {
        Shape::One(ty) => el.name == name && (!underscore || matches!(ty, Ty::P(_))),
        Shape::Choice(types) => name.strip_prefix(el.name).is_some_and(|t| {
            types
                .iter()
                .any(|(n, ty)| *n == t && (!underscore || matches!(ty, Ty::P(_))))
        }),
    })
}
