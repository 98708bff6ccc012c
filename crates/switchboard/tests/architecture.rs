//! The module graph of `src/` has no cycles: dependencies between the crate's top-level
//! modules run one way (STYLE.md, "A layout that shows the architecture").
//!
//! The graph is read from the source text: every `crate::NAME` path (in `use` items, grouped
//! ones such as `use crate::{a, b::c}` included, and in paths in code) in a file under
//! `src/NAME/` or `src/NAME.rs` is an edge from the file's top-level module to `NAME`. A name
//! that `lib.rs` re-exports (`pub use hub::Hub;`) counts as the module it comes from. Comments
//! are left out: a doc link is not a dependency.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::{Path, PathBuf};

/// Module -> module it names -> files that name it.
type Graph = BTreeMap<String, BTreeMap<String, BTreeSet<String>>>;

#[test]
fn top_level_modules_form_no_cycle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = module_graph(&src);
    assert!(
        graph.len() > 10,
        "too few modules found in {}: {:?}",
        src.display(),
        graph.keys()
    );
    let cycles: Vec<String> = strongly_connected(&graph)
        .into_iter()
        .filter(|component| component.len() > 1)
        .map(|component| describe(&graph, &component))
        .collect();
    assert!(
        cycles.is_empty(),
        "{} module cycle(s) in {} (each: one cycle, then every dependency inside it and the \
         files that make it):\n{}",
        cycles.len(),
        src.display(),
        cycles.join("\n")
    );
}

#[test]
fn the_reader_sees_grouped_uses_and_paths_in_code() {
    let text = "use crate::{a, b::{c, d}, e as f};\n\
                // use crate::commented;\n\
                /// [`crate::doc_link`]\n\
                //! [`crate::module_doc`]\n\
                pub(crate) fn x() { crate::g::h(\"redis://\", crate::k::L); } // crate::m\n\
                pub(in crate::i) struct Y;\n\
                use crate::{\n    self,\n    j::{self, K},\n};\n\
                let z = $crate::macro_root::y(); notcrate::n::o();\n";
    let names: Vec<String> = crate_names(&strip_comments(text)).into_iter().collect();
    assert_eq!(names, ["a", "b", "e", "g", "i", "j", "k"]);
}

#[test]
fn a_cycle_through_three_modules_is_found_and_printed() {
    let mut graph = Graph::new();
    for (from, to) in [("a", "b"), ("b", "c"), ("c", "a"), ("c", "d"), ("d", "e")] {
        graph
            .entry(from.to_owned())
            .or_default()
            .entry(to.to_owned())
            .or_default()
            .insert(format!("src/{from}.rs"));
    }
    let components: Vec<_> = strongly_connected(&graph)
        .into_iter()
        .filter(|component| component.len() > 1)
        .collect();
    assert_eq!(components.len(), 1);
    let text = describe(&graph, &components[0]);
    assert!(text.starts_with("  a -> b -> c -> a\n"), "{text}");
    assert!(text.contains("c -> a: src/c.rs"), "{text}");
}

/// Reads every `.rs` file under `src` into the graph of its top-level modules.
fn module_graph(src: &Path) -> Graph {
    let root = std::fs::read_to_string(src.join("lib.rs")).expect("src/lib.rs");
    let root = strip_comments(&root);
    let modules = declared_modules(&root);
    let reexports = reexports(&root, &modules);
    let mut graph = Graph::new();
    for file in rust_files(src) {
        let relative = file.strip_prefix(src).unwrap();
        let Some(module) = top_level_module(relative) else {
            continue;
        };
        assert!(
            modules.contains(&module),
            "{} is not under a module lib.rs declares",
            relative.display()
        );
        let text = strip_comments(&std::fs::read_to_string(&file).unwrap());
        let edges = graph.entry(module.clone()).or_default();
        for name in crate_names(&text) {
            let target = if modules.contains(&name) {
                name
            } else if let Some(target) = reexports.get(&name) {
                target.clone()
            } else {
                panic!(
                    "{}: `crate::{name}` is neither a module nor a re-export of lib.rs",
                    relative.display()
                );
            };
            if target != module {
                edges
                    .entry(target)
                    .or_default()
                    .insert(format!("src/{}", relative.display()));
            }
        }
    }
    graph
}

