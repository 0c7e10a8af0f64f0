//! A routing tree built by the compiler: [`build`] is a `const fn`, so the tree is a
//! `const` value in the binary and a bad route table is a compile error, not a startup
//! failure.
//!
//! The tree is a radix tree whose alphabet is path segments: each node is one `/`-separated
//! segment, either static text or a `{name}` parameter. Static children are tried before
//! the parameter child, with backtracking, so `/a/b/c` and `/a/{x}/d` both match what they
//! should. Lookup walks the path once, allocates nothing and returns parameters as slices
//! of the path.
//!
//! Build-time errors (each a `panic!` in const evaluation, so `cargo build` fails):
//! a path not starting with `/`, an empty segment, a malformed `{param}`, two parameter
//! names at the same position, the same method and path twice, more than [`MAX_PARAMS`]
//! parameters, or more nodes than the capacity given.
//!
//! ```compile_fail
//! use epro_ingest::http::parse::Method;
//! use epro_ingest::route::tree::{build, capacity, Tree};
//! const DEFS: &[(Method, &str)] = &[(Method::Get, "/a/{x}"), (Method::Get, "/a/{x}")];
//! const T: Tree<{ capacity(DEFS) }> = build(DEFS); // the same route twice
//! ```
//!
//! ```compile_fail
//! use epro_ingest::http::parse::Method;
//! use epro_ingest::route::tree::{build, capacity, Tree};
//! const DEFS: &[(Method, &str)] = &[(Method::Get, "/a/{x}/b"), (Method::Post, "/a/{y}/c")];
//! const T: Tree<{ capacity(DEFS) }> = build(DEFS); // ambiguous parameter names
//! ```

mod compile;

use crate::http::parse::Method;

pub use compile::{build, capacity};

/// Most path parameters one route may have.
pub const MAX_PARAMS: usize = 4;
const NONE: u16 = u16::MAX;
const METHODS: usize = Method::ALL.len();

#[derive(Clone, Copy)]
struct Node {
    /// Static segment text; empty for a parameter node.
    label: &'static [u8],
    /// Parameter name of a parameter node.
    param: &'static str,
    /// First byte of `label` (0 if empty), checked before comparing whole labels.
    first: u8,
    /// Static children: while building, a list through `next_sibling`; once built,
    /// `child_count` nodes stored contiguously from `first_child` (breadth-first layout).
    first_child: u16,
    next_sibling: u16,
    child_count: u16,
    param_child: u16,
    /// Index into the route definitions, per method; `NONE` where not routed.
    routes: [u16; METHODS],
}

const EMPTY: Node = Node {
    label: b"",
    param: "",
    first: 0,
    first_child: NONE,
    next_sibling: NONE,
    child_count: 0,
    param_child: NONE,
    routes: [NONE; METHODS],
};

/// The compiled tree, with room for `N` nodes.
pub struct Tree<const N: usize> {
    nodes: [Node; N],
    /// First label byte of every node, by index: a node's children are a contiguous
    /// byte run here, scanned like matchit's `indices` before any label is compared.
    firsts: [u8; N],
}

/// Path parameters of a match, in path order, borrowed from the path.
#[derive(Clone, Copy, Debug, Default)]
pub struct Params<'p> {
    items: [(&'static str, &'p str); MAX_PARAMS],
    len: usize,
}

impl<'p> Params<'p> {
    pub fn get(&self, name: &str) -> Option<&'p str> {
        self.items[..self.len]
            .iter()
            .find(|(n, _)| *n == name)
            .map(|&(_, v)| v)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&'static str, &'p str)> + '_ {
        self.items[..self.len].iter().copied()
    }

    fn push(&mut self, name: &'static str, value: &'p str) {
        self.items[self.len] = (name, value);
        self.len += 1;
    }
}

/// What a lookup found.
#[derive(Debug)]
pub enum Lookup<'p> {
    /// Index of the matching definition, and the parameters.
    Found(usize, Params<'p>),
    /// The path exists; these methods (a bit per [`Method::ALL`] entry) are allowed.
    MethodNotAllowed(u8),
    NotFound,
}

