//! `xtask deploy-guided`: what `sam deploy --guided` will ask, explained,
//! then `sam deploy --guided` itself.
//!
//! SAM CLI asks for each template parameter as `Parameter Name [default]:`,
//! in the order of `Parameters:`, and shows neither its `Description` nor
//! the `AWS::CloudFormation::Interface` groups and labels
//! (aws/aws-sam-cli#2789). This prints, in that same order, each parameter's
//! group, label, default, allowed values and description, read from
//! template.yaml, then replaces itself with `sam deploy --guided` and the
//! arguments given after the options (`--stack-name`, `--profile`, ...).

use std::io::{BufRead, IsTerminal, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_norway::Value;

use crate::Error;

/// Width the descriptions are wrapped to.
const WIDTH: usize = 80;
/// Where `sam build` (`make build`) puts the template `sam deploy` uses.
const BUILT_TEMPLATE: &str = ".aws-sam/build/template.yaml";

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The SAM CLI to run [default: .venv/bin/sam in the workspace if it is
    /// there, else sam on PATH]
    #[arg(long, value_name = "PATH")]
    pub sam: Option<PathBuf>,
    /// The template whose parameters are explained [default: template.yaml
    /// in the workspace]
    #[arg(long, value_name = "PATH")]
    pub template: Option<PathBuf>,
    /// Only print the explanation; don't run sam.
    #[arg(long)]
    pub print_only: bool,
    /// Passed to `sam deploy --guided` as they are: --stack-name NAME,
    /// --region REGION, --profile NAME, ...
    #[arg(
        value_name = "SAM_ARGS",
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub sam_args: Vec<String>,
}

/// One template parameter, as the explanation shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parameter {
    pub name: String,
    /// Its `ParameterLabels` entry.
    pub label: Option<String>,
    /// The label of the `ParameterGroups` entry that lists it.
    pub group: Option<String>,
    pub description: String,
    /// The template's `Default`, as text (SAM shows it in brackets).
    pub default: Option<String>,
    /// `AllowedValues`, `MinValue`/`MaxValue`, `AllowedPattern`, in words.
    pub constraint: Option<String>,
    /// `NoEcho`: SAM hides the input and shows no default.
    pub no_echo: bool,
}

/// A scalar as CloudFormation and SAM pass it: text.
fn text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// The template's parameters in the order of `Parameters:`, the order SAM
/// asks for them in.
pub fn parameters(template: &str) -> Result<Vec<Parameter>, Error> {
    let doc: Value = serde_norway::from_str(template)?;
    let interface = &doc["Metadata"]["AWS::CloudFormation::Interface"];
    let group_of = |name: &str| -> Option<String> {
        interface["ParameterGroups"]
            .as_sequence()?
            .iter()
            .find(|group| {
                group["Parameters"]
                    .as_sequence()
                    .is_some_and(|ps| ps.iter().any(|p| p.as_str() == Some(name)))
            })
            .map(|group| text(&group["Label"]["default"]).unwrap_or_default())
    };
    let declared = doc
        .get("Parameters")
        .and_then(Value::as_mapping)
        .ok_or("the template has no Parameters")?;
    let mut parameters = Vec::new();
    for (name, declaration) in declared {
        let name = name.as_str().ok_or("a parameter name is not a string")?;
        let allowed: Vec<String> = declaration["AllowedValues"]
            .as_sequence()
            .into_iter()
            .flatten()
            .filter_map(text)
            .collect();
        let (min, max) = (
            text(&declaration["MinValue"]),
            text(&declaration["MaxValue"]),
        );
        let constraint = if !allowed.is_empty() {
            Some(format!("one of: {}", allowed.join(", ")))
        } else if let Some(pattern) = text(&declaration["AllowedPattern"]) {
            Some(format!("matching {pattern}"))
        } else {
            match (min, max) {
                (Some(min), Some(max)) => Some(format!("{min} to {max}")),
                (Some(min), None) => Some(format!("at least {min}")),
                (None, Some(max)) => Some(format!("at most {max}")),
                (None, None) => None,
            }
        };
        parameters.push(Parameter {
            name: name.to_owned(),
            label: text(&interface["ParameterLabels"][name]["default"]),
            group: group_of(name),
            description: text(&declaration["Description"]).unwrap_or_default(),
            default: declaration.get("Default").and_then(text),
            constraint,
            no_echo: matches!(text(&declaration["NoEcho"]).as_deref(), Some("true")),
        });
    }
    Ok(parameters)
}

/// `text` in lines of at most `width` columns (a longer word alone on its
/// line), each starting with `indent`.
fn wrap(text: &str, indent: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && indent.len() + line.len() + 1 + word.len() > width {
            lines.push(format!("{indent}{line}"));
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(format!("{indent}{line}"));
    }
    lines
}