/// `hub/rooms.rs` -> `hub`, `config.rs` -> `config`; `None` for the crate roots.
fn top_level_module(relative: &Path) -> Option<String> {
    let first = relative.components().next()?.as_os_str().to_str()?;
    match first.strip_suffix(".rs") {
        Some("lib" | "main") => None,
        Some(file) => Some(file.to_owned()),
        None => Some(first.to_owned()),
    }
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|ext| ext == "rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// The text without `//` comments (doc comments included). A light reading, not a lexer: a
/// `//` right after a `:` is taken for a URL in a string (`"redis://…"`), and a `crate::`
/// inside a string literal would count as a path (the crate has none).
fn strip_comments(text: &str) -> String {
    text.lines()
        .map(|line| {
            let mut from = 0;
            while let Some(at) = line[from..].find("//").map(|at| at + from) {
                if !line[..at].ends_with(':') {
                    return &line[..at];
                }
                from = at + 2;
            }
            line
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The first segment of every `crate::` path, with each item of a group `crate::{…}`.
fn crate_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("crate::") {
        let before = rest[..at].chars().next_back();
        rest = &rest[at + "crate::".len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$') {
            continue;
        }
        if let Some(group) = rest.strip_prefix('{') {
            names.extend(
                group_items(group)
                    .into_iter()
                    .map(|item| leading_ident(&item)),
            );
        } else {
            names.insert(leading_ident(rest));
        }
    }
    names.remove("");
    names.remove("self");
    names
}

/// The top-level items of a `{…}` group whose opening brace was just consumed.
fn group_items(group: &str) -> Vec<String> {
    let mut items = vec![String::new()];
    let mut depth = 0;
    for c in group.chars() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => break,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(String::new());
                continue;
            }
            _ => {}
        }
        items.last_mut().unwrap().push(c);
    }
    items
}

fn leading_ident(text: &str) -> String {
    text.trim_start()
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect()
}

/// The modules `lib.rs` declares (`mod x;`, `pub mod x;`, with attributes in front).
fn declared_modules(root: &str) -> BTreeSet<String> {
    root.split(';')
        .filter_map(|item| {
            let words: Vec<&str> = item.split_whitespace().collect();
            let at = words.iter().position(|w| *w == "mod")?;
            let name = words.get(at + 1)?;
            (at + 2 == words.len()).then(|| (*name).to_owned())
        })
        .collect()
}

/// Names `lib.rs` re-exports from a module (`pub use hub::Hub;`), mapped to that module.
fn reexports(root: &str, modules: &BTreeSet<String>) -> BTreeMap<String, String> {
    let mut names = BTreeMap::new();
    for item in root.split(';') {
        let Some(path) = item.trim().strip_prefix("pub use ") else {
            continue;
        };
        let module = leading_ident(path);
        let name = path.rsplit("::").next().unwrap_or_default().trim();
        let name = name.rsplit(" as ").next().unwrap_or_default().trim();
        if modules.contains(&module) && !name.is_empty() {
            names.insert(name.to_owned(), module);
        }
    }
    names
}

/// The strongly connected components of `graph` (Tarjan), each sorted.
fn strongly_connected(graph: &Graph) -> Vec<Vec<String>> {
    struct State<'a> {
        graph: &'a Graph,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        components: Vec<Vec<String>>,
    }
    fn visit<'a>(state: &mut State<'a>, node: &'a str) {
        let index = state.index.len();
        state.index.insert(node, index);
        state.low.insert(node, index);
        state.stack.push(node);
        state.on_stack.insert(node);
        for next in state.graph.get(node).into_iter().flat_map(BTreeMap::keys) {
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
            while let Some(member) = state.stack.pop() {
                state.on_stack.remove(member);
                component.push(member.to_owned());
                if member == node {
                    break;
                }
            }
            component.sort();
            state.components.push(component);
        }
    }
    let mut state = State {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        components: Vec::new(),
    };
    for node in graph.keys() {
        if !state.index.contains_key(node.as_str()) {
            visit(&mut state, node);
        }
    }
    state.components.sort();
    state.components
}

/// One cycle through the component's first module, then every edge inside the component with
/// the files that make it.
fn describe(graph: &Graph, component: &[String]) -> String {
    let inside = |from: &str, to: &str| {
        component.iter().any(|m| m == to) && graph.get(from).is_some_and(|e| e.contains_key(to))
    };
    let start = component[0].as_str();
    let mut text = format!("  {}\n", shortest_cycle(graph, start, &inside).join(" -> "));
    for from in component {
        for (to, files) in &graph[from] {
            if inside(from, to) {
                let files: Vec<&str> = files.iter().map(String::as_str).collect();
                text.push_str(&format!("    {from} -> {to}: {}\n", files.join(", ")));
            }
        }
    }
    text
}

/// The shortest path from `start` back to itself along edges `inside` allows.
fn shortest_cycle(graph: &Graph, start: &str, inside: &dyn Fn(&str, &str) -> bool) -> Vec<String> {
    let mut came_from: BTreeMap<&str, &str> = BTreeMap::new();
    let mut queue = VecDeque::from([start]);
    while let Some(node) = queue.pop_front() {
        for next in graph.get(node).into_iter().flat_map(BTreeMap::keys) {
            let next = next.as_str();
            if !inside(node, next) {
                continue;
            }
            if next == start {
                let mut path = vec![node.to_owned()];
                let mut at = node;
                while at != start {
                    at = came_from[at];
                    path.push(at.to_owned());
                }
                path.reverse();
                path.push(start.to_owned());
                return path;
            }
            if !came_from.contains_key(next) && next != start {
                came_from.insert(next, node);
                queue.push_back(next);
            }
        }
    }
    vec![start.to_owned()]
}
