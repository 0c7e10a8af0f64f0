//! Every refusal of a request is a small `Copy` [`Refusal`]: its status and which
//! message. A handler returns one (`Err(Refusal::..)`, or `?`), and [`refuse`] is the
//! one place that writes it out, in the caller's [`Dialect`]: `{"error":"<message>"}`
//! on the v1 API, a FHIR `OperationOutcome` under `/fhir` (an EHR client parses those,
//! whatever refused it: auth, limits, routing).

mod render;

pub use render::{answer, rate_limited, refuse, refuse_to};

use crate::domain::validate::Invalids;
use crate::http::reject::Reject;
use crate::http::response::Status;
use crate::log::{Fault, LogError};

/// The media type of every FHIR answer.
pub const FHIR_JSON: &[u8] = b"application/fhir+json";

/// The one answer to a record that is not there for the caller: unknown, of another
/// kind (on the FHIR read), or of a project it may not read. Alike in every case, so
/// a record's existence and kind do not leak.
pub const NO_SUCH_RECORD: &str = "no such record";

/// Declares the refusals that say a fixed message: the variant, its status, whether
/// it says when to retry, and the message (JSON-safe: no quotes or backslashes).
macro_rules! whys {
    ($($(#[$doc:meta])* $name:ident => $status:ident, $retry:literal, $message:expr;)*) => {
        /// A refusal with a fixed status and message.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum Why { $($(#[$doc])* $name,)* }

        impl Why {
            const fn describe(self) -> (Status, &'static str, bool) {
                match self { $(Why::$name => (Status::$status, $message, $retry),)* }
            }
        }
    };
}

whys! {
    /// `/readyz` before this shard can take writes, for no reason its log names.
    NotReady => ServiceUnavailable, true, "not ready";
    /// Any authenticated route while a shard still recovers its log.
    Recovering => ServiceUnavailable, true, "not ready: recovering the log";
    /// A handler panicked.
    Internal => InternalServerError, false, "internal error";
    RoleForbidden => Forbidden, false, "this principal's role may not use this endpoint";
    BadParam => BadRequest, false,
        "a path parameter has a malformed percent-escape or is not UTF-8";
    BadRecordId => BadRequest, false, "a record id is s<shard>-<sequence number>";
    NoSuchRecord => NotFound, false, NO_SUCH_RECORD;
    /// A stored record that cannot be read back.
    Unreadable => InternalServerError, false, "the record cannot be read";
    ReadForbidden => Forbidden, false, "this principal may not read this project";
    OthersPermissions => Forbidden, false, "only admin may read another user's permissions";
    NoSuchUser => NotFound, false, "no such user";
    NotJson => UnsupportedMediaType, false,
        "Content-Type must be application/json (with a charset, only UTF-8)";
    ReportForbidden => Forbidden, false, "this principal may not write to the report's projectId";
    TagForbidden => Forbidden, false, "this principal may not write to the tag's projectId";
    /// Body `submissionId` and `Idempotency-Key` header disagree.
    KeyMismatch => BadRequest, false, "submissionId and Idempotency-Key differ";
}

/// A FHIR endpoint's refusal about the resource: an `OperationOutcome` whose issue
/// names the element at fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resource {
    /// The request asks for a format other than FHIR JSON.
    NotAcceptable,
    MediaType,
    Forbidden,
    /// The log refused it (a retry helps unless the resource cannot be encoded).
    NotStored(LogError),
    NotFound,
    /// A shard that holds it cannot answer now.
    Unavailable(&'static str),
    Unreadable,
}

impl Resource {
    /// Status, the element at fault (FHIRPath; empty: none) and the diagnostics.
    fn describe(self) -> (Status, &'static str, &'static str) {
        const QR: &str = "QuestionnaireResponse";
        const NOT_FHIR_JSON: &str = "this server writes FHIR JSON only (application/fhir+json); ask for it in Accept or _format";
        const MEDIA_TYPE: &str = "Content-Type must be application/fhir+json or application/json (with a charset, only UTF-8)";
        const FORBIDDEN: &str = "this principal may not write to the resource's project (meta.tag)";
        match self {
            Resource::NotAcceptable => (Status::NotAcceptable, "", NOT_FHIR_JSON),
            Resource::MediaType => (Status::UnsupportedMediaType, QR, MEDIA_TYPE),
            Resource::Forbidden => (
                Status::Forbidden,
                "QuestionnaireResponse.meta.tag",
                FORBIDDEN,
            ),
            Resource::NotStored(_) => (
                Status::ServiceUnavailable,
                QR,
                "the resource cannot be stored now",
            ),
            Resource::NotFound => (Status::NotFound, QR, NO_SUCH_RECORD),
            Resource::Unavailable(why) => (Status::ServiceUnavailable, QR, why),
            Resource::Unreadable => (Status::InternalServerError, QR, "the record cannot be read"),
        }
    }
}

/// Why a request is refused. Each is rendered by [`refuse`] (or [`answer`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    Fixed(Why),
    /// Refused on the wire or by the route table ([`Reject`]).
    Reject(Reject),
    /// A known path, another method: the allowed ones' bit set, for `Allow`.
    MethodNotAllowed(u8),
    /// No bearer token, or one not known; `bearer`: a bearer token came.
    Unauthenticated {
        bearer: bool,
    },
    /// An `Idempotency-Key` that is not one, and why.
    BadKey(&'static str),
    /// A v1 body that breaks rules: every rule it breaks.
    Invalid(Invalids),
    /// A FHIR resource that breaks rules; its issues are listed from the body
    /// ([`answer`]).
    InvalidResource,
    /// The log cannot store the record now.
    Storage(LogError),
    /// An idempotency key reused with other bytes; `key_in_body`: the key was the
    /// body's `submissionId`.
    KeyConflict {
        key_in_body: bool,
    },
    /// `/readyz`: shard `shard` cannot take writes, `fault` why when its live segment is.
    NotReady {
        shard: usize,
        fault: Option<Fault>,
    },
    /// A shard cannot answer now: 503 with the mesh's message.
    Unavailable(&'static str),
    Resource(Resource),
}

impl Refusal {
    /// This refusal as the FHIR read says it: about the resource.
    pub fn about_resource(self) -> Refusal {
        match self {
            Refusal::Fixed(Why::NoSuchRecord) => Refusal::Resource(Resource::NotFound),
            Refusal::Fixed(Why::Unreadable) => Refusal::Resource(Resource::Unreadable),
            Refusal::Unavailable(why) => Refusal::Resource(Resource::Unavailable(why)),
            other => other,
        }
    }
}

/// How a caller is spoken to: by the path it asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    /// `{"error":"<message>"}`.
    V1,
    /// Under `/fhir`: an `OperationOutcome`.
    Fhir,
}

impl Dialect {
    pub fn of(path: &str) -> Dialect {
        let fhir = path == "/fhir" || path.starts_with("/fhir/") || path.starts_with("/fhir?");
        if fhir {
            Dialect::Fhir
        } else {
            Dialect::V1
        }
    }
}
