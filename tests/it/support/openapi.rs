//! The committed OpenAPI document as the tests read it: its operations, the schema of each
//! documented answer, and validation of real answers against those schemas (JSON Schema
//! draft 2020-12, `$ref`s resolved into the document's components).
//!
//! Validation is closed: an object may carry only the properties its schema lists, so a
//! field that the server sends but the document does not know fails as surely as a
//! documented field the server leaves out.

use std::collections::BTreeSet;

use serde_json::{json, Map, Value};

/// Where the document is committed.
pub const COMMITTED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/openapi.json");

/// The HTTP methods an OpenAPI path item can document, lower-case as in the document.
pub const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// The committed document.
pub fn committed_text() -> String {
    std::fs::read_to_string(COMMITTED)
        .unwrap_or_else(|e| panic!("{COMMITTED} cannot be read ({e})"))
}

/// A parsed OpenAPI document.
pub struct OpenApiDoc {
    doc: Value,
    /// `components` with every object schema closed (see the module doc).
    closed_components: Value,
}

impl OpenApiDoc {
    /// Parses a document.
    pub fn parse(text: &str) -> OpenApiDoc {
        let doc: Value = serde_json::from_str(text).expect("the document is JSON");
        let mut closed_components = doc["components"].clone();
        let open = allof_members(&doc["components"]);
        if let Some(schemas) = closed_components["schemas"].as_object_mut() {
            for (name, schema) in schemas.iter_mut() {
                close(schema, !open.contains(name));
            }
        }
        OpenApiDoc {
            doc,
            closed_components,
        }
    }

    /// The document itself.
    pub fn value(&self) -> &Value {
        &self.doc
    }

    /// Every documented path with the methods it documents.
    pub fn operations(&self) -> Vec<(String, Vec<&'static str>)> {
        let paths = self.doc["paths"].as_object().expect("paths is an object");
        paths
            .iter()
            .map(|(path, item)| {
                let methods = METHODS
                    .into_iter()
                    .filter(|m| item.get(*m).is_some())
                    .collect();
                (path.clone(), methods)
            })
            .collect()
    }

    /// The documented statuses of `method path`.
    pub fn statuses(&self, method: &str, path: &str) -> Vec<u16> {
        self.operation(method, path)["responses"]
            .as_object()
            .expect("responses is an object")
            .keys()
            .map(|s| s.parse().expect("numeric status"))
            .collect()
    }

    fn operation(&self, method: &str, path: &str) -> &Value {
        let operation = &self.doc["paths"][path][method];
        assert!(operation.is_object(), "{method} {path} is not documented");
        operation
    }

    /// The response object of `status` for `method path`, `$ref` resolved.
    fn response(&self, method: &str, path: &str, status: u16) -> &Value {
        let response = &self.operation(method, path)["responses"][status.to_string()];
        assert!(
            response.is_object(),
            "{method} {path} answered {status}, which the document does not list (it lists {:?})",
            self.statuses(method, path)
        );
        match response["$ref"].as_str() {
            Some(pointer) => self.resolve(pointer),
            None => response,
        }
    }

    fn resolve(&self, reference: &str) -> &Value {
        let pointer = reference
            .strip_prefix('#')
            .unwrap_or_else(|| panic!("{reference}: only local references are expected"));
        self.doc
            .pointer(pointer)
            .unwrap_or_else(|| panic!("{reference} resolves to nothing"))
    }

    /// The media types documented for `status` of `method path` (without parameters).
    pub fn media_types(&self, method: &str, path: &str, status: u16) -> Vec<String> {
        self.response(method, path, status)["content"]
            .as_object()
            .map(|content| content.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Checks one real answer of `method path` against the document: the status is listed,
    /// the content type is the documented one, and the body (parsed when JSON, else taken as
    /// a string) validates against its schema.
    pub fn check(&self, method: &str, path: &str, status: u16, content_type: &str, body: &str) {
        let media = content_type.split(';').next().unwrap_or("").trim();
        let documented = self.media_types(method, path, status);
        assert!(
            documented.iter().any(|m| m == media),
            "{method} {path} {status}: content type {content_type:?}, documented {documented:?}"
        );
        let schema = &self.response(method, path, status)["content"][media]["schema"];
        let instance = if media == "application/json" {
            serde_json::from_str(body).unwrap_or_else(|e| {
                panic!("{method} {path} {status}: body is not JSON ({e}): {body:?}")
            })
        } else {
            Value::String(body.to_string())
        };
        if let Err(errors) = self.validate(schema, &instance) {
            panic!("{method} {path} {status}: the answer does not match the document:\n{errors}\nanswer: {instance}\nschema: {schema}");
        }
    }

    /// Validates `instance` against `schema` (which may `$ref` into the components); `Err`
    /// lists every violation.
    pub fn validate(&self, schema: &Value, instance: &Value) -> Result<(), String> {
        let mut root = match schema {
            Value::Object(map) => map.clone(),
            Value::Bool(true) => Map::new(),
            other => panic!("unexpected schema {other}"),
        };
        root.insert(
            "$schema".into(),
            json!("https://json-schema.org/draft/2020-12/schema"),
        );
        root.insert("components".into(), self.closed_components.clone());
        let root = Value::Object(root);
        let validator = jsonschema::draft202012::new(&root)
            .unwrap_or_else(|e| panic!("schema does not compile ({e}): {root}"));
        let errors: Vec<String> = validator
            .iter_errors(instance)
            .map(|e| format!("  at {}: {e}", e.instance_path()))
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("\n"))
        }
    }

    /// The schema `#/components/schemas/<name>` as a reference.
    pub fn schema_ref(name: &str) -> Value {
        json!({"$ref": format!("#/components/schemas/{name}")})
    }
}

/// Names of the component schemas used as `allOf` members: they describe part of an object
/// only, so they stay open and the composing schema is closed instead.
fn allof_members(components: &Value) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    collect_allof_refs(components, &mut names);
    names
}

fn collect_allof_refs(value: &Value, names: &mut BTreeSet<String>) {
    match value {
        Value::Object(map) => {
            if let Some(members) = map.get("allOf").and_then(Value::as_array) {
                for member in members {
                    if let Some(name) = member["$ref"]
                        .as_str()
                        .and_then(|r| r.strip_prefix("#/components/schemas/"))
                    {
                        names.insert(name.to_string());
                    }
                }
            }
            map.values().for_each(|v| collect_allof_refs(v, names));
        }
        Value::Array(items) => items.iter().for_each(|v| collect_allof_refs(v, names)),
        _ => {}
    }
}

/// Adds `unevaluatedProperties: false` to every object schema in `schema` that does not say
/// otherwise, except the top level when `close_top` is false and inline `allOf` members.
fn close(schema: &mut Value, close_top: bool) {
    let Value::Object(map) = schema else { return };
    let is_object = map.contains_key("properties") || map.contains_key("allOf");
    let says =
        map.contains_key("additionalProperties") || map.contains_key("unevaluatedProperties");
    if close_top && is_object && !says {
        map.insert("unevaluatedProperties".into(), Value::Bool(false));
    }
    for (keyword, child) in map.iter_mut() {
        match (keyword.as_str(), child) {
            ("allOf", Value::Array(members)) => members.iter_mut().for_each(|m| close(m, false)),
            ("properties", Value::Object(properties)) => {
                properties.values_mut().for_each(|p| close(p, true))
            }
            ("items" | "additionalProperties", child) => close(child, true),
            ("oneOf" | "anyOf", Value::Array(members)) => {
                members.iter_mut().for_each(|m| close(m, true))
            }
            _ => {}
        }
    }
}
