//! The compile-time half of the tree: [`build`] lays the route definitions out as
//! nodes in a `const fn`, refusing a bad table with a `panic!` the compiler reports.

use super::{method_index, Node, Tree, EMPTY, MAX_PARAMS, NONE};
use crate::http::parse::Method;

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
    use crate::route::tree::Lookup;

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
