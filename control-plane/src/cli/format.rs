//! docker's `--format` (docker/cli `cli/command/formatter`): `table` with an optional Go
//! template for the columns, a bare Go template rendered once per row, or `json` (one object
//! per row). Templates are Go's text/template, run by the `gtmpl` crate, with the functions
//! docker adds (`cli/templates`): `json`, `join`, `split`, `lower`, `upper`, `title`,
//! `truncate`, `pad`, `println`.
//!
//! A listing hands its rows over as [`Cells`]: docker's field names (`ID`, `Name`,
//! `CurrentState`) to the text its default table shows. Its default table is itself a
//! `table ...` template, as docker's, so `--format` and the default go one way.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use gtmpl::error::ExecError;
use gtmpl::{Context, FuncError, Template, Value};

use super::output::table;

/// One row: field name → the text docker shows for it.
pub type Cells = BTreeMap<&'static str, String>;

/// A parsed `--format`.
pub struct Format {
    kind: Kind,
}

enum Kind {
    /// `table TEMPLATE`: a header row, then columns split on tabs and aligned.
    Table(Compiled),
    /// `TEMPLATE`: the template once per row, each followed by a newline.
    Lines(Compiled),
    /// `json` or `{{json .}}`: each row as a JSON object on its own line.
    Json,
}

/// A template with the text it was parsed from (for errors and `Debug`).
struct Compiled {
    text: String,
    template: Template,
}

impl fmt::Debug for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Table(c) => write!(f, "Format::Table({:?})", c.text),
            Kind::Lines(c) => write!(f, "Format::Lines({:?})", c.text),
            Kind::Json => write!(f, "Format::Json"),
        }
    }
}

impl Format {
    /// Parses a `--format` value; a template that does not parse is refused with Go's
    /// wording (`template parsing error: ...`), before anything is asked of the daemon.
    pub fn parse(text: &str) -> Result<Self, String> {
        let trimmed = text.trim();
        let kind = if trimmed == "json" || trimmed == "{{json .}}" {
            Kind::Json
        } else if let Some(rest) = trimmed.strip_prefix("table") {
            Kind::Table(compile(rest.trim_start())?)
        } else {
            Kind::Lines(compile(text)?)
        };
        Ok(Self { kind })
    }

    /// Renders `rows` of `listing`; a bare `table` is the listing's default table.
    pub fn render(&self, listing: &Listing, rows: &[Cells]) -> Result<String, String> {
        match &self.kind {
            Kind::Json => rows
                .iter()
                .map(|row| {
                    serde_json::to_string(row)
                        .map(|line| format!("{line}\n"))
                        .map_err(|e| e.to_string())
                })
                .collect(),
            Kind::Lines(compiled) => rows
                .iter()
                .map(|row| compiled.run(row_value(row)).map(|line| format!("{line}\n")))
                .collect(),
            Kind::Table(compiled) if compiled.text.trim().is_empty() => listing.render(None, rows),
            Kind::Table(compiled) => {
                let header: HashMap<String, Value> = listing
                    .headers
                    .iter()
                    .map(|(field, head)| ((*field).to_owned(), Value::from(*head)))
                    .collect();
                let mut lines = vec![columns(&compiled.run(Value::Object(header))?)];
                for row in rows {
                    lines.push(columns(&compiled.run(row_value(row))?));
                }
                Ok(table(&lines))
            }
        }
    }
}

impl Format {
    /// `inspect --format`: the template once per object, over the object as the Engine API
    /// shows it (`{{.Spec.Name}}`, `{{json .Spec}}`); `json` prints each object on a line.
    pub fn render_objects(&self, objects: &[serde_json::Value]) -> Result<String, String> {
        match &self.kind {
            Kind::Json => Ok(objects.iter().map(|o| format!("{o}\n")).collect()),
            Kind::Lines(compiled) | Kind::Table(compiled) => objects
                .iter()
                .map(|o| compiled.run(from_json(o)).map(|line| format!("{line}\n")))
                .collect(),
        }
    }
}

