//! The structure of the source, checked from the source itself (issue 25):
//! no import circle between files; the decider names no actor, runtime or
//! store handle; the store imports no actor, engine, configuration or HTTP
//! module; the HTTP edge imports no module that writes the store.
//!
//! How: every file under `src/` is read; comments and string literals are
//! blanked; every path it names (`crate::…`, `super::…`, `self::…`, its own
//! child modules, `creditd::…` in `main.rs`, with `use` groups expanded) is
//! resolved to the file of the deepest module it names. A file's use of a
//! module it is inside of (its parent's `mod.rs`, `lib.rs`) is its own
//! namespace, not a dependency; every other use is an edge. Circles are the
//! strongly connected components of more than one file.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A source file and the module path it defines (`main.rs` is its own crate).
struct Source {
    file: String,
    module: Vec<String>,
    code: String,
}

fn sources() -> Vec<Source> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("reads src") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|ext| ext == "rs") {
                out.push(path);
            }
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    walk(&root, &mut files);
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let relative = path.strip_prefix(&root).expect("under src").to_string_lossy().replace('\\', "/");
            let mut module: Vec<String> = relative.trim_end_matches(".rs").split('/').map(str::to_owned).collect();
            if matches!(module.last().map(String::as_str), Some("mod" | "lib")) {
                module.pop();
            }
            if relative == "main.rs" {
                module = vec!["<main>".to_owned()];
            }
            let code = without_tests(&blank(&std::fs::read_to_string(&path).expect("reads")));
            Source { file: relative, module, code }
        })
        .collect()
}

