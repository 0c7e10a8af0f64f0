//! The shape of `src/` that `src/lib.rs` promises: a handful of loose files beside the
//! rooms, and functions short enough to read in one screen (at most 60 lines, so a
//! request can be followed by named steps). The baselines in `src/bin/` are rivals
//! written the way their frameworks' guides write them, so they are not held to it.

#[path = "common/source.rs"]
mod source;

use source::rust_files;
use std::path::{Path, PathBuf};

const LONGEST: usize = 60;
const LOOSE_FILES: usize = 6;

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// The name of the function a line starts, if it starts one.
fn fn_name(line: &str) -> Option<&str> {
    let mut rest = line.trim_start();
    if rest.starts_with("pub(") {
        rest = rest[rest.find(')')? + 1..].trim_start();
    }
    for word in ["pub ", "const ", "async ", "unsafe ", "extern \"C\" "] {
        if let Some(r) = rest.strip_prefix(word) {
            rest = r.trim_start();
        }
    }
    let name = rest.strip_prefix("fn ")?;
    let end = name.find(|c: char| !(c.is_alphanumeric() || c == '_'))?;
    Some(&name[..end])
}

/// The last line of the item starting at line `start`: its own line when it ends with
/// `;`, else the line holding only `}` at its indentation.
fn end_of_item(lines: &[&str], start: usize) -> usize {
    let Some(first) = lines.get(start) else {
        return start;
    };
    if first.trim_end().ends_with(';') {
        return start;
    }
    let indent = &first[..first.len() - first.trim_start().len()];
    (start..lines.len())
        .find(|&j| lines[j] == format!("{indent}}}"))
        .unwrap_or(lines.len() - 1)
}

/// Every function outside `#[cfg(test)]` code with its first line and length in
/// lines, signature to closing brace. rustfmt's layout makes this exact: a body
/// closes on a line holding only `}` at the signature's indentation.
fn functions(text: &str) -> Vec<(String, usize, usize)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut found = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        if line.trim_start().starts_with("#[cfg(test)]") {
            i = end_of_item(&lines, i + 1) + 1; // unit tests are not held to it
            continue;
        }
        let Some(name) = fn_name(line) else {
            i += 1;
            continue;
        };
        let indent = &line[..line.len() - line.trim_start().len()];
        let mut open = i;
        while open < lines.len() && !lines[open].trim_end().ends_with('{') {
            if lines[open].trim_end().ends_with(';') {
                break; // a declaration without a body
            }
            open += 1;
        }
        if open == lines.len() || !lines[open].trim_end().ends_with('{') {
            i = open + 1;
            continue;
        }
        let close = (open..lines.len())
            .find(|&j| lines[j] == format!("{indent}}}"))
            .unwrap_or(lines.len() - 1);
        found.push((name.to_string(), i + 1, close - i + 1));
        i += 1; // nested functions are measured too
    }
    found
}

#[test]
fn no_function_in_src_is_longer_than_a_screen() {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let mut long = Vec::new();
    for file in files.iter().filter(|f| !f.starts_with(src().join("bin"))) {
        let text = std::fs::read_to_string(file).unwrap();
        for (name, line, length) in functions(&text) {
            if length > LONGEST {
                let at = file.strip_prefix(src()).unwrap().display();
                long.push(format!("src/{at}:{line} {name}: {length} lines"));
            }
        }
    }
    assert!(
        long.is_empty(),
        "functions over {LONGEST} lines:\n{}",
        long.join("\n")
    );
}

#[test]
fn src_holds_at_most_six_loose_files() {
    let loose: Vec<_> = std::fs::read_dir(src())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    assert!(loose.len() <= LOOSE_FILES, "{loose:?}");
}

#[test]
fn the_measure_counts_signature_to_closing_brace_and_skips_unit_tests() {
    let body = "        x += 1;\n".repeat(3);
    let text = format!(
        "pub(crate) async fn outer(\n    a: u8,\n) -> u8 {{\n    fn inner() {{\n{body}    }}\n    a\n}}\n\
         fn declared();\n\
         #[cfg(test)]\nfn helper() {{\n}}\nfn after() {{\n}}\n\
         #[cfg(test)]\nmod tests {{\n    fn ignored() {{\n    }}\n}}\n"
    );
    assert_eq!(
        functions(&text),
        vec![
            ("outer".to_string(), 1, 10),
            ("inner".to_string(), 4, 5),
            ("after".to_string(), 15, 2)
        ]
    );
}
