//! The parts of template.yaml the local stack needs. Intrinsic functions are
//! read where the template uses them for these parts (`!Ref`, `!GetAtt`).

use std::collections::BTreeMap;
use std::path::Path;

use serde_norway::Value;

use crate::Error;

/// A value in the template, with the two intrinsics resolved locally.
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar {
    Literal(String),
    Ref(String),
    GetAtt(String, String),
    Unsupported(String),
}

#[derive(Debug, Clone)]
pub struct Resource {
    pub logical_id: String,
    pub kind: String,
    pub properties: Value,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub function: String,
    pub method: String,
    pub path: String,
}

#[derive(Debug, Clone)]
pub struct Template {
    pub resources: Vec<Resource>,
    pub parameter_defaults: BTreeMap<String, String>,
    /// `Globals.Function.Environment.Variables`.
    pub function_environment: BTreeMap<String, Scalar>,
    pub routes: Vec<Route>,
}

pub fn scalar(value: &Value) -> Scalar {
    match value {
        Value::String(s) => Scalar::Literal(s.clone()),
        Value::Number(n) => Scalar::Literal(n.to_string()),
        Value::Bool(b) => Scalar::Literal(b.to_string()),
        Value::Tagged(tagged) => {
            let tag = tagged.tag.to_string();
            let tag = tag.trim_start_matches('!');
            match (tag, &tagged.value) {
                ("Ref", Value::String(name)) => Scalar::Ref(name.clone()),
                ("GetAtt", Value::String(path)) => match path.split_once('.') {
                    Some((id, attribute)) => Scalar::GetAtt(id.into(), attribute.into()),
                    None => Scalar::Unsupported(path.clone()),
                },
                _ => Scalar::Unsupported(tag.to_owned()),
            }
        }
        Value::Mapping(map) => {
            let get = |k: &str| map.get(Value::String(k.into()));
            if let Some(Value::String(name)) = get("Ref") {
                return Scalar::Ref(name.clone());
            }
            if let Some(Value::Sequence(parts)) = get("Fn::GetAtt") {
                if let [Value::String(id), Value::String(attribute)] = parts.as_slice() {
                    return Scalar::GetAtt(id.clone(), attribute.clone());
                }
            }
            Scalar::Unsupported("mapping".into())
        }
        _ => Scalar::Unsupported("value".into()),
    }
}

impl Template {
    pub fn load(path: &Path) -> Result<Self, Error> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("reading {}: {e}", path.display()))?;
        Self::parse(&text)
    }

    pub fn parse(text: &str) -> Result<Self, Error> {
        let doc: Value = serde_norway::from_str(text)?;
        let mut resources = Vec::new();
        let mut routes = Vec::new();
        if let Some(map) = doc.get("Resources").and_then(Value::as_mapping) {
            for (id, resource) in map {
                let logical_id = id.as_str().ok_or("resource id is not a string")?.to_owned();
                let kind = resource
                    .get("Type")
                    .and_then(Value::as_str)
                    .ok_or_else(|| format!("{logical_id} has no Type"))?
                    .to_owned();
                let properties = resource.get("Properties").cloned().unwrap_or(Value::Null);
                if kind == "AWS::Serverless::Function" {
                    if let Some(events) = properties.get("Events").and_then(Value::as_mapping) {
                        for event in events.values() {
                            if event.get("Type").and_then(Value::as_str) != Some("HttpApi") {
                                continue;
                            }
                            let props = event.get("Properties");
                            let field = |name: &str| {
                                props
                                    .and_then(|p| p.get(name))
                                    .and_then(Value::as_str)
                                    .map(str::to_owned)
                            };
                            if let (Some(method), Some(path)) = (field("Method"), field("Path")) {
                                routes.push(Route {
                                    function: logical_id.clone(),
                                    method: method.to_ascii_uppercase(),
                                    path,
                                });
                            }
                        }
                    }
                }
                resources.push(Resource {
                    logical_id,
                    kind,
                    properties,
                });
            }
        }
        let mut parameter_defaults = BTreeMap::new();
        if let Some(map) = doc.get("Parameters").and_then(Value::as_mapping) {
            for (name, parameter) in map {
                if let (Some(name), Some(default)) = (name.as_str(), parameter.get("Default")) {
                    if let Scalar::Literal(value) = scalar(default) {
                        parameter_defaults.insert(name.to_owned(), value);
                    }
                }
            }
        }
        let mut function_environment = BTreeMap::new();
        if let Some(vars) = doc
            .get("Globals")
            .and_then(|g| g.get("Function"))
            .and_then(|f| f.get("Environment"))
            .and_then(|e| e.get("Variables"))
            .and_then(Value::as_mapping)
        {
            for (name, value) in vars {
                if let Some(name) = name.as_str() {
                    function_environment.insert(name.to_owned(), scalar(value));
                }
            }
        }
        Ok(Self {
            resources,
            parameter_defaults,
            function_environment,
            routes,
        })
    }

    pub fn resources_of<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = &'a Resource> + 'a {
        self.resources.iter().filter(move |r| r.kind == kind)
    }

    pub fn resource(&self, logical_id: &str) -> Option<&Resource> {
        self.resources.iter().find(|r| r.logical_id == logical_id)
    }
}

/// template.yaml at the workspace root.
pub fn default_path() -> std::path::PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../template.yaml");
    path.canonicalize().unwrap_or(path)
}
