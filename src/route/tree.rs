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
            node = if seg[0] == b'{' {
                params += 1;
                if params > MAX_PARAMS {
                    panic!("route has more than MAX_PARAMS parameters");
                }
                param_child(&mut nodes, &mut len, node, param_name(seg))
            } else {
                check_static(seg);
                static_child(&mut nodes, &mut len, node, seg)
            };
            start = end + 1;
        }
        let m = method_index(method);
        if nodes[node].routes[m] != NONE {
            panic!("the same method and path are routed twice");
        }
        nodes[node].routes[m] = d as u16;
        d += 1;
    }
    let nodes = breadth_first(&nodes, len);
    let mut firsts = [0u8; N];
    let mut i = 0;
    while i < len {
        firsts[i] = nodes[i].first;
        i += 1;
    }
    Tree { nodes, firsts }
}

/// The child of `node` for the parameter `name`, added as node `*len` if new.
const fn param_child<const N: usize>(
    nodes: &mut [Node; N],
    len: &mut usize,
    node: usize,
    name: &'static str,
) -> usize {
    let child = nodes[node].param_child;
    if child != NONE {
        if !bytes_eq(nodes[child as usize].param.as_bytes(), name.as_bytes()) {
            panic!("two parameter names at the same position");
        }
        return child as usize;
    }
    if *len >= N {
        panic!("route tree capacity exceeded");
    }
    nodes[*len].param = name;
    nodes[node].param_child = *len as u16;
    *len += 1;
    *len - 1
}

/// The static child of `node` labelled `seg`, added as node `*len` (the last of its
/// siblings) if new.
const fn static_child<const N: usize>(
    nodes: &mut [Node; N],
    len: &mut usize,
    node: usize,
    seg: &'static [u8],
) -> usize {
    let mut child = nodes[node].first_child;
    let mut last = NONE;
    while child != NONE && !bytes_eq(nodes[child as usize].label, seg) {
        last = child;
        child = nodes[child as usize].next_sibling;
    }
    if child != NONE {
        return child as usize;
    }
    if *len >= N {
        panic!("route tree capacity exceeded");
    }
    nodes[*len].label = seg;
    if last == NONE {
        nodes[node].first_child = *len as u16;
    } else {
        nodes[last as usize].next_sibling = *len as u16;
    }
    *len += 1;
    *len - 1
}

/// Re-lays the first `len` nodes breadth-first, so every node's static children are
/// contiguous and a lookup scans them in one run of memory.
const fn breadth_first<const N: usize>(nodes: &[Node; N], len: usize) -> [Node; N] {
    let mut order = [0u16; N]; // new index -> old index
    let mut new_index = [NONE; N]; // old index -> new index
    let mut tail = 1;
    let mut head = 0;
    while head < tail {
        let old = order[head] as usize;
        let mut child = nodes[old].first_child;
        while child != NONE {
            order[tail] = child;
            new_index[child as usize] = tail as u16;
            tail += 1;
            child = nodes[child as usize].next_sibling;
        }
        let param = nodes[old].param_child;
        if param != NONE {
            order[tail] = param;
            new_index[param as usize] = tail as u16;
            tail += 1;
        }
        head += 1;
    }
    if tail != len {
        panic!("route tree layout lost nodes");
    }
    let mut out = [EMPTY; N];
    let mut i = 0;
    while i < len {
        let node = nodes[order[i] as usize];
        let mut count = 0;
        let mut child = node.first_child;
        while child != NONE {
            count += 1;
            child = nodes[child as usize].next_sibling;
        }
        out[i] = Node {
            first: if node.label.is_empty() {
                0
            } else {
                node.label[0]
            },
            first_child: if node.first_child == NONE {
                NONE
            } else {
                new_index[node.first_child as usize]
            },
            next_sibling: NONE,
            child_count: count,
            param_child: if node.param_child == NONE {
                NONE
            } else {
                new_index[node.param_child as usize]
            },
            ..node
        };
        i += 1;
    }
    out
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
const fn param_name(seg: &'static [u8]) -> &'static str {
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
    match std::str::from_utf8(name) {
        Ok(name) => name,
        Err(_) => panic!("route parameter names are ASCII"),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn siblings_and_parameters_each_find_their_route() {
        let defs = [
            (Method::Get, "/a/b"),
            (Method::Get, "/a/c"),
            (Method::Get, "/a/{id}"),
            (Method::Post, "/a/c"),
        ];
        let tree: Tree<8> = build(&defs);
        for (path, want) in [("/a/b", 0), ("/a/c", 1), ("/a/x", 2)] {
            match tree.lookup(Method::Get, path) {
                Lookup::Found(i, _) => assert_eq!(i, want, "{path}"),
                other => panic!("{path}: {other:?}"),
            }
        }
        assert!(matches!(
            tree.lookup(Method::Post, "/a/c"),
            Lookup::Found(3, _)
        ));
    }

    #[test]
    #[should_panic(expected = "two parameter names at the same position")]
    fn two_parameter_names_at_one_position_are_refused() {
        let _: Tree<8> = build(&[(Method::Get, "/a/{x}"), (Method::Post, "/a/{y}")]);
    }

    #[test]
    #[should_panic(expected = "routed twice")]
    fn a_route_declared_twice_is_refused() {
        let _: Tree<8> = build(&[(Method::Get, "/a/b"), (Method::Get, "/a/b")]);
    }

    #[test]
    #[should_panic(expected = "capacity exceeded")]
    fn a_tree_too_small_is_refused() {
        let _: Tree<2> = build(&[(Method::Get, "/a/b")]);
    }
}