/// The code with comments and string and char literals replaced by spaces.
fn blank(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                out.push(' ');
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            while i < chars.len() && !(chars[i] == '*' && chars.get(i + 1) == Some(&'/')) {
                out.push(if chars[i] == '\n' { '\n' } else { ' ' });
                i += 1;
            }
            i += 2;
        } else if c == 'r'
            && (next == Some('"') || next == Some('#'))
            && !chars.get(i.wrapping_sub(1)).is_some_and(|p| p.is_alphanumeric() || *p == '_')
        {
            // A raw string: r"…" or r#"…"#.
            let mut j = i + 1;
            let mut hashes = 0;
            while chars.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if chars.get(j) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            j += 1;
            loop {
                if j >= chars.len() {
                    break;
                }
                if chars[j] == '"' && (0..hashes).all(|k| chars.get(j + 1 + k) == Some(&'#')) {
                    j += 1 + hashes;
                    break;
                }
                j += 1;
            }
            out.extend(std::iter::repeat_n(' ', j - i));
            i = j;
        } else if c == '"' {
            out.push(' ');
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' {
                    out.push(' ');
                    i += 1;
                }
                out.push(if chars.get(i) == Some(&'\n') { '\n' } else { ' ' });
                i += 1;
            }
            out.push(' ');
            i += 1;
        } else if c == '\'' && chars.get(i + 2) == Some(&'\'') {
            out.push_str("   ");
            i += 3;
        } else if c == '\'' && next == Some('\\') {
            while i < chars.len() && !(chars[i] == '\'' && i > 0 && chars[i - 1] != '\\' && out.ends_with(' ')) {
                out.push(' ');
                i += 1;
                if chars.get(i) == Some(&'\'') {
                    break;
                }
            }
            out.push(' ');
            i += 1;
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// The code without its `#[cfg(test)] mod … { … }` blocks: a unit test may
/// use what its file's users use, and is not a dependency of the file.
fn without_tests(code: &str) -> String {
    let mut out = code.to_owned();
    let mut from = 0;
    while let Some(at) = out[from..].find("#[cfg(test)]").map(|at| at + from) {
        let after = out[at + 12..].trim_start();
        if !(after.starts_with("mod ") || after.starts_with("pub mod ")) {
            from = at + 12;
            continue;
        }
        let Some(open) = out[at..].find(['{', ';']).map(|open| at + open) else { break };
        if out.as_bytes()[open] == b';' {
            from = open;
            continue;
        }
        let mut depth = 0;
        let mut end = open;
        for (i, c) in out[open..].char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = open + i + 1;
                        break;
                    }
                }
                _ => {}
            }
        }
        let blanked: String = out[at..end].chars().map(|c| if c == '\n' { c } else { ' ' }).collect();
        out.replace_range(at..end, &blanked);
        from = end;
    }
    out
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Expands a `use` tree (`a::{b, c::{d, e}}`) into its paths.
fn expand(tree: &str) -> Vec<Vec<String>> {
    let tree: String = tree.chars().filter(|c| !c.is_whitespace()).collect();
    fn go(prefix: &[String], tree: &str, out: &mut Vec<Vec<String>>) {
        // Split on top-level commas.
        let mut depth = 0;
        let mut start = 0;
        let mut parts = Vec::new();
        for (i, c) in tree.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    parts.push(&tree[start..i]);
                    start = i + 1;
                }
                _ => {}
            }
        }
        parts.push(&tree[start..]);
        for part in parts.into_iter().filter(|part| !part.is_empty()) {
            if let Some(open) = part.find('{') {
                let head = part[..open].trim_end_matches("::");
                let mut next = prefix.to_vec();
                next.extend(head.split("::").filter(|s| !s.is_empty()).map(str::to_owned));
                go(&next, &part[open + 1..part.len() - 1], out);
            } else {
                let part = part.split(" as ").next().unwrap_or(part);
                let part = part.split("as").next().unwrap_or(part);
                let mut path = prefix.to_vec();
                path.extend(part.split("::").filter(|s| !s.is_empty() && *s != "*").map(str::to_owned));
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    go(&[], &tree, &mut out);
    out
}

/// Every path a file names: from its `use` items (expanded) and from the code.
fn paths(code: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("use ") {
        let before = rest[..at].chars().last();
        let after = &rest[at + 4..];
        if before.is_none_or(|c| !is_ident(c)) {
            if let Some(end) = after.find(';') {
                out.extend(expand(&after[..end]));
            }
        }
        rest = after;
    }
    let chars: Vec<char> = code.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        if is_ident(chars[i]) && (i == 0 || !(is_ident(chars[i - 1]) || chars[i - 1] == ':')) {
            let start = i;
            let mut segments = Vec::new();
            loop {
                let seg_start = i;
                while i < chars.len() && is_ident(chars[i]) {
                    i += 1;
                }
                segments.push(chars[seg_start..i].iter().collect::<String>());
                if chars.get(i) == Some(&':')
                    && chars.get(i + 1) == Some(&':')
                    && chars.get(i + 2).is_some_and(|c| is_ident(*c))
                {
                    i += 2;
                } else {
                    break;
                }
            }
            if segments.len() > 1 && i > start {
                out.push(segments);
            }
        } else {
            i += 1;
        }
    }
    out
}

struct Tree {
    /// Module path → file.
    files: BTreeMap<Vec<String>, String>,
}

impl Tree {
    /// The file of the deepest module that `path` names, from `module` (the naming file's module).
    fn resolve(&self, module: &[String], path: &[String], children: &BTreeSet<String>) -> Option<String> {
        let mut absolute: Vec<String> = match path.first().map(String::as_str) {
            Some("crate" | "creditd") => Vec::new(),
            Some("super" | "self") => module.to_vec(),
            Some(first) if children.contains(first) => module.to_vec(),
            _ => return None,
        };
        let mut segments = path.iter().peekable();
        if matches!(path.first().map(String::as_str), Some("crate" | "creditd" | "self")) {
            segments.next();
        }
        while segments.peek().map(|s| s.as_str()) == Some("super") {
            segments.next();
            absolute.pop();
        }
        let mut found = self.files.get(&absolute).cloned();
        for segment in segments {
            absolute.push(segment.clone());
            match self.files.get(&absolute) {
                Some(file) => found = Some(file.clone()),
                None => break,
            }
        }
        found
    }
}

