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

use crate::http::parse::Method;

/// Most path parameters one route may have.
pub const MAX_PARAMS: usize = 4;
const NONE: u16 = u16::MAX;
const METHODS: usize = Method::ALL.len();

#[derive(Clone, Copy)]
struct Node {
    /// Static segment text, or the parameter name of a parameter node.
    label: &'static [u8],
    first_child: u16,
    next_sibling: u16,
    param_child: u16,
    /// Index into the route definitions, per method; `NONE` where not routed.
    routes: [u16; METHODS],
}

const EMPTY: Node = Node {
    label: b"",
    first_child: NONE,
    next_sibling: NONE,
    param_child: NONE,
    routes: [NONE; METHODS],
};

/// The compiled tree, with room for `N` nodes.
pub struct Tree<const N: usize> {
    nodes: [Node; N],
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

    fn push(&mut self, name: &'static [u8], value: &'p str) {
        // Names were checked to be ASCII identifiers at build time.
        let name = std::str::from_utf8(name).unwrap_or("");
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

/// Nodes needed for `defs`: one per segment at most, plus the root.
pub const fn capacity(defs: &[(Method, &str)]) -> usize {
    let mut n = 1;
    let mut i = 0;
    while i < defs.len() {
        let path = defs[i].1.as_bytes();
        let mut j = 0;
        while j < path.len() {
            if path[j] == b'/' {
                n += 1;
            }
            j += 1;
        }
        i += 1;
    }
    n
}

/// Builds the tree for `defs` at compile time.
pub const fn build<const N: usize>(defs: &[(Method, &'static str)]) -> Tree<N> {
    let mut nodes = [EMPTY; N];
    let mut len = 1;
    let mut d = 0;
    while d < defs.len() {
        let (method, path) = defs[d];
        let path = path.as_bytes();
        if path.is_empty() || path[0] != b'/' {
            panic!("route path must start with '/'");
        }
        let mut node = 0;
        let mut params = 0;
        let mut start = 1;
        // "/" alone is the root; otherwise every '/'-separated segment is a node.
        while path.len() > 1 && start <= path.len() {
            let end = segment_end(path, start);
            let seg = slice(path, start, end);
            if seg.is_empty() {
                panic!("route path has an empty segment");
            }
            if seg[0] == b'{' {
                let name = param_name(seg);
                params += 1;
                if params > MAX_PARAMS {
                    panic!("route has more than MAX_PARAMS parameters");
                }
                let child = nodes[node].param_child;
                if child == NONE {
                    if len >= N {
                        panic!("route tree capacity exceeded");
                    }
                    nodes[len].label = name;
                    nodes[node].param_child = len as u16;
                    node = len;
                    len += 1;
                } else if !bytes_eq(nodes[child as usize].label, name) {
                    panic!("two parameter names at the same position");
                } else {
                    node = child as usize;
                }
            } else {
                check_static(seg);
                let mut child = nodes[node].first_child;
                let mut last = NONE;
                while child != NONE && !bytes_eq(nodes[child as usize].label, seg) {
                    last = child;
                    child = nodes[child as usize].next_sibling;
                }
                if child == NONE {
                    if len >= N {
                        panic!("route tree capacity exceeded");
                    }
                    nodes[len].label = seg;
                    if last == NONE {
                        nodes[node].first_child = len as u16;
                    } else {
                        nodes[last as usize].next_sibling = len as u16;
                    }
                    child = len as u16;
                    len += 1;
                }
                node = child as usize;
            }
            start = end + 1;
        }
        let m = method_index(method);
        if nodes[node].routes[m] != NONE {
            panic!("the same method and path are routed twice");
        }
        nodes[node].routes[m] = d as u16;
        d += 1;
    }
    Tree { nodes }
}

impl<const N: usize> Tree<N> {
    /// Finds the route for `method` and `path` (the path without its query).
    pub fn lookup<'p>(&self, method: Method, path: &'p str) -> Lookup<'p> {
        let Some(rest) = path.strip_prefix('/') else {
            return Lookup::NotFound;
        };
        let mut params = Params::default();
        let node = if rest.is_empty() {
            Some(0)
        } else {
            self.find(0, rest, &mut params)
        };
        let Some(node) = node else {
            return Lookup::NotFound;
        };
        let routes = &self.nodes[node].routes;
        if method != Method::Other {
            let route = routes[method_index(method)];
            if route != NONE {
                return Lookup::Found(route as usize, params);
            }
        }
        let mut allowed = 0u8;
        for (i, &r) in routes.iter().enumerate() {
            if r != NONE {
                allowed |= 1 << i;
            }
        }
        if allowed == 0 {
            Lookup::NotFound
        } else {
            Lookup::MethodNotAllowed(allowed)
        }
    }

    /// Matches `rest` (the path after the `/` that leads to `node`'s children).
    fn find<'p>(&self, node: usize, rest: &'p str, params: &mut Params<'p>) -> Option<usize> {
        let (seg, tail) = match rest.find('/') {
            Some(i) => (&rest[..i], Some(&rest[i + 1..])),
            None => (rest, None),
        };
        let mut child = self.nodes[node].first_child;
        while child != NONE {
            let c = child as usize;
            if self.nodes[c].label == seg.as_bytes() {
                if let Some(found) = self.descend(c, tail, params) {
                    return Some(found);
                }
                break;
            }
            child = self.nodes[c].next_sibling;
        }
        let param = self.nodes[node].param_child;
        if param != NONE && !seg.is_empty() {
            let saved = *params;
            params.push(self.nodes[param as usize].label, seg);
            if let Some(found) = self.descend(param as usize, tail, params) {
                return Some(found);
            }
            *params = saved;
        }
        None
    }

    fn descend<'p>(
        &self,
        node: usize,
        tail: Option<&'p str>,
        params: &mut Params<'p>,
    ) -> Option<usize> {
        match tail {
            None => Some(node).filter(|&n| self.nodes[n].routes != [NONE; METHODS]),
            Some(rest) => self.find(node, rest, params),
        }
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

const fn segment_end(path: &[u8], start: usize) -> usize {
    let mut i = start;
    while i < path.len() && path[i] != b'/' {
        i += 1;
    }
    i
}

const fn slice(bytes: &'static [u8], start: usize, end: usize) -> &'static [u8] {
    let (head, _) = bytes.split_at(end);
    let (_, mid) = head.split_at(start);
    mid
}

/// `{name}` with `name` an ASCII identifier; returns `name`.
const fn param_name(seg: &'static [u8]) -> &'static [u8] {
    let n = seg.len();
    if n < 3 || seg[n - 1] != b'}' {
        panic!("malformed route parameter; expected {{name}}");
    }
    let name = slice(seg, 1, n - 1);
    let mut i = 0;
    while i < name.len() {
        let b = name[i];
        if !(b.is_ascii_alphanumeric() || b == b'_') {
            panic!("route parameter names are ASCII letters, digits and '_'");
        }
        i += 1;
    }
    name
}

const fn check_static(seg: &[u8]) {
    let mut i = 0;
    while i < seg.len() {
        if seg[i] == b'{' || seg[i] == b'}' {
            panic!("'{{' or '}}' inside a static route segment");
        }
        i += 1;
    }
}

const fn bytes_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}
