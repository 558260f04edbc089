//! The OpenAPI 3.1 document, generated from the route table. Each row names
//! the Rust types of its query string, body and answer; their JSON Schemas
//! come from the types themselves (schemars, through the `schema` feature of
//! slipway-types), so a field added to a type is in the document at once and
//! the validated newtypes carry their patterns and bounds.
use super::{RouteDoc, ROUTES};
use actix_web::web;
use schemars::{generate::SchemaSettings, json_schema, JsonSchema, Schema, SchemaGenerator};
use serde_json::{json, Map, Value};
use slipway_types::{ApiErrorBody, EnvVarName};
use std::{marker::PhantomData, sync::OnceLock};

/// The schema of a route's query parameters (an object; one parameter per property).
pub type SchemaFn = fn(&mut SchemaGenerator) -> Schema;
/// The media types and schemas of a body.
pub type PayloadFn = fn(&mut SchemaGenerator) -> Vec<(&'static str, Schema)>;

/// What a request or an answer carries. Every JSON type carries itself.
pub trait Payload {
    /// False for "no body".
    const PRESENT: bool = true;
    fn content(gen: &mut SchemaGenerator) -> Vec<(&'static str, Schema)>;
}

impl<T: JsonSchema> Payload for T {
    fn content(gen: &mut SchemaGenerator) -> Vec<(&'static str, Schema)> {
        vec![("application/json", gen.subschema_for::<T>())]
    }
}

/// No body (204 answers, routes that read nothing).
pub struct NoBody;

impl Payload for NoBody {
    const PRESENT: bool = false;
    fn content(_: &mut SchemaGenerator) -> Vec<(&'static str, Schema)> {
        Vec::new()
    }
}

/// The agent's WebSocket upgrade (101, no body).
pub struct WebSocket;

impl Payload for WebSocket {
    const PRESENT: bool = false;
    fn content(_: &mut SchemaGenerator) -> Vec<(&'static str, Schema)> {
        Vec::new()
    }
}

/// Server-sent events whose `data:` lines are JSON `T`s.
pub struct EventStream<T>(PhantomData<T>);

impl<T: JsonSchema> Payload for EventStream<T> {
    fn content(gen: &mut SchemaGenerator) -> Vec<(&'static str, Schema)> {
        let data = gen.subschema_for::<T>();
        vec![(
            "text/event-stream",
            json_schema!({
                "type": "string",
                "description": "Server-sent events; each `data:` line is one JSON value of x-sse-data.",
                "x-sse-data": data,
            }),
        )]
    }
}

/// JSON, or CSV when the query asks for `format=csv`.
pub struct JsonOrCsv<T>(PhantomData<T>);

impl<T: JsonSchema> Payload for JsonOrCsv<T> {
    fn content(gen: &mut SchemaGenerator) -> Vec<(&'static str, Schema)> {
        vec![
            ("application/json", gen.subschema_for::<T>()),
            ("text/csv", json_schema!({"type": "string"})),
        ]
    }
}

/// A provider's webhook payload: any JSON object (verified by signature).
pub type JsonObject = Map<String, Value>;

/// A route's query string, from the type its handler extracts with `web::Query`.
pub trait QueryParams {
    const PRESENT: bool = true;
    fn schema(gen: &mut SchemaGenerator) -> Schema;
}

impl<T: JsonSchema> QueryParams for T {
    fn schema(gen: &mut SchemaGenerator) -> Schema {
        T::json_schema(gen)
    }
}

/// No query parameters.
pub struct NoQuery;

impl QueryParams for NoQuery {
    const PRESENT: bool = false;
    fn schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({"type": "object"})
    }
}

/// The schema of a path parameter, by its name in the route table.
fn path_param_schema(name: &str, gen: &mut SchemaGenerator) -> Value {
    match name {
        "name" => gen.subschema_for::<EnvVarName>().to_value(),
        "container" => json!({"type": "string", "minLength": 1, "maxLength": 128,
                              "pattern": "^[A-Za-z0-9][A-Za-z0-9_.-]*$"}),
        _ => json!({"type": "string", "format": "uuid"}),
    }
}

/// `Option<T>` fields are `T` or null in a body; a query parameter is
/// simply left out instead.
fn without_null(mut schema: Value) -> Value {
    if let Some(Value::Array(types)) = schema.get_mut("type") {
        types.retain(|t| t != "null");
        if types.len() == 1 {
            schema["type"] = types[0].take();
        }
    }
    if let Some(Value::Array(any)) = schema.get("anyOf") {
        let rest: Vec<Value> = any
            .iter()
            .filter(|s| s.get("type") != Some(&json!("null")))
            .cloned()
            .collect();
        if let [only] = rest.as_slice() {
            let mut merged = only.clone();
            if let (Some(m), Some(outer)) = (merged.as_object_mut(), schema.as_object()) {
                for (k, v) in outer {
                    if k != "anyOf" && k != "default" {
                        m.entry(k.clone()).or_insert_with(|| v.clone());
                    }
                }
            }
            return merged;
        }
    }
    if let Some(m) = schema.as_object_mut() {
        m.remove("default");
    }
    schema
}

fn query_params(query: SchemaFn, gen: &mut SchemaGenerator) -> Vec<Value> {
    let schema = query(gen).to_value();
    let required: Vec<&str> = schema["required"]
        .as_array()
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let Some(props) = schema["properties"].as_object() else {
        return Vec::new();
    };
    props
        .iter()
        .map(|(name, prop)| {
            let mut p = json!({
                "name": name,
                "in": "query",
                "required": required.contains(&name.as_str()),
                "schema": without_null(prop.clone()),
            });
            if let Some(d) = prop.get("description") {
                p["description"] = d.clone();
            }
            p
        })
        .collect()
}

fn content(parts: Vec<(&'static str, Schema)>) -> Value {
    parts
        .into_iter()
        .map(|(media, schema)| (media.to_owned(), json!({"schema": schema})))
        .collect::<Map<_, _>>()
        .into()
}

fn operation(r: &RouteDoc, gen: &mut SchemaGenerator) -> Value {
    let mut params = Vec::new();
    for seg in r.path.split('/') {
        if let Some(name) = seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            let schema = path_param_schema(name, gen);
            params.push(json!({"name": name, "in": "path", "required": true, "schema": schema}));
        }
    }
    if let Some(query) = r.query {
        params.extend(query_params(query, gen));
    }
    let mut responses = Map::new();
    let answer = (r.response)(gen);
    for status in r.statuses {
        let mut resp = json!({"description": r.summary});
        if !answer.is_empty() {
            resp["content"] = content(answer.clone());
        }
        responses.insert(status.to_string(), resp);
    }
    responses.insert(
        "4XX".into(),
        json!({"$ref": "#/components/responses/Error"}),
    );
    let mut op = json!({
        "summary": r.summary,
        "operationId": format!("{}_{}", r.method, r.path.trim_start_matches("/api/v1/").replace(['/', '{', '}', '.', '-'], "_")),
        "parameters": params,
        "responses": responses,
        "x-min-role": r.role.map(|r| r.as_str()),
        "x-token-action": r.action.map(|a| a.as_str()),
    });
    match r.role {
        None => op["security"] = json!([]),
        Some(_) => op["security"] = json!([{"session": []}, {"bearer": []}]),
    }
    if let Some(request) = r.request {
        op["requestBody"] = json!({"required": true, "content": content(request(gen))});
    }
    op
}

/// schemars writes Rust's integer widths as `format` (`uint32`…), which
/// clients and schemathesis do not read as bounds: say them as bounds too.
fn bound_integers(v: &mut Value) {
    match v {
        Value::Object(m) => {
            let bounds = match m.get("format").and_then(Value::as_str) {
                Some("uint8") => Some((json!(0), json!(u8::MAX))),
                Some("uint16") => Some((json!(0), json!(u16::MAX))),
                Some("uint32") => Some((json!(0), json!(u32::MAX))),
                Some("uint64") => Some((json!(0), json!(u64::MAX))),
                Some("int8") => Some((json!(i8::MIN), json!(i8::MAX))),
                Some("int16") => Some((json!(i16::MIN), json!(i16::MAX))),
                Some("int32") => Some((json!(i32::MIN), json!(i32::MAX))),
                Some("int64") => Some((json!(i64::MIN), json!(i64::MAX))),
                _ => None,
            };
            if let Some((min, max)) = bounds {
                m.entry("minimum").or_insert(min);
                m.entry("maximum").or_insert(max);
            }
            m.values_mut().for_each(bound_integers);
        }
        Value::Array(a) => a.iter_mut().for_each(bound_integers),
        _ => {}
    }
}

pub fn build() -> Value {
    let mut doc = build_unbounded();
    bound_integers(&mut doc);
    doc
}

fn build_unbounded() -> Value {
    let mut gen = SchemaSettings::draft2020_12()
        .with(|s| {
            s.definitions_path = "/components/schemas".into();
            s.meta_schema = None;
        })
        .for_deserialize()
        .into_generator();
    let mut paths: Map<String, Value> = Map::new();
    for r in ROUTES {
        let op = operation(r, &mut gen);
        let entry = paths.entry(r.path.to_owned()).or_insert_with(|| json!({}));
        entry[r.method] = op;
    }
    let error = gen.subschema_for::<ApiErrorBody>();
    json!({
        "openapi": "3.1.0",
        "info": {"title": "Slipway API", "version": env!("CARGO_PKG_VERSION")},
        "paths": paths,
        "components": {
            "securitySchemes": {
                "session": {"type": "apiKey", "in": "cookie", "name": crate::auth::SESSION_COOKIE,
                            "description": "Mutations also need the X-CSRF-Token header"},
                "bearer": {"type": "http", "scheme": "bearer"}
            },
            "schemas": gen.take_definitions(true),
            "responses": {
                "Error": {
                    "description": "Error: a stable code, a message and the offending field",
                    "content": {"application/json": {"schema": error}}
                }
            }
        }
    })
}

/// Built once: the document only changes with the code.
pub async fn document() -> web::Json<Value> {
    static DOC: OnceLock<Value> = OnceLock::new();
    web::Json(DOC.get_or_init(build).clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refs<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(r)) = m.get("$ref") {
                    out.push(r);
                }
                m.values().for_each(|v| refs(v, out));
            }
            Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }

    /// Every `$ref` points into the document, and every route of the table
    /// is in it with its success statuses.
    #[test]
    fn the_document_is_whole() {
        let doc = build();
        let mut found = Vec::new();
        refs(&doc, &mut found);
        assert!(found.len() > 50, "{} references", found.len());
        for r in found {
            let pointer = r.strip_prefix('#').unwrap_or(r);
            assert!(doc.pointer(pointer).is_some(), "dangling {r}");
        }
        for r in ROUTES {
            let op = &doc["paths"][r.path][r.method];
            for status in r.statuses {
                assert!(
                    op["responses"][status.to_string()].is_object(),
                    "{} {}",
                    r.method,
                    r.path
                );
            }
            assert_eq!(op["requestBody"].is_object(), r.request.is_some());
        }
    }
}