/// Each file's dependencies on other files (its ancestors' files excluded).
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let sources = sources();
    let tree = Tree {
        files: sources.iter().filter(|s| s.file != "main.rs").map(|s| (s.module.clone(), s.file.clone())).collect(),
    };
    let mut graph = BTreeMap::new();
    for source in &sources {
        let module: Vec<String> = if source.file == "main.rs" { Vec::new() } else { source.module.clone() };
        let children: BTreeSet<String> = tree
            .files
            .keys()
            .filter(|other| other.len() == module.len() + 1 && other.starts_with(&module))
            .filter_map(|other| other.last().cloned())
            .collect();
        let ancestors: BTreeSet<String> =
            (0..module.len()).filter_map(|depth| tree.files.get(&module[..depth]).cloned()).collect();
        let mut edges = BTreeSet::new();
        for path in paths(&source.code) {
            if let Some(file) = tree.resolve(&module, &path, &children) {
                if file != source.file && !ancestors.contains(&file) {
                    edges.insert(file);
                }
            }
        }
        graph.insert(source.file.clone(), edges);
    }
    graph
}

/// The strongly connected components of more than one file (Tarjan).
fn circles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct State<'a> {
        graph: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        next: usize,
        found: Vec<Vec<String>>,
    }
    fn visit<'a>(state: &mut State<'a>, node: &'a str) {
        state.index.insert(node, state.next);
        state.low.insert(node, state.next);
        state.next += 1;
        state.stack.push(node);
        state.on_stack.insert(node);
        for next in state.graph.get(node).into_iter().flatten() {
            let next = next.as_str();
            if !state.index.contains_key(next) {
                visit(state, next);
                let low = state.low[node].min(state.low[next]);
                state.low.insert(node, low);
            } else if state.on_stack.contains(next) {
                let low = state.low[node].min(state.index[next]);
                state.low.insert(node, low);
            }
        }
        if state.low[node] == state.index[node] {
            let mut component = Vec::new();
            while let Some(top) = state.stack.pop() {
                state.on_stack.remove(top);
                component.push(top.to_owned());
                if top == node {
                    break;
                }
            }
            if component.len() > 1 {
                component.sort();
                state.found.push(component);
            }
        }
    }
    let mut state = State {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        next: 0,
        found: Vec::new(),
    };
    for node in graph.keys() {
        if !state.index.contains_key(node.as_str()) {
            visit(&mut state, node);
        }
    }
    state.found
}

#[test]
fn no_file_imports_itself_through_others() {
    let graph = graph();
    let found = circles(&graph);
    let described: Vec<String> = found
        .iter()
        .map(|component| {
            let members: BTreeSet<&String> = component.iter().collect();
            let edges: Vec<String> = component
                .iter()
                .flat_map(|from| {
                    graph[from].iter().filter(|to| members.contains(to)).map(move |to| format!("{from} → {to}"))
                })
                .collect();
            edges.join(", ")
        })
        .collect();
    assert!(found.is_empty(), "import circles:\n{}", described.join("\n"));
}

/// The paths a file names that start with one of `forbidden` (as files), and the words it uses from `words`.
fn offences(file: &str, graph: &BTreeMap<String, BTreeSet<String>>, forbidden: &[&str], words: &[&str]) -> Vec<String> {
    let mut found: Vec<String> = graph[file]
        .iter()
        .filter(|to| forbidden.iter().any(|prefix| to.starts_with(prefix)))
        .map(|to| format!("{file} → {to}"))
        .collect();
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("src").join(file);
    let code = without_tests(&blank(&std::fs::read_to_string(path).expect("reads")));
    for word in words {
        let named = code.match_indices(word).any(|(at, _)| {
            let before = code[..at].chars().last();
            let after = code[at + word.len()..].chars().next();
            before.is_none_or(|c| !is_ident(c)) && after.is_none_or(|c| !is_ident(c))
        });
        if named {
            found.push(format!("{file} names `{word}`"));
        }
    }
    found
}