impl<const N: usize> Tree<N> {
    /// Finds the route for `method` and `path` (the path without its query).
    ///
    /// A path that some route of `method` matches wins over one whose match routes
    /// other methods only (as in Gin's per-method trees): with `GET /u/me/{part}` and
    /// `DELETE /u/{id}/{part}`, `DELETE /u/me/x` finds the second.
    pub fn lookup<'p>(&self, method: Method, path: &'p str) -> Lookup<'p> {
        let Some(rest) = path.strip_prefix('/') else {
            return Lookup::NotFound;
        };
        if method != Method::Other {
            let m = method_index(method);
            let mut params = Params::default();
            if let Some(node) = self.find(0, rest, &mut params, Some(m)) {
                return Lookup::Found(self.nodes[node].routes[m] as usize, params);
            }
        }
        if self.find(0, rest, &mut Params::default(), None).is_none() {
            return Lookup::NotFound;
        }
        Lookup::MethodNotAllowed(self.allowed(rest))
    }

    /// For a 405: every method some route matches `rest` for. With overlapping routes
    /// (`GET /u/me/{part}`, `DELETE /u/{id}/{part}`) they sit at different leaves, so
    /// it asks per method. Kept out of line: only this rare path pays for it.
    #[cold]
    #[inline(never)]
    fn allowed(&self, rest: &str) -> u8 {
        let mut allowed = 0u8;
        for i in 0..METHODS {
            if self
                .find(0, rest, &mut Params::default(), Some(i))
                .is_some()
            {
                allowed |= 1 << i;
            }
        }
        allowed
    }

    /// Matches `rest` below `node`: the leaf reached, which routes `method` if given,
    /// any method otherwise. Static children are compared against the front of `rest`
    /// directly; only a parameter needs the segment's end found.
    fn find<'p>(
        &self,
        node: usize,
        rest: &'p str,
        params: &mut Params<'p>,
        method: Option<usize>,
    ) -> Option<usize> {
        if rest.is_empty() && node == 0 {
            return self.leaf(0, method);
        }
        let bytes = rest.as_bytes();
        let this = &self.nodes[node];
        if let (Some(&first), true) = (bytes.first(), this.child_count > 0) {
            let start = this.first_child as usize;
            let firsts = &self.firsts[start..start + this.child_count as usize];
            for (offset, _) in firsts.iter().enumerate().filter(|&(_, &b)| b == first) {
                let c = start + offset;
                let label = self.nodes[c].label;
                if bytes.len() < label.len() || &bytes[..label.len()] != label {
                    continue;
                }
                // A sibling label may be a prefix of this segment ("site" and "sites").
                let found = match bytes.get(label.len()) {
                    None => self.leaf(c, method),
                    Some(b'/') => self.find(c, &rest[label.len() + 1..], params, method),
                    Some(_) => continue,
                };
                if found.is_some() {
                    return found;
                }
                break;
            }
        }
        let param = this.param_child;
        if param == NONE {
            return None;
        }
        let (seg, tail) = match bytes.iter().position(|&b| b == b'/') {
            Some(i) => (&rest[..i], Some(&rest[i + 1..])),
            None => (rest, None),
        };
        if seg.is_empty() {
            return None;
        }
        let saved = params.len;
        params.push(self.nodes[param as usize].param, seg);
        let found = match tail {
            None => self.leaf(param as usize, method),
            Some(tail) => self.find(param as usize, tail, params, method),
        };
        if found.is_none() {
            params.len = saved;
        }
        found
    }

    fn leaf(&self, node: usize, method: Option<usize>) -> Option<usize> {
        let routes = &self.nodes[node].routes;
        let routed = match method {
            Some(m) => routes[m] != NONE,
            None => routes.iter().any(|&r| r != NONE),
        };
        routed.then_some(node)
    }
}

/// Writes the `Allow` header value for a method bit set (e.g. `GET, POST`) into `out`,
/// returning its length; 64 bytes hold every method.
pub fn allow_header(allowed: u8, out: &mut [u8; 64]) -> usize {
    let mut len = 0;
    for (i, m) in Method::ALL.iter().enumerate() {
        if allowed & (1 << i) != 0 {
            let sep: &[u8] = if len == 0 { b"" } else { b", " };
            for part in [sep, m.as_str().as_bytes()] {
                out[len..len + part.len()].copy_from_slice(part);
                len += part.len();
            }
        }
    }
    len
}

const fn method_index(method: Method) -> usize {
    match method {
        Method::Get => 0,
        Method::Head => 1,
        Method::Post => 2,
        Method::Put => 3,
        Method::Delete => 4,
        Method::Patch => 5,
        Method::Options => 6,
        Method::Other => panic!("routes must use a concrete method"),
    }
}