/// What to read before `sam deploy --guided`: each parameter in the order
/// SAM asks, under its group's heading (repeated if the template's order
/// leaves a group and comes back to it): its prompt as SAM shows it, then
/// its label and what it accepts, then its description.
pub fn explain(parameters: &[Parameter]) -> String {
    let mut out = Vec::new();
    out.extend(wrap(
        "sam deploy --guided first asks for the stack name and region, then for \
         each parameter as \"Parameter Name [default]:\", in the order below, \
         without saying what it is. Enter keeps the default in brackets: the \
         template's, or the value samconfig.toml saved from an earlier run.",
        "",
        WIDTH,
    ));
    let mut current: Option<Option<&str>> = None;
    let mut number = 0;
    for parameter in parameters {
        let group = parameter.group.as_deref();
        if current != Some(group) {
            number += 1;
            out.push(String::new());
            out.push(format!("{number}. {}", group.unwrap_or("Other parameters")));
            current = Some(group);
        }
        let prompt = if parameter.no_echo {
            "(hidden input, no default)".to_owned()
        } else {
            format!("[{}]", parameter.default.as_deref().unwrap_or(""))
        };
        // As SAM prompts it, so the two are easy to match.
        out.push(String::new());
        out.push(format!("   Parameter {} {prompt}", parameter.name));
        let mut label = parameter.label.clone().unwrap_or_default();
        if let Some(constraint) = &parameter.constraint {
            label = format!("{label} ({constraint})");
        }
        out.extend(wrap(&label, "      ", WIDTH));
        out.extend(wrap(&parameter.description, "        ", WIDTH));
    }
    out.push(String::new());
    out.extend(wrap(
        "If the first deploy of a stack fails, CloudFormation leaves it in \
         ROLLBACK_COMPLETE, which can't be updated: delete it (aws \
         cloudformation delete-stack --stack-name NAME) and run this again.",
        "",
        WIDTH,
    ));
    let mut text = out.join("\n");
    text.push('\n');
    text
}

/// Whether `sam deploy` would look for the built template: unless a
/// template is named, it deploys `.aws-sam/build/template.yaml`, which only
/// `sam build` (`make build`) writes.
pub fn needs_built_template(sam_args: &[String]) -> bool {
    !sam_args.iter().any(|a| {
        matches!(a.as_str(), "-t" | "--template" | "--template-file")
            || a.starts_with("--template=")
            || a.starts_with("--template-file=")
    })
}