#[test]
fn the_decider_names_no_actor_runtime_or_store_handle() {
    let graph = graph();
    let forbidden = [
        "actors/",
        "engine/",
        "http/",
        "config.rs",
        "cluster.rs",
        "store/mod.rs",
        "store/sled.rs",
        "store/postgres/",
        "store/keys.rs",
        "store/codec.rs",
        "store/commit.rs",
        "store/journal.rs",
    ];
    let words =
        ["actix", "tokio", "sled", "tokio_postgres", "Store", "StoreError", "SledStore", "PgStore", "Addr", "Context"];
    // Its unit tests (`decide/tests.rs`) build the rules from the configuration's defaults.
    let decider: Vec<&String> =
        graph.keys().filter(|file| file.starts_with("decide/") && !file.ends_with("/tests.rs")).collect();
    assert!(decider.len() >= 5, "the decider's files: {decider:?}");
    let found: Vec<String> = decider.iter().flat_map(|file| offences(file, &graph, &forbidden, &words)).collect();
    assert!(found.is_empty(), "{found:#?}");
}

#[test]
fn the_store_imports_no_actor_engine_configuration_or_http_module() {
    let graph = graph();
    let forbidden = ["actors/", "engine/", "http/", "config.rs", "cluster.rs", "decide/", "lib.rs"];
    let found: Vec<String> = graph
        .keys()
        .filter(|file| file.starts_with("store/"))
        .flat_map(|file| offences(file, &graph, &forbidden, &["actix"]))
        .collect();
    assert!(found.is_empty(), "{found:#?}");
}

#[test]
fn the_http_edge_imports_no_module_that_writes_the_store() {
    let graph = graph();
    let writers = [
        "store/mod.rs",
        "store/sled.rs",
        "store/postgres/",
        "store/commit.rs",
        "store/journal.rs",
        "backup/restore.rs",
        "engine/start.rs",
        "operate/",
    ];
    let found: Vec<String> = graph
        .keys()
        .filter(|file| file.starts_with("http/"))
        .flat_map(|file| offences(file, &graph, &writers, &[]))
        .collect();
    assert!(found.is_empty(), "{found:#?}");
}

/// The checker itself finds what it must: a circle, a use group, a parent's module.
#[test]
fn the_checker_sees_circles_groups_and_children() {
    let mut graph = BTreeMap::new();
    graph.insert("a.rs".to_owned(), BTreeSet::from(["b.rs".to_owned()]));
    graph.insert("b.rs".to_owned(), BTreeSet::from(["c.rs".to_owned()]));
    graph.insert("c.rs".to_owned(), BTreeSet::from(["a.rs".to_owned()]));
    graph.insert("d.rs".to_owned(), BTreeSet::from(["a.rs".to_owned()]));
    assert_eq!(circles(&graph), vec![vec!["a.rs".to_owned(), "b.rs".to_owned(), "c.rs".to_owned()]]);
    let expanded = expand("crate::store::{records::{A, B}, Store as S}, super::x");
    assert!(expanded.contains(&vec!["crate".into(), "store".into(), "records".into(), "A".into()]), "{expanded:?}");
    assert!(expanded.contains(&vec!["crate".into(), "store".into(), "Store".into()]), "{expanded:?}");
    assert!(!blank("let a = \"crate::x\"; // crate::y\n").contains("crate"));
    assert!(!without_tests("fn f() {}\n#[cfg(test)]\nmod tests { use crate::x; }\n").contains("crate"));
    let real = graph_of_this_crate_has("decide/mod.rs", "decide/books.rs");
    assert!(real, "decide/mod.rs re-exports from its child books.rs");
}

fn graph_of_this_crate_has(from: &str, to: &str) -> bool {
    graph().get(from).is_some_and(|edges| edges.contains(to))
}