/// `inspect`'s output: docker's indented JSON array of the objects, or `--format` over each.
pub fn inspect_output<T: serde::Serialize>(
    objects: &[T],
    format: Option<&Format>,
) -> Result<String, String> {
    match format {
        None => Ok(format!("{}\n", super::output::indent_json(&objects))),
        Some(format) => {
            let values = objects
                .iter()
                .map(serde_json::to_value)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| e.to_string())?;
            format.render_objects(&values)
        }
    }
}

/// A JSON value as a template sees it.
fn from_json(value: &serde_json::Value) -> Value {
    match value {
        serde_json::Value::Null => Value::Nil,
        serde_json::Value::Bool(b) => Value::Bool(*b),
        serde_json::Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                Value::from(u)
            } else if let Some(i) = n.as_i64() {
                Value::from(i)
            } else {
                Value::from(n.as_f64().unwrap_or_default())
            }
        }
        serde_json::Value::String(s) => Value::from(s.as_str()),
        serde_json::Value::Array(items) => Value::Array(items.iter().map(from_json).collect()),
        serde_json::Value::Object(map) => {
            Value::Object(map.iter().map(|(k, v)| (k.clone(), from_json(v))).collect())
        }
    }
}

/// What one listing (`service ls`, `service ps`, …) shows by default and calls its columns.
#[derive(Debug, Clone, Copy)]
pub struct Listing {
    /// Each field's column header (`CurrentState` → `CURRENT STATE`).
    pub headers: &'static [(&'static str, &'static str)],
    /// docker's default, a `table ...` template over those fields.
    pub default_table: &'static str,
}

impl Listing {
    /// Renders `rows` with `format`, or with the default table when there is none.
    pub fn render(&self, format: Option<&Format>, rows: &[Cells]) -> Result<String, String> {
        match format {
            Some(format) => format.render(self, rows),
            None => Format::parse(self.default_table)?.render(self, rows),
        }
    }
}

/// A `--format` flag's value, parsed; a template that does not parse is a usage error.
pub fn parse_format(text: Option<&str>) -> Result<Option<Format>, super::output::CliFailure> {
    text.map(Format::parse)
        .transpose()
        .map_err(super::output::CliFailure::Usage)
}

/// `inspect`'s `--format`, refused with `--pretty` as docker refuses it.
pub fn inspect_format(
    pretty: bool,
    text: Option<&str>,
) -> Result<Option<Format>, super::output::CliFailure> {
    if pretty && text.is_some_and(|t| !t.is_empty()) {
        return Err(super::output::CliFailure::Usage(
            "--format is incompatible with human friendly format".to_owned(),
        ));
    }
    parse_format(text.filter(|t| !t.is_empty()))
}

fn columns(line: &str) -> Vec<String> {
    line.split('\t').map(str::to_owned).collect()
}

fn row_value(row: &Cells) -> Value {
    Value::Object(
        row.iter()
            .map(|(k, v)| ((*k).to_owned(), Value::from(v.as_str())))
            .collect(),
    )
}

fn compile(text: &str) -> Result<Compiled, String> {
    // docker's CLI turns the two escapes users type in a shell into the characters.
    let text = text.replace("\\t", "\t").replace("\\n", "\n");
    let mut template = Template::default();
    for (name, func) in FUNCS {
        template.add_func(name, *func);
    }
    template
        .parse(text.clone())
        .map_err(|e| format!("template parsing error: {e}"))?;
    Ok(Compiled { text, template })
}

impl Compiled {
    fn run(&self, data: Value) -> Result<String, String> {
        self.template
            .render(&Context::from(data.clone()))
            .map_err(|e| match e {
                // Its own text would print the whole row; say what the row has instead.
                ExecError::NoFiledFor(field, _) => {
                    let known: Vec<String> = match &data {
                        Value::Object(fields) => {
                            let mut names: Vec<String> =
                                fields.keys().map(|k| format!(".{k}")).collect();
                            names.sort();
                            names
                        }
                        _ => Vec::new(),
                    };
                    format!(
                        "template: can't evaluate field {field}: use one of {}",
                        known.join(" ")
                    )
                }
                other => format!("template: {other}"),
            })
    }
}

