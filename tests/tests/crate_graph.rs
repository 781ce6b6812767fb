//! The workspace's crates form layers that only point down: each library
//! crate depends only on crates of lower layers (dev-dependencies for fakes
//! included), so no cycle and no upward edge can come back unnoticed.
//! Read from `cargo metadata`, as cargo itself resolves the graph.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use serde_json::Value;

/// The library crates, lowest layer first; a crate may depend on any crate
/// of a lower layer and on none of its own or a higher one.
const LAYERS: &[&[&str]] = &[
    // Telemetry is a leaf: it knows no crate of the bundle.
    &["domain", "telemetry"],
    &["ports"],
    &["aws-adapters", "vendors"],
    &["pipeline"],
    &["shared"],
];

/// Each workspace package with the workspace packages it depends on (any
/// kind of dependency), read from `cargo metadata`.
fn workspace_edges() -> BTreeMap<String, BTreeSet<String>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let output = Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(&root)
        .output()
        .expect("cargo metadata runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: Value = serde_json::from_slice(&output.stdout).unwrap();
    let packages = metadata["packages"].as_array().unwrap();
    let names: BTreeSet<String> = packages
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_owned())
        .collect();
    packages
        .iter()
        .map(|p| {
            let deps = p["dependencies"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d["name"].as_str().unwrap().to_owned())
                .filter(|d| names.contains(d) && d != p["name"].as_str().unwrap())
                .collect();
            (p["name"].as_str().unwrap().to_owned(), deps)
        })
        .collect()
}

fn layer_of(name: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&name))
}

/// Every edge between two layered crates that does not point down.
fn edges_not_pointing_down(edges: &BTreeMap<String, BTreeSet<String>>) -> Vec<String> {
    let mut wrong = Vec::new();
    for (from, deps) in edges {
        let Some(from_layer) = layer_of(from) else {
            continue;
        };
        for to in deps {
            match layer_of(to) {
                Some(to_layer) if to_layer < from_layer => {}
                Some(_) => wrong.push(format!("{from} -> {to}")),
                None => wrong.push(format!("{from} -> {to} (a crate of no layer)")),
            }
        }
    }
    wrong
}

#[test]
fn every_library_crate_depends_only_on_lower_layers() {
    let edges = workspace_edges();
    for layer in LAYERS {
        for name in *layer {
            assert!(edges.contains_key(*name), "{name} is not in the workspace");
        }
    }
    let wrong = edges_not_pointing_down(&edges);
    assert!(wrong.is_empty(), "edges that do not point down: {wrong:?}");
}

#[test]
fn an_edge_up_or_across_a_layer_is_found() {
    let mut edges = workspace_edges();
    edges
        .get_mut("vendors")
        .unwrap()
        .insert("pipeline".to_owned());
    edges
        .get_mut("aws-adapters")
        .unwrap()
        .insert("vendors".to_owned());
    assert_eq!(
        edges_not_pointing_down(&edges),
        ["aws-adapters -> vendors", "vendors -> pipeline"]
    );
}

#[test]
fn the_function_crates_depend_on_the_entry_points_and_no_adapter() {
    let edges = workspace_edges();
    let functions: Vec<_> =
        std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("../functions"))
            .unwrap()
            .map(|entry| entry.unwrap())
            .filter(|entry| entry.file_type().unwrap().is_dir())
            .map(|entry| entry.file_name().into_string().unwrap())
            .collect();
    assert!(!functions.is_empty());
    for function in functions {
        let deps = &edges[&function];
        assert!(deps.contains("shared"), "{function}: {deps:?}");
        for dep in deps {
            assert!(dep == "shared", "{function} depends on {dep}");
        }
    }
}
