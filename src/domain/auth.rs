//! Who is calling and what they may do: principals and their roles (from the config
//! file), bearer-token authentication in constant time, project scope, and the
//! permissions endpoint's bodies. Pure data and functions: the onion
//! ([`crate::api::middleware`]) applies them, the route table says which roles each route
//! needs, and the axum baseline reuses them as they are.

use serde::Deserialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Device,
    Staff,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Device => "device",
            Role::Staff => "staff",
            Role::Admin => "admin",
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Principal {
    pub id: String,
    pub token: String,
    pub role: Role,
    #[serde(default)]
    pub projects: Vec<String>,
    /// Requests a second this principal may make, whichever shards they reach
    /// (default: `[limits] default_rate_per_second`, else unlimited).
    #[serde(default)]
    pub rate_per_second: Option<f64>,
    /// Requests it may make at once beyond the rate (default: `[limits] default_burst`,
    /// else one second's worth).
    #[serde(default)]
    pub burst: Option<u32>,
}

impl Principal {
    /// Whether this principal may act on `project`.
    pub fn may_access(&self, project: &str) -> bool {
        self.role == Role::Admin || self.projects.iter().any(|p| p == "*" || p == project)
    }

    /// The permissions endpoint's body for this principal.
    pub fn permissions_json(&self) -> serde_json::Value {
        serde_json::json!({"userId": self.id, "role": self.role.as_str(), "projects": self.projects})
    }
}

/// The configured principals, with each one's permissions body encoded once: they do
/// not change while the server runs.
pub struct Principals {
    list: Vec<Principal>,
    permission_bodies: Vec<Vec<u8>>,
}

impl Principals {
    pub fn new(list: Vec<Principal>) -> Self {
        let permission_bodies = list
            .iter()
            .map(|p| p.permissions_json().to_string().into_bytes())
            .collect();
        Principals {
            list,
            permission_bodies,
        }
    }

    /// The principal whose token an `Authorization: Bearer` value carries.
    pub fn authenticate(&self, authorization: Option<&[u8]>) -> Option<&Principal> {
        authenticate(&self.list, authorization)
    }

    /// The position of `principal` (one of these) in the list, which the rate limiter
    /// indexes by.
    pub fn index_of(&self, principal: &Principal) -> usize {
        self.list
            .iter()
            .position(|p| std::ptr::eq(p, principal))
            .unwrap_or(usize::MAX)
    }

    /// Principal `id`.
    pub fn find(&self, id: &str) -> Option<&Principal> {
        self.list.iter().find(|p| p.id == id)
    }

    /// The encoded permissions body of principal `id`.
    pub fn permissions_body(&self, id: &str) -> Option<&[u8]> {
        let i = self.list.iter().position(|p| p.id == id)?;
        Some(&self.permission_bodies[i])
    }
}

/// The principal of `principals` whose token the `Authorization: Bearer` value carries.
/// Every principal's token is compared in full, so timing reveals nothing of the tokens.
pub fn authenticate<'p>(
    principals: &'p [Principal],
    authorization: Option<&[u8]>,
) -> Option<&'p Principal> {
    let value = authorization?;
    if value.len() < 7 || !value[..7].eq_ignore_ascii_case(b"bearer ") {
        return None;
    }
    let token = &value[7..];
    let mut found = None;
    for principal in principals {
        if constant_time_eq(token, principal.token.as_bytes()) {
            found = Some(principal);
        }
    }
    found
}

/// Equality whose time depends only on the lengths, never on where bytes differ.
fn constant_time_eq(presented: &[u8], secret: &[u8]) -> bool {
    let mut diff = presented.len() ^ secret.len();
    for (i, &b) in presented.iter().enumerate() {
        diff |= usize::from(b ^ secret.get(i).copied().unwrap_or(!b));
    }
    diff == 0
}