pub fn run(root: &Path, args: Args) -> Result<u8, Error> {
    let template = args.template.unwrap_or_else(|| root.join("template.yaml"));
    let source = std::fs::read_to_string(&template)
        .map_err(|e| format!("reading {}: {e}", template.display()))?;
    let parameters =
        parameters(&source).map_err(|e| format!("reading {}: {e}", template.display()))?;
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(explain(&parameters).as_bytes())?;
    stdout.flush()?;
    drop(stdout);
    if args.print_only {
        return Ok(0);
    }
    if needs_built_template(&args.sam_args) && !root.join(BUILT_TEMPLATE).is_file() {
        return Err(format!(
            "{BUILT_TEMPLATE} is missing: run `make build` (sam build --beta-features) first"
        )
        .into());
    }
    let sam = args.sam.unwrap_or_else(|| {
        let venv = root.join(".venv/bin/sam");
        if venv.is_file() {
            venv
        } else {
            PathBuf::from("sam")
        }
    });
    if std::io::stdin().is_terminal() {
        println!("\nPress Enter to run sam deploy --guided (Ctrl-C to stop).");
        std::io::stdin().lock().read_line(&mut String::new())?;
    }
    // exec: sam gets the terminal for its prompts, and its exit code is ours.
    let error = Command::new(&sam)
        .current_dir(root)
        .args(["deploy", "--guided"])
        .args(&args.sam_args)
        .exec();
    Err(format!("running {}: {error}", sam.display()).into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workspace_template() -> String {
        std::fs::read_to_string(crate::workspace_root().join("template.yaml")).unwrap()
    }

    /// The parameters an explanation shows, from its prompt lines:
    /// `   Parameter Name [default]`.
    fn shown(explanation: &str) -> Vec<String> {
        explanation
            .lines()
            .filter_map(|l| l.strip_prefix("   Parameter "))
            .map(|l| l.split_whitespace().next().unwrap().to_owned())
            .collect()
    }

    #[test]
    fn every_parameter_of_template_yaml_is_shown_once_in_the_order_sam_asks() {
        let template = workspace_template();
        let parameters = parameters(&template).unwrap();
        let doc: Value = serde_norway::from_str(&template).unwrap();
        let declared: Vec<String> = doc["Parameters"]
            .as_mapping()
            .unwrap()
            .keys()
            .map(|k| k.as_str().unwrap().to_owned())
            .collect();
        assert!(declared.len() > 20, "{declared:?}");
        let explanation = explain(&parameters);
        assert_eq!(shown(&explanation), declared, "{explanation}");
        for parameter in &parameters {
            assert!(
                !parameter.description.is_empty(),
                "{}: no description",
                parameter.name
            );
            assert!(parameter.label.is_some(), "{}: no label", parameter.name);
            assert!(parameter.group.is_some(), "{}: in no group", parameter.name);
        }
    }

    #[test]
    fn template_yaml_is_explained_starting_with_the_partner_url_then_time_zone_and_schedules() {
        let explanation = explain(&parameters(&workspace_template()).unwrap());
        let order = shown(&explanation);
        assert_eq!(
            order[..3],
            [
                "DownstreamUrl",
                "DefaultTimeZone",
                "WineSittingRepairSchedule"
            ],
            "{explanation}"
        );
        let first_group = explanation.lines().find(|l| l.starts_with("1. "));
        assert!(
            first_group.is_some_and(|l| l.contains("Start here")),
            "{explanation}"
        );
        assert!(
            explanation.contains(
                "   Parameter DownstreamUrl []\n      The partner's (VinesOS) webhook URL\n        REQUIRED for the sync"
            ),
            "{explanation}"
        );
        assert!(
            explanation.contains("   Parameter WorkerMaxConcurrency [5]\n")
                && explanation.contains(" unreserved (2 to 1000)\n"),
            "{explanation}"
        );
        assert!(explanation.contains("ROLLBACK_COMPLETE"), "{explanation}");
    }

    const SMALL: &str = r#"
Metadata:
  AWS::CloudFormation::Interface:
    ParameterGroups:
      - Label: {default: First}
        Parameters: [Url, Zone]
      - Label: {default: Second}
        Parameters: [Switch]
    ParameterLabels:
      Url: {default: The URL}
Parameters:
  Url:
    Type: String
    Default: ''
    Description: >-
      Where it goes. A long description that has to be wrapped over more than
      one line, because it is longer than eighty columns by quite a margin.
  Switch:
    Type: String
    Default: 'true'
    AllowedValues: ['true', 'false']
    Description: On or off.
  Zone:
    Type: String
    Default: UTC
    Description: A zone.
  Count:
    Type: Number
    Default: 0
    MinValue: 0
    Description: How many.
  Token:
    Type: String
    NoEcho: true
    Description: A secret.
Resources:
  Thing:
    Type: AWS::SNS::Topic
    Properties:
      TopicName: !Ref Url
"#;

    #[test]
    fn the_order_is_the_templates_and_a_group_heading_comes_again_when_the_order_returns_to_it() {
        let explanation = explain(&parameters(SMALL).unwrap());
        assert_eq!(
            shown(&explanation),
            ["Url", "Switch", "Zone", "Count", "Token"]
        );
        let headings: Vec<&str> = explanation
            .lines()
            .filter(|l| l.chars().next().is_some_and(|c| c.is_ascii_digit()))
            .collect();
        assert_eq!(
            headings,
            ["1. First", "2. Second", "3. First", "4. Other parameters"],
            "{explanation}"
        );
    }

    #[test]
    fn each_parameter_shows_its_prompt_default_label_constraint_and_wrapped_description() {
        let explanation = explain(&parameters(SMALL).unwrap());
        for expected in [
            "   Parameter Url []",
            "      The URL",
            "   Parameter Switch [true]",
            "      (one of: true, false)",
            "   Parameter Count [0]",
            "      (at least 0)",
            "   Parameter Token (hidden input, no default)",
            "        A secret.",
        ] {
            assert!(
                explanation.lines().any(|l| l == expected),
                "no line {expected:?} in:\n{explanation}"
            );
        }
        let url_description: Vec<&str> = explanation
            .lines()
            .skip_while(|l| !l.starts_with("   Parameter Url"))
            .skip(2)
            .take_while(|l| l.starts_with("        "))
            .collect();
        assert!(url_description.len() >= 2, "{url_description:?}");
        assert!(url_description.iter().all(|l| l.len() <= WIDTH));
        assert_eq!(
            url_description
                .join(" ")
                .split_whitespace()
                .collect::<Vec<_>>(),
            "Where it goes. A long description that has to be wrapped over more than \
             one line, because it is longer than eighty columns by quite a margin."
                .split_whitespace()
                .collect::<Vec<_>>()
        );
    }

    #[test]
    fn a_template_without_parameters_is_an_error() {
        assert!(parameters("Resources: {}\n").is_err());
    }

    #[test]
    fn without_a_build_it_stops_before_running_sam_and_says_to_run_make_build() {
        let root = tempfile::tempdir().unwrap();
        std::fs::write(root.path().join("template.yaml"), SMALL).unwrap();
        let args = Args {
            // Never reached; if it were, the test process would become it.
            sam: Some(PathBuf::from("/bin/false")),
            template: None,
            print_only: false,
            sam_args: vec!["--stack-name".into(), "s".into()],
        };
        let error = run(root.path(), args).unwrap_err().to_string();
        assert!(error.contains("make build"), "{error}");
    }

    #[test]
    fn the_built_template_is_needed_unless_sam_is_given_one() {
        let args = |line: &str| {
            line.split_whitespace()
                .map(String::from)
                .collect::<Vec<_>>()
        };
        assert!(needs_built_template(&args(
            "--stack-name s --region eu-west-1"
        )));
        assert!(!needs_built_template(&args("-t packaged.yaml")));
        assert!(!needs_built_template(&args(
            "--template-file=packaged.yaml"
        )));
    }
}
