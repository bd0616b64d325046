//! The layering of the source tree (docs/ARCHITECTURE.md, "Layering"): the graph of the crate's
//! top-level modules, built from every `crate::` path in `src/`, has no cycle, and the domain
//! never reaches the web layer or its state.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

/// Modules that hold the domain: they may be used by the web and event layers, never the
/// other way round.
const DOMAIN: [&str; 8] = [
    "runs",
    "quality",
    "statuses",
    "local",
    "k8s",
    "pipelines",
    "db",
    "config",
];
/// The web layer and the state it shares between handlers.
const WEB: [&str; 2] = ["http", "state"];

/// Top-level module -> the top-level modules it names, each with the files that name it.
type Graph = BTreeMap<String, BTreeMap<String, BTreeSet<String>>>;

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file belongs to (`lib` for the crate root and the binary).
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap();
    let first = rel
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_string_lossy();
    match first.strip_suffix(".rs") {
        Some("lib" | "main") => "lib".into(),
        Some(name) => name.into(),
        None => first.into_owned(),
    }
}

/// The source without `//` comments (doc comments name modules in prose).
fn strip_comments(text: &str) -> String {
    text.lines()
        .map(|line| match line.find("//") {
            // A `//` inside a string literal ("https://...") cuts the line too; no `crate::`
            // path follows one on the same line in this code base.
            Some(i) => &line[..i],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The first path segment of every item in a `use` group body (`a::b, c::{d, e}` -> a, c).
fn group_heads(group: &str) -> Vec<String> {
    let (mut depth, mut item, mut heads) = (0usize, String::new(), Vec::new());
    for c in group.chars() {
        match c {
            '{' => depth += 1,
            '}' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                heads.push(std::mem::take(&mut item));
                continue;
            }
            _ => {}
        }
        item.push(c);
    }
    heads.push(item);
    heads
        .iter()
        .filter_map(|i| {
            let head: String = i
                .trim()
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            (!head.is_empty()).then_some(head)
        })
        .collect()
}

/// The first segments after every `crate::` of a source text.
fn crate_paths(text: &str) -> Vec<String> {
    let mut heads = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("crate::") {
        let before = rest[..i].chars().next_back();
        rest = &rest[i + "crate::".len()..];
        // `application_quality_api::crate::`-like or `foo_crate::` are not crate paths.
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        let after = rest.trim_start();
        if let Some(body) = after.strip_prefix('{') {
            let mut depth = 1;
            let end = body
                .char_indices()
                .find(|&(_, c)| {
                    match c {
                        '{' => depth += 1,
                        '}' => depth -= 1,
                        _ => {}
                    }
                    depth == 0
                })
                .map_or(body.len(), |(i, _)| i);
            heads.extend(group_heads(&body[..end]));
        } else {
            heads.extend(group_heads(
                after.split([';', ',', ')', ' ', '\n']).next().unwrap(),
            ));
        }
    }
    heads
}

fn graph() -> (Graph, BTreeMap<String, (usize, usize)>) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let modules: BTreeSet<String> = files.iter().map(|f| module_of(&src, f)).collect();
    let mut graph = Graph::new();
    let mut sizes: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for file in &files {
        let from = module_of(&src, file);
        let text = std::fs::read_to_string(file).unwrap();
        let size = sizes.entry(from.clone()).or_default();
        size.0 += 1;
        size.1 += text.lines().count();
        graph.entry(from.clone()).or_default();
        for head in crate_paths(&strip_comments(&text)) {
            // Items of the crate root (`crate::build_state`) belong to `lib`.
            let to = if modules.contains(&head) {
                head
            } else {
                "lib".into()
            };
            if to != from {
                let rel = file.strip_prefix(&src).unwrap().display().to_string();
                graph
                    .entry(from.clone())
                    .or_default()
                    .entry(to)
                    .or_default()
                    .insert(rel);
            }
        }
    }
    (graph, sizes)
}

/// The strongly connected components of more than one module (Tarjan).
fn cycles(graph: &Graph) -> Vec<Vec<String>> {
    struct Walk<'a> {
        graph: &'a Graph,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        found: Vec<Vec<String>>,
    }
    impl<'a> Walk<'a> {
        fn visit(&mut self, v: &'a str) {
            let i = self.index.len();
            self.index.insert(v, i);
            self.low.insert(v, i);
            self.stack.push(v);
            for w in self.graph.get(v).into_iter().flat_map(|e| e.keys()) {
                let w = w.as_str();
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let lw = self.low[w];
                    let lv = self.low.get_mut(v).unwrap();
                    *lv = (*lv).min(lw);
                } else if self.stack.contains(&w) {
                    let iw = self.index[w];
                    let lv = self.low.get_mut(v).unwrap();
                    *lv = (*lv).min(iw);
                }
            }
            if self.low[v] == self.index[v] {
                let mut component = Vec::new();
                while let Some(w) = self.stack.pop() {
                    component.push(w.to_string());
                    if w == v {
                        break;
                    }
                }
                if component.len() > 1 {
                    component.sort();
                    self.found.push(component);
                }
            }
        }
    }
    let mut walk = Walk {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        found: Vec::new(),
    };
    for v in graph.keys() {
        if !walk.index.contains_key(v.as_str()) {
            walk.visit(v);
        }
    }
    walk.found
}

fn describe(graph: &Graph, sizes: &BTreeMap<String, (usize, usize)>) -> String {
    graph
        .iter()
        .map(|(from, to)| {
            let (files, lines) = sizes.get(from).copied().unwrap_or_default();
            let deps: Vec<&str> = to.keys().map(String::as_str).collect();
            format!(
                "{from:12} {files:3} files {lines:6} lines -> {}\n",
                deps.join(" ")
            )
        })
        .collect()
}

#[test]
fn the_scan_reads_use_groups_and_paths() {
    let text = "use crate::{\n    a::b,\n    c::{d, e},\n};\nlet x = crate::f::g(1); // crate::h\n";
    assert_eq!(crate_paths(&strip_comments(text)), ["a", "c", "f"]);
    assert_eq!(crate_paths("foo_crate::x; crate::y"), ["y"]);
}

#[test]
fn the_modules_form_no_cycle() {
    let (graph, sizes) = graph();
    // The scan sees the edges every build has (else it reads nothing and proves nothing).
    for (from, to) in [
        ("http", "runs"),
        ("runs", "db"),
        ("state", "runs"),
        ("db", "config"),
    ] {
        assert!(
            graph.get(from).is_some_and(|e| e.contains_key(to)),
            "the scan missed {from} -> {to}:\n{}",
            describe(&graph, &sizes)
        );
    }
    let found = cycles(&graph);
    assert!(
        found.is_empty(),
        "import cycles among the top-level modules: {found:?}\n{}",
        describe(&graph, &sizes)
    );
}

#[test]
fn the_domain_never_reaches_the_web_layer() {
    let (graph, _) = graph();
    let mut offences = Vec::new();
    for from in DOMAIN {
        for (to, files) in graph.get(from).into_iter().flatten() {
            if WEB.contains(&to.as_str()) {
                offences.push(format!("{from} -> {to} in {files:?}"));
            }
        }
    }
    assert!(offences.is_empty(), "{offences:#?}");
}
