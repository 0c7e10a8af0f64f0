//! The R4 (4.0.1) structure of a QuestionnaireResponse and of the datatypes it uses,
//! as tables: each element's name, type, cardinality; `value[x]` choices with their
//! types. [`super::r4`] walks a resource against them.

use super::primitive::Prim;

/// A complex type (or backbone element) whose elements are listed here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cx {
    QuestionnaireResponse,
    Item,
    Answer,
    Meta,
    Narrative,
    Extension,
    Identifier,
    Reference,
    Coding,
    CodeableConcept,
    Period,
    Quantity,
    Attachment,
    /// The `_name` object beside a primitive: its id and extensions.
    PrimitiveElement,
}

/// An element's type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ty {
    P(Prim),
    C(Cx),
    /// A contained resource.
    Resource,
    /// A datatype not modelled here (an extension's `valueTiming`, say): a non-empty
    /// object held to the JSON rules every FHIR value meets.
    Opaque,
}

/// One element or a `value[x]` choice.
#[derive(Clone, Copy, Debug)]
pub enum Shape {
    One(Ty),
    /// `name` + one of these type names (`valueString`), at most one of them.
    Choice(&'static [(&'static str, Ty)]),
}

#[derive(Clone, Copy, Debug)]
pub struct El {
    pub name: &'static str,
    pub shape: Shape,
    pub many: bool,
    pub required: bool,
}

const fn one(name: &'static str, ty: Ty) -> El {
    El {
        name,
        shape: Shape::One(ty),
        many: false,
        required: false,
    }
}

const fn many(name: &'static str, ty: Ty) -> El {
    El {
        many: true,
        ..one(name, ty)
    }
}

const fn required(name: &'static str, ty: Ty) -> El {
    El {
        required: true,
        ..one(name, ty)
    }
}