/// docker's template functions (`cli/templates/templates.go`).
const FUNCS: &[(&str, gtmpl::Func)] = &[
    ("json", json),
    ("join", join),
    ("split", split),
    ("lower", lower),
    ("upper", upper),
    ("title", title),
    ("truncate", truncate),
    ("pad", pad),
    ("println", println),
];

fn text_arg(args: &[Value], at: usize, func: &str, count: usize) -> Result<String, FuncError> {
    if args.len() != count {
        return Err(FuncError::ExactlyXArgs(func.to_owned(), count));
    }
    Ok(args[at].to_string())
}

fn number_arg(args: &[Value], at: usize) -> Result<usize, FuncError> {
    args[at]
        .to_string()
        .parse()
        .map_err(|_| FuncError::UnableToConvertFromValue)
}

fn to_json(value: &Value) -> serde_json::Value {
    match value {
        Value::NoValue | Value::Nil | Value::Function(_) => serde_json::Value::Null,
        Value::Bool(b) => serde_json::Value::Bool(*b),
        Value::String(s) => serde_json::Value::String(s.clone()),
        Value::Number(n) => serde_json::from_str(&n.to_string()).unwrap_or(serde_json::Value::Null),
        Value::Array(items) => serde_json::Value::Array(items.iter().map(to_json).collect()),
        Value::Object(map) | Value::Map(map) => {
            let sorted: BTreeMap<&String, serde_json::Value> =
                map.iter().map(|(k, v)| (k, to_json(v))).collect();
            serde_json::to_value(sorted).unwrap_or(serde_json::Value::Null)
        }
    }
}

fn json(args: &[Value]) -> Result<Value, FuncError> {
    let [value] = args else {
        return Err(FuncError::ExactlyXArgs("json".to_owned(), 1));
    };
    Ok(Value::from(to_json(value).to_string()))
}

fn join(args: &[Value]) -> Result<Value, FuncError> {
    let [Value::Array(items), separator] = args else {
        return Err(FuncError::Generic(
            "join needs a list and a separator".to_owned(),
        ));
    };
    let parts: Vec<String> = items.iter().map(ToString::to_string).collect();
    Ok(Value::from(parts.join(&separator.to_string())))
}

fn split(args: &[Value]) -> Result<Value, FuncError> {
    let text = text_arg(args, 0, "split", 2)?;
    let separator = args[1].to_string();
    Ok(Value::Array(
        text.split(separator.as_str()).map(Value::from).collect(),
    ))
}

fn lower(args: &[Value]) -> Result<Value, FuncError> {
    Ok(Value::from(text_arg(args, 0, "lower", 1)?.to_lowercase()))
}

fn upper(args: &[Value]) -> Result<Value, FuncError> {
    Ok(Value::from(text_arg(args, 0, "upper", 1)?.to_uppercase()))
}

