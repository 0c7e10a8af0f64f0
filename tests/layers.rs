//! The layers of `src/`, as the code imports them: a module may use a room (a folder
//! or file directly under `src/`) on a lower floor than its own, or its own room, and
//! nothing else. So there is no import cycle between rooms, and a reader can learn a
//! room by reading only the rooms below it. `src/lib.rs` describes the floors.

#[path = "common/source.rs"]
mod source;

use source::rust_files;
use std::path::Path;

/// Each room and its floor, bottom up. Rooms on one floor do not import each other.
const FLOORS: &[(&str, u8)] = &[
    ("base", 0),
    ("http", 1),
    ("log", 2),
    ("domain", 3),
    ("route", 4),
    ("ship", 4),
    ("cli", 4),
    ("config", 5),
    ("metrics", 5),
    ("shard", 6),
    ("api", 7),
    ("net", 8),
    ("runtime", 9),
];

/// Files that sit above every room: the crate's page and the binaries.
const ABOVE_ALL: &[&str] = &["lib.rs", "main.rs", "bin"];

fn floor(room: &str) -> Option<u8> {
    FLOORS.iter().find(|(r, _)| *r == room).map(|&(_, f)| f)
}

/// Source text without comments (doc links do not import) and without string
/// literals' contents (a message may spell a path).
fn code_only(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '/' if chars.peek() == Some(&'/') => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        out.push('\n');
                        break;
                    }
                }
            }
            '/' if chars.peek() == Some(&'*') => {
                chars.next();
                let mut last = ' ';
                for c in chars.by_ref() {
                    if last == '*' && c == '/' {
                        break;
                    }
                    last = c;
                }
            }
            '"' => {
                let mut escaped = false;
                for c in chars.by_ref() {
                    if !escaped && c == '"' {
                        break;
                    }
                    escaped = !escaped && c == '\\';
                }
                out.push_str("\"\"");
            }
            _ => out.push(c),
        }
    }
    out
}

/// The rooms a file's code names: `crate::room` anywhere, and each name of a
/// `use crate::{a, b::c}` group.
fn imported_rooms(text: &str) -> Vec<String> {
    let code = code_only(text);
    let mut rooms = Vec::new();
    let mut rest = code.as_str();
    while let Some(at) = rest.find("crate::") {
        let before = rest[..at].chars().next_back();
        rest = &rest[at + "crate::".len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$') {
            continue;
        }
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                let name: String = item
                    .trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                rooms.push(name);
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            rooms.push(name);
        }
    }
    rooms.retain(|r| !r.is_empty());
    rooms
}

/// Every import of `file` (in `room`) that does not go down: `(file, room, target)`.
fn violations(file: &Path, room: &str, text: &str) -> Vec<String> {
    let own = floor(room);
    imported_rooms(text)
        .into_iter()
        .filter(|target| target != room)
        .filter_map(|target| match (own, floor(&target)) {
            (Some(own), Some(to)) if to < own => None,
            (_, None) => Some(format!(
                "{}: imports `crate::{target}`, a room with no floor in FLOORS",
                file.display()
            )),
            _ => Some(format!(
                "{} ({room}) imports `crate::{target}`, on the same floor or above",
                file.display()
            )),
        })
        .collect()
}

#[test]
fn every_room_imports_only_rooms_below_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut wrong = Vec::new();
    let mut rooms_seen = std::collections::BTreeSet::new();
    for file in &files {
        let inside = file.strip_prefix(&src).unwrap();
        let first = inside.components().next().unwrap().as_os_str();
        let first = first.to_str().unwrap();
        if ABOVE_ALL.contains(&first) {
            continue;
        }
        let room = first.trim_end_matches(".rs");
        rooms_seen.insert(room.to_string());
        if floor(room).is_none() {
            wrong.push(format!("{}: room `{room}` has no floor", file.display()));
            continue;
        }
        let text = std::fs::read_to_string(file).unwrap();
        wrong.extend(violations(inside, room, &text));
    }
    assert!(
        wrong.is_empty(),
        "imports that do not go down:\n{}",
        wrong.join("\n")
    );
    // A floor for a room that is gone is a stale map.
    for (room, _) in FLOORS {
        assert!(
            rooms_seen.contains(*room),
            "FLOORS names `{room}`, not in src/"
        );
    }
    assert!(files.len() > 50, "read only {} files", files.len());
}

/// The checker itself: an upward import is found whatever its spelling, and
/// comments, strings and longer names are not imports.
#[test]
fn the_checker_finds_upward_imports_and_only_them() {
    let file = Path::new("log/example.rs");
    let cases: &[(&str, usize)] = &[
        ("use crate::api::handlers;", 1),
        ("use crate::{base::clock, shard::context::Context};", 1),
        ("fn f() { crate::runtime::server::run() }", 1),
        ("use crate::base::clock;\nuse crate::log::record;", 0),
        (
            "//! see [`crate::api`]\n/* crate::net */ let s = \"crate::shard\";",
            0,
        ),
        ("let x = other_crate::api::y; $crate::base::f();", 0),
        ("use crate::nowhere::thing;", 1),
    ];
    for &(text, expect) in cases {
        let found = violations(file, "log", text);
        assert_eq!(found.len(), expect, "{text:?}: {found:?}");
    }
}