const fn choice(name: &'static str, types: &'static [(&'static str, Ty)]) -> El {
    El {
        name,
        shape: Shape::Choice(types),
        many: false,
        required: false,
    }
}

use Prim as P;
use Ty::{C, P as Pr};

pub const QR_STATUSES: &[&str] = &[
    "in-progress",
    "completed",
    "amended",
    "entered-in-error",
    "stopped",
];

const ID: El = one("id", Pr(P::String));
const EXTENSION: El = many("extension", C(Cx::Extension));
const MODIFIER_EXTENSION: El = many("modifierExtension", C(Cx::Extension));

const ANSWER_TYPES: &[(&str, Ty)] = &[
    ("Boolean", Pr(P::Boolean)),
    ("Decimal", Pr(P::Decimal)),
    ("Integer", Pr(P::Integer)),
    ("Date", Pr(P::Date)),
    ("DateTime", Pr(P::DateTime)),
    ("Time", Pr(P::Time)),
    ("String", Pr(P::String)),
    ("Uri", Pr(P::Uri)),
    ("Attachment", C(Cx::Attachment)),
    ("Coding", C(Cx::Coding)),
    ("Quantity", C(Cx::Quantity)),
    ("Reference", C(Cx::Reference)),
];

/// Extension.value[x]: every R4 type allowed there; those not modelled are opaque.
const EXTENSION_TYPES: &[(&str, Ty)] = &[
    ("Base64Binary", Pr(P::Base64Binary)),
    ("Boolean", Pr(P::Boolean)),
    ("Canonical", Pr(P::Canonical)),
    ("Code", Pr(P::Code)),
    ("Date", Pr(P::Date)),
    ("DateTime", Pr(P::DateTime)),
    ("Decimal", Pr(P::Decimal)),
    ("Id", Pr(P::Id)),
    ("Instant", Pr(P::Instant)),
    ("Integer", Pr(P::Integer)),
    ("Markdown", Pr(P::Markdown)),
    ("Oid", Pr(P::Oid)),
    ("PositiveInt", Pr(P::PositiveInt)),
    ("String", Pr(P::String)),
    ("Time", Pr(P::Time)),
    ("UnsignedInt", Pr(P::UnsignedInt)),
    ("Uri", Pr(P::Uri)),
    ("Url", Pr(P::Url)),
    ("Uuid", Pr(P::Uuid)),
    ("Address", Ty::Opaque),
    ("Age", C(Cx::Quantity)),
    ("Annotation", Ty::Opaque),
    ("Attachment", C(Cx::Attachment)),
    ("CodeableConcept", C(Cx::CodeableConcept)),
    ("Coding", C(Cx::Coding)),
    ("ContactPoint", Ty::Opaque),
    ("Count", C(Cx::Quantity)),
    ("Distance", C(Cx::Quantity)),
    ("Duration", C(Cx::Quantity)),
    ("HumanName", Ty::Opaque),
    ("Identifier", C(Cx::Identifier)),
    ("Money", Ty::Opaque),
    ("Period", C(Cx::Period)),
    ("Quantity", C(Cx::Quantity)),
    ("Range", Ty::Opaque),
    ("Ratio", Ty::Opaque),
    ("Reference", C(Cx::Reference)),
    ("SampledData", Ty::Opaque),
    ("Signature", Ty::Opaque),
    ("Timing", Ty::Opaque),
    ("ContactDetail", Ty::Opaque),
    ("Contributor", Ty::Opaque),
    ("DataRequirement", Ty::Opaque),
    ("Expression", Ty::Opaque),
    ("ParameterDefinition", Ty::Opaque),
    ("RelatedArtifact", Ty::Opaque),
    ("TriggerDefinition", Ty::Opaque),
    ("UsageContext", Ty::Opaque),
    ("Dosage", Ty::Opaque),
    ("Meta", C(Cx::Meta)),
];

/// The elements of `cx`, in the specification's order.
pub fn elements(cx: Cx) -> &'static [El] {
    match cx {
        Cx::QuestionnaireResponse => QUESTIONNAIRE_RESPONSE_ELEMENTS,
        Cx::Item => ITEM_ELEMENTS,
        Cx::Answer => ANSWER_ELEMENTS,
        Cx::Meta => META_ELEMENTS,
        Cx::Narrative => NARRATIVE_ELEMENTS,
        Cx::Extension => EXTENSION_ELEMENTS,
        Cx::Identifier => IDENTIFIER_ELEMENTS,
        Cx::Reference => REFERENCE_ELEMENTS,
        Cx::Coding => CODING_ELEMENTS,
        Cx::CodeableConcept => CODEABLE_CONCEPT_ELEMENTS,
        Cx::Period => PERIOD_ELEMENTS,
        Cx::Quantity => QUANTITY_ELEMENTS,
        Cx::Attachment => ATTACHMENT_ELEMENTS,
        Cx::PrimitiveElement => &[ID, EXTENSION],
    }
}

const QUESTIONNAIRE_RESPONSE_ELEMENTS: &[El] = &[
    one("id", Pr(P::Id)),
    one("meta", C(Cx::Meta)),
    one("implicitRules", Pr(P::Uri)),
    one("language", Pr(P::Code)),
    one("text", C(Cx::Narrative)),
    many("contained", Ty::Resource),
    EXTENSION,
    MODIFIER_EXTENSION,
    one("identifier", C(Cx::Identifier)),
    many("basedOn", C(Cx::Reference)),
    many("partOf", C(Cx::Reference)),
    one("questionnaire", Pr(P::Canonical)),
    required("status", Pr(P::CodeOf(QR_STATUSES))),
    one("subject", C(Cx::Reference)),
    one("encounter", C(Cx::Reference)),
    one("authored", Pr(P::DateTime)),
    one("author", C(Cx::Reference)),
    one("source", C(Cx::Reference)),
    many("item", C(Cx::Item)),
];

const ITEM_ELEMENTS: &[El] = &[
    ID,
    EXTENSION,
    MODIFIER_EXTENSION,
    required("linkId", Pr(P::String)),
    one("definition", Pr(P::Uri)),
    one("text", Pr(P::String)),
    many("answer", C(Cx::Answer)),
    many("item", C(Cx::Item)),
];

const ANSWER_ELEMENTS: &[El] = &[
    ID,
    EXTENSION,
    MODIFIER_EXTENSION,
    choice("value", ANSWER_TYPES),
    many("item", C(Cx::Item)),
];

const META_ELEMENTS: &[El] = &[
    ID,
    EXTENSION,
    one("versionId", Pr(P::Id)),
    one("lastUpdated", Pr(P::Instant)),
    one("source", Pr(P::Uri)),
    many("profile", Pr(P::Canonical)),
    many("security", C(Cx::Coding)),
    many("tag", C(Cx::Coding)),
];

const NARRATIVE_ELEMENTS: &[El] = &[
    ID,
    EXTENSION,
    required(
        "status",
        Pr(P::CodeOf(&[
            "generated",
            "extensions",
            "additional",
            "empty",
        ])),
    ),
    required("div", Pr(P::Xhtml)),
];

const EXTENSION_ELEMENTS: &[El] = &[
    ID,
    EXTENSION,
    required("url", Pr(P::Uri)),
    choice("value", EXTENSION_TYPES),
];

const IDENTIFIER_ELEMENTS: &[El] = &[
    ID,
    EXTENSION,
    one(
        "use",
        Pr(P::CodeOf(&[
            "usual",
            "official",
            "temp",
            "secondary",
            "old",
        ])),
    ),
    one("type", C(Cx::CodeableConcept)),
    one("system", Pr(P::Uri)),
    one("value", Pr(P::String)),
    one("period", C(Cx::Period)),
    one("assigner", C(Cx::Reference)),
];

const REFERENCE_ELEMENTS: &[El] = &[
    ID,
    EXTENSION,
    one("reference", Pr(P::String)),
    one("type", Pr(P::Uri)),
    one("identifier", C(Cx::Identifier)),
    one("display", Pr(P::String)),
];

const CODING_ELEMENTS: &[El] = &[
    ID,
    EXTENSION,
    one("system", Pr(P::Uri)),
    one("version", Pr(P::String)),
    one("code", Pr(P::Code)),
    one("display", Pr(P::String)),
    one("userSelected", Pr(P::Boolean)),
];

const CODEABLE_CONCEPT_ELEMENTS: &[El] = &[
    ID,
    EXTENSION,
    many("coding", C(Cx::Coding)),
    one("text", Pr(P::String)),
];

const PERIOD_ELEMENTS: &[El] = &[
    ID,
    EXTENSION,
    one("start", Pr(P::DateTime)),
    one("end", Pr(P::DateTime)),
];

const QUANTITY_ELEMENTS: &[El] = &[
    ID,
    EXTENSION,
    one("value", Pr(P::Decimal)),
    one("comparator", Pr(P::CodeOf(&["<", "<=", ">=", ">"]))),
    one("unit", Pr(P::String)),
    one("system", Pr(P::Uri)),
    one("code", Pr(P::Code)),
];

const ATTACHMENT_ELEMENTS: &[El] = &[
    ID,
    EXTENSION,
    one("contentType", Pr(P::Code)),
    one("language", Pr(P::Code)),
    one("data", Pr(P::Base64Binary)),
    one("url", Pr(P::Url)),
    one("size", Pr(P::UnsignedInt)),
    one("hash", Pr(P::Base64Binary)),
    one("title", Pr(P::String)),
    one("creation", Pr(P::DateTime)),
];
