//! The OpenAPI 3.1 document, generated from the route table.
use super::{RouteDoc, ROUTES};
use actix_web::web;
use serde_json::{json, Map, Value};

fn operation(r: &RouteDoc) -> Value {
    let mut params = Vec::new();
    for seg in r.path.split('/') {
        if let Some(name) = seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            let schema = if name == "id" {
                json!({"type": "string", "format": "uuid"})
            } else {
                json!({"type": "string"})
            };
            params.push(json!({"name": name, "in": "path", "required": true, "schema": schema}));
        }
    }
    let ok = r.status.to_string();
    let err = json!({"$ref": "#/components/responses/Error"});
    let mut responses = Map::new();
    responses.insert(ok, json!({"description": r.response}));
    responses.insert("4XX".into(), err);
    let mut op = json!({
        "summary": r.summary,
        "operationId": format!("{}_{}", r.method, r.path.trim_start_matches("/api/v1/").replace(['/', '{', '}', '.'], "_")),
        "parameters": params,
        "responses": responses,
        "x-min-role": r.role.map(|r| r.as_str()),
    });
    match r.role {
        None => op["security"] = json!([]),
        Some(_) => op["security"] = json!([{"session": []}, {"bearer": []}]),
    }
    if let Some(body) = r.request {
        op["requestBody"] = json!({
            "required": true,
            "description": format!("{body} (see slipway-types)"),
            "content": {"application/json": {"schema": {"type": "object", "title": body}}}
        });
    }
    op
}

pub fn build() -> Value {
    let mut paths: Map<String, Value> = Map::new();
    for r in ROUTES {
        let entry = paths.entry(r.path.to_owned()).or_insert_with(|| json!({}));
        entry[r.method] = operation(r);
    }
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
            "schemas": {
                "ApiErrorBody": {
                    "type": "object",
                    "required": ["error", "message"],
                    "properties": {
                        "error": {"type": "string"},
                        "message": {"type": "string"},
                        "field": {"type": "string"}
                    }
                }
            },
            "responses": {
                "Error": {
                    "description": "Error",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ApiErrorBody"}}}
                }
            }
        }
    })
}

pub async fn document() -> web::Json<Value> {
    web::Json(build())
}