fn title(args: &[Value]) -> Result<Value, FuncError> {
    let text = text_arg(args, 0, "title", 1)?;
    let mut out = String::with_capacity(text.len());
    let mut at_start = true;
    for c in text.chars() {
        if at_start {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        at_start = !c.is_alphanumeric();
    }
    Ok(Value::from(out))
}

fn truncate(args: &[Value]) -> Result<Value, FuncError> {
    let text = text_arg(args, 0, "truncate", 2)?;
    let length = number_arg(args, 1)?;
    Ok(Value::from(text.chars().take(length).collect::<String>()))
}

fn pad(args: &[Value]) -> Result<Value, FuncError> {
    let text = text_arg(args, 0, "pad", 3)?;
    let (left, right) = (number_arg(args, 1)?, number_arg(args, 2)?);
    Ok(Value::from(format!(
        "{}{text}{}",
        " ".repeat(left),
        " ".repeat(right)
    )))
}

fn println(args: &[Value]) -> Result<Value, FuncError> {
    let words: Vec<String> = args.iter().map(ToString::to_string).collect();
    Ok(Value::from(format!("{}\n", words.join(" "))))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows() -> Vec<Cells> {
        vec![
            Cells::from([("ID", "abc".to_owned()), ("Name", "web".to_owned())]),
            Cells::from([("ID", "defghi".to_owned()), ("Name", "db".to_owned())]),
        ]
    }

    const LISTING: Listing = Listing {
        headers: &[("ID", "ID"), ("Name", "NAME")],
        default_table: "table {{.ID}}\\t{{.Name}}",
    };

    #[test]
    fn a_table_has_docker_headers_and_aligned_columns() {
        let format = Format::parse("table {{.Name}}\\t{{.ID}}").unwrap();
        let text = format.render(&LISTING, &rows()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0].split_whitespace().collect::<Vec<_>>(),
            ["NAME", "ID"]
        );
        assert_eq!(
            lines[1].split_whitespace().collect::<Vec<_>>(),
            ["web", "abc"]
        );
        // Columns line up: the second column starts at the same offset on every line.
        let at = |l: &str, w: &str| l.find(w).unwrap();
        assert_eq!(at(lines[0], "ID"), at(lines[1], "abc"));
    }

    #[test]
    fn a_bare_template_is_one_line_per_row_with_docker_functions() {
        let format = Format::parse("{{.Name}}: {{upper .Name}} {{truncate .ID 3}}").unwrap();
        assert_eq!(
            format.render(&LISTING, &rows()).unwrap(),
            "web: WEB abc\ndb: DB def\n"
        );
        let joined = Format::parse("{{join (split .ID \"e\") \"+\"}}").unwrap();
        assert_eq!(joined.render(&LISTING, &rows()[1..]).unwrap(), "d+fghi\n");
    }

    #[test]
    fn json_is_one_object_per_row() {
        for text in ["json", "{{json .}}"] {
            let out = Format::parse(text)
                .unwrap()
                .render(&LISTING, &rows())
                .unwrap();
            assert_eq!(out.lines().next(), Some(r#"{"ID":"abc","Name":"web"}"#));
        }
        let field = Format::parse("{{json .Name}}").unwrap();
        assert_eq!(field.render(&LISTING, &rows()[..1]).unwrap(), "\"web\"\n");
    }

    #[test]
    fn inspect_templates_run_over_nested_objects() {
        let objects = [serde_json::json!({
            "ID": "abc",
            "Spec": {"Name": "web", "Labels": {"app": "shop"}},
            "ManagerStatus": {"Addr": "10.0.0.1:2377", "Leader": true},
            "Ports": [{"PublishedPort": 8080}],
        })];
        let run =
            |text: &str| inspect_output(&objects, Some(&Format::parse(text).unwrap())).unwrap();
        assert_eq!(run("{{.ManagerStatus.Addr}}"), "10.0.0.1:2377\n");
        assert_eq!(
            run("{{.Spec.Name}} {{index .Spec.Labels \"app\"}}"),
            "web shop\n"
        );
        assert_eq!(run("{{json .Spec.Labels}}"), "{\"app\":\"shop\"}\n");
        assert_eq!(
            run("{{range .Ports}}{{.PublishedPort}}{{end}} {{.ManagerStatus.Leader}}"),
            "8080 true\n"
        );
        let plain = inspect_output(&objects, None).unwrap();
        assert!(plain.starts_with("[\n    {"), "{plain}");
    }

    #[test]
    fn a_broken_template_is_refused_and_a_bare_table_is_the_default() {
        let err = Format::parse("{{.Name").unwrap_err();
        assert!(err.starts_with("template parsing error"), "{err}");
        let unknown = Format::parse("{{.Colour}}")
            .unwrap()
            .render(&LISTING, &rows());
        assert_eq!(
            unknown.unwrap_err(),
            "template: can't evaluate field Colour: use one of .ID .Name"
        );
        let bare = Format::parse("table")
            .unwrap()
            .render(&LISTING, &rows())
            .unwrap();
        assert_eq!(bare, LISTING.render(None, &rows()).unwrap());
        assert!(bare.starts_with("ID "), "{bare}");
    }
}
