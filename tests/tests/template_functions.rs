//! template.yaml and functions/ are held to the table of functions
//! (`vendors::functions`): every receiver in the template is a row with the
//! same crate and routes, every row is in the template, every function
//! crate is a template function, and a receiver crate's `main` is the one
//! call that reads its row.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use local_stack::template::Template;
use vendors::functions::{self, Function};

/// A template function: its logical id, its CodeUri and its HTTP routes.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Declared {
    logical_id: String,
    code_uri: String,
    routes: BTreeSet<(String, String)>,
}

fn declared(template: &Template) -> Vec<Declared> {
    template
        .resources_of("AWS::Serverless::Function")
        .map(|resource| Declared {
            logical_id: resource.logical_id.clone(),
            code_uri: resource
                .properties
                .get("CodeUri")
                .and_then(|uri| uri.as_str())
                .unwrap_or_default()
                .to_owned(),
            routes: template
                .routes
                .iter()
                .filter(|route| route.function == resource.logical_id)
                .map(|route| (route.method.clone(), route.path.clone()))
                .collect(),
        })
        .collect()
}

/// Everything on which the template, the crates in functions/ and the
/// table disagree.
fn discrepancies(
    declared: &[Declared],
    rows: &[Function],
    crates: &BTreeSet<String>,
) -> Vec<String> {
    let mut found = Vec::new();
    for row in rows {
        let Some(function) = declared.iter().find(|d| d.logical_id == row.logical_id) else {
            found.push(format!("{} is not in the template", row.logical_id));
            continue;
        };
        if function.code_uri != format!("functions/{}", row.crate_name) {
            found.push(format!(
                "{}: CodeUri {} is not functions/{}",
                row.logical_id, function.code_uri, row.crate_name
            ));
        }
        let routes: BTreeSet<(String, String)> = row
            .routes
            .iter()
            .map(|route| ("POST".to_owned(), (*route).to_owned()))
            .collect();
        if function.routes != routes {
            found.push(format!(
                "{}: the template routes {:?}, the table {:?}",
                row.logical_id, function.routes, routes
            ));
        }
    }
    for function in declared {
        if !function.routes.is_empty() && !rows.iter().any(|r| r.logical_id == function.logical_id)
        {
            found.push(format!("{} has routes and no row", function.logical_id));
        }
        let Some(name) = function.code_uri.strip_prefix("functions/") else {
            found.push(format!(
                "{}: CodeUri {} is not in functions/",
                function.logical_id, function.code_uri
            ));
            continue;
        };
        if !crates.contains(name) {
            found.push(format!(
                "{}: functions/{name} does not exist",
                function.logical_id
            ));
        }
    }
    for name in crates {
        if !declared
            .iter()
            .any(|d| d.code_uri == format!("functions/{name}"))
        {
            found.push(format!("functions/{name} is no template function"));
        }
    }
    found
}

fn functions_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../functions")
}

/// The crates in functions/ (its directories; `receiver.rs` is the one
/// `main` the receiver crates share).
fn crates() -> BTreeSet<String> {
    std::fs::read_dir(functions_dir())
        .unwrap()
        .map(|entry| entry.unwrap())
        .filter(|entry| entry.file_type().unwrap().is_dir())
        .map(|entry| entry.file_name().into_string().unwrap())
        .collect()
}

fn template() -> Template {
    Template::load(&local_stack::template::default_path()).unwrap()
}

fn rows() -> Vec<Function> {
    functions::all().copied().collect()
}

#[test]
fn the_template_and_functions_dir_agree_with_the_table_of_functions() {
    let found = discrepancies(&declared(&template()), &rows(), &crates());
    assert!(found.is_empty(), "{found:#?}");
}

#[test]
fn a_missing_row_a_moved_route_a_wrong_crate_and_a_stray_crate_are_each_found() {
    let declared = declared(&template());
    let mut rows = rows();
    let mut crates = crates();
    let order = rows.remove(0);
    let mut moved = rows.remove(0);
    moved.routes = &["/revel/customers/made"];
    let mut renamed = rows.remove(0);
    renamed.crate_name = "revel-customer-renamed";
    rows.extend([moved, renamed]);
    crates.insert("stray-function".to_owned());
    let found = discrepancies(&declared, &rows, &crates);
    assert_eq!(found.len(), 4, "{found:#?}");
    assert!(
        found[0].contains(moved.logical_id) && found[0].contains("routes"),
        "{found:#?}"
    );
    assert!(
        found[1].contains("CodeUri") && found[1].contains("revel-customer-renamed"),
        "{found:#?}"
    );
    assert_eq!(
        found[2],
        format!("{} has routes and no row", order.logical_id)
    );
    assert_eq!(found[3], "functions/stray-function is no template function");
}

#[test]
fn each_receiver_crate_is_a_manifest_naming_the_one_receiver_main() {
    let main = std::fs::read_to_string(functions_dir().join("receiver.rs")).unwrap();
    for call in [
        "shared::function::receiver_row(env!(\"CARGO_PKG_NAME\"))",
        "shared::function::serve_receiver(FUNCTION)",
    ] {
        assert!(main.contains(call), "{main}");
    }
    for row in functions::all() {
        let dir = functions_dir().join(row.crate_name);
        let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
        for line in [
            format!("name = \"{}\"", row.crate_name),
            "path = \"../receiver.rs\"".to_owned(),
        ] {
            assert!(manifest.contains(&line), "{}: no {line}", row.crate_name);
        }
        assert!(
            !dir.join("src").exists(),
            "{} has sources of its own",
            row.crate_name
        );
    }
}
