//! Request extractors whose failures use the API error body: JSON bodies
//! parsed with the path of the offending field, and pagination.
use crate::error::ApiError;
use actix_web::{dev::Payload, web, FromRequest, HttpRequest};
use futures_util::{future::LocalBoxFuture, StreamExt};
use serde::{
    de::{self, DeserializeOwned, Visitor},
    Deserialize, Deserializer,
};
use serde_json::Value;
use slipway_types::{
    api::{Validate, DEFAULT_PAGE_LIMIT, MAX_PAGE_LIMIT},
    decode,
};

/// Largest accepted body, from `max_body_bytes`.
#[derive(Clone, Copy)]
pub struct BodyLimit(pub usize);

/// A JSON body parsed into `T` and validated ([`Validate`]), so a handler
/// only ever sees a checked body. Syntax errors → 400 `malformed_json`; a
/// value rejected by a field's type or by `T::validate` → 422
/// `invalid_input` naming the field.
pub struct ValidJson<T>(pub T);

impl<T: DeserializeOwned + Validate + 'static> FromRequest for ValidJson<T> {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let limit = req
            .app_data::<BodyLimit>()
            .copied()
            .unwrap_or(BodyLimit(1 << 20))
            .0;
        let mut payload = payload.take();
        Box::pin(async move {
            let mut body = web::BytesMut::new();
            while let Some(chunk) = payload.next().await {
                let chunk = chunk.map_err(|e| match e {
                    actix_web::error::PayloadError::Overflow => ApiError::PayloadTooLarge(limit),
                    other => ApiError::MalformedJson(other.to_string()),
                })?;
                if body.len() + chunk.len() > limit {
                    return Err(ApiError::PayloadTooLarge(limit));
                }
                body.extend_from_slice(&chunk);
            }
            parse_json(&body).map(ValidJson)
        })
    }
}

/// Parses a JSON body into `T` and validates it, the one way every handler
/// reads JSON.
///
/// Two steps: the bytes become a JSON tree (syntax → `malformed_json`; a key
/// given twice → `invalid_input`, as serde would say of a struct), then the
/// tree is decoded by [`slipway_types::decode`], which offers a struct only
/// the object form at every level: serde's derived structs would also read
/// a JSON array positionally (`["name","admin"]`). Any shape or value error
/// → 422 `invalid_input` naming the field, and so does a `validate` failure.
pub fn parse_json<T: DeserializeOwned + Validate>(body: &[u8]) -> Result<T, ApiError> {
    let value = parse_tree(body)?;
    let parsed: T = serde_path_to_error::deserialize(decode::De::new(value)).map_err(|e| {
        let path = e.path().to_string();
        ApiError::Invalid {
            field: (path != ".").then_some(path),
            message: e.into_inner().to_string(),
        }
    })?;
    parsed.validate()?;
    Ok(parsed)
}

fn parse_tree(body: &[u8]) -> Result<Value, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    let StrictTree(tree) = serde_path_to_error::deserialize(&mut *de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        match inner.classify() {
            serde_json::error::Category::Data => ApiError::Invalid {
                field: (path != ".").then_some(path),
                message: strip_position(&inner.to_string()),
            },
            _ => ApiError::MalformedJson(inner.to_string()),
        }
    })?;
    de.end()
        .map_err(|e| ApiError::MalformedJson(e.to_string()))?;
    Ok(tree)
}

/// A JSON tree in which no object has the same key twice (`serde_json::Value`
/// would keep the last one silently, where a struct says "duplicate field").
struct StrictTree(Value);

impl<'de> Deserialize<'de> for StrictTree {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(TreeVisitor).map(StrictTree)
    }
}

struct TreeVisitor;

impl<'de> Visitor<'de> for TreeVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E: de::Error>(self, b: bool) -> Result<Value, E> {
        Ok(Value::Bool(b))
    }

    fn visit_i64<E: de::Error>(self, n: i64) -> Result<Value, E> {
        Ok(Value::from(n))
    }

    fn visit_u64<E: de::Error>(self, n: u64) -> Result<Value, E> {
        Ok(Value::from(n))
    }

    fn visit_f64<E: de::Error>(self, n: f64) -> Result<Value, E> {
        Ok(Value::from(n))
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<Value, E> {
        Ok(Value::String(s.to_owned()))
    }

    fn visit_string<E: de::Error>(self, s: String) -> Result<Value, E> {
        Ok(Value::String(s))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(StrictTree(v)) = seq.next_element()? {
            items.push(v);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = serde_json::Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if object.contains_key(&key) {
                return Err(de::Error::custom(format_args!("duplicate field `{key}`")));
            }
            let StrictTree(v) = map.next_value()?;
            object.insert(key, v);
        }
        Ok(Value::Object(object))
    }
}

fn strip_position(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_owned(),
        None => msg.to_owned(),
    }
}

/// `?limit=&offset=` of every list.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct PageQuery {
    #[schemars(range(min = 1, max = slipway_types::api::MAX_PAGE_LIMIT))]
    pub limit: Option<u64>,
    #[schemars(range(max = MAX_OFFSET))]
    pub offset: Option<u64>,
}

/// The largest offset: the databases take a signed 64-bit one.
pub const MAX_OFFSET: u64 = i64::MAX as u64;

impl PageQuery {
    pub fn resolve(&self) -> Result<(u64, u64), ApiError> {
        let limit = self.limit.unwrap_or(DEFAULT_PAGE_LIMIT);
        if limit == 0 || limit > MAX_PAGE_LIMIT {
            return Err(ApiError::invalid(
                "limit",
                format!("must be between 1 and {MAX_PAGE_LIMIT}"),
            ));
        }
        let offset = self.offset.unwrap_or(0);
        if offset > MAX_OFFSET {
            return Err(ApiError::invalid(
                "offset",
                format!("must be at most {MAX_OFFSET}"),
            ));
        }
        Ok((limit, offset))
    }
}

/// Error handlers so that bad paths and query strings answer in the API shape.
pub fn configure_errors(cfg: &mut web::ServiceConfig) {
    cfg.app_data(
        web::PathConfig::default().error_handler(|_, _| ApiError::NotFound("resource").into()),
    )
    .app_data(web::QueryConfig::default().error_handler(|e, _| {
        ApiError::Invalid {
            field: None,
            message: format!("invalid query string: {e}"),
        }
        .into()
    }));
}

#[cfg(test)]
mod tests {
    use super::*;
    use slipway_types::api::{CreateDeployment, CreateToken, NewProject, NewService};

    #[test]
    fn field_paths_are_reported() {
        let e = parse_json::<NewService>(
            br#"{"name":"web","spec":{"image":"app:1","ports":[{"container":0}]}}"#,
        )
        .err();
        match e {
            Some(ApiError::Invalid { field, message }) => {
                assert_eq!(field.as_deref(), Some("spec.ports[0].container"));
                assert!(message.contains("between 1 and 65535"), "{message}");
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(matches!(
            parse_json::<NewService>(b"{not json"),
            Err(ApiError::MalformedJson(_))
        ));
        assert!(matches!(
            parse_json::<NewService>(br#"{"name":"web"} x"#),
            Err(ApiError::MalformedJson(_))
        ));
    }

    fn invalid(r: Result<impl std::fmt::Debug, ApiError>) -> (Option<String>, String) {
        match r {
            Err(ApiError::Invalid { field, message }) => (field, message),
            other => panic!("expected invalid_input, got {other:?}"),
        }
    }

    /// serde's derived structs also read a JSON array positionally; a body
    /// is an object at every level or it is rejected.
    #[test]
    fn structs_are_objects_only_at_every_level() {
        let (field, message) = invalid(parse_json::<CreateToken>(br#"["array-token","admin"]"#));
        assert_eq!(field, None);
        assert_eq!(message, "expected an object, found an array");
        invalid(parse_json::<CreateDeployment>(b"[]"));
        invalid(parse_json::<CreateDeployment>(b"\"x\""));
        invalid(parse_json::<CreateDeployment>(b"7"));
        invalid(parse_json::<CreateDeployment>(b"null"));
        let (field, _) = invalid(parse_json::<NewService>(
            br#"{"name":"web","spec":["app:1"]}"#,
        ));
        assert_eq!(field.as_deref(), Some("spec"));
        let (field, _) = invalid(parse_json::<NewService>(
            br#"{"name":"web","spec":{"image":"app:1","ports":[[80]]}}"#,
        ));
        assert_eq!(field.as_deref(), Some("spec.ports[0]"));
        // The object forms still parse.
        assert!(parse_json::<CreateDeployment>(b"{}").is_ok());
    }

    /// `Validate` runs in the parser: a handler never sees an unchecked body.
    #[test]
    fn bodies_are_validated_by_the_parser() {
        let (field, message) = invalid(parse_json::<NewService>(
            br#"{"name":"web","spec":{"image":"app:1","replicas":2,"ports":[{"container":80,"published":8080},{"container":81,"published":8080}]}}"#,
        ));
        assert_eq!(
            field.as_deref(),
            Some("spec.ports[1].published"),
            "{message}"
        );
        let (field, _) = invalid(parse_json::<NewProject>(
            format!(r#"{{"name":"p","description":"{}"}}"#, "y".repeat(5000)).as_bytes(),
        ));
        assert_eq!(field.as_deref(), Some("description"));
    }

    /// Found by schemathesis: an offset past i64::MAX panicked in the
    /// database layer (connection reset).
    #[test]
    fn offsets_fit_the_database() {
        let q = |offset| {
            PageQuery {
                limit: None,
                offset: Some(offset),
            }
            .resolve()
        };
        assert_eq!(q(MAX_OFFSET).ok(), Some((DEFAULT_PAGE_LIMIT, MAX_OFFSET)));
        assert!(matches!(q(MAX_OFFSET + 1), Err(ApiError::Invalid { .. })));
    }

    #[test]
    fn a_key_given_twice_is_rejected() {
        let (field, message) = invalid(parse_json::<CreateToken>(
            br#"{"name":"t","role":"viewer","role":"admin"}"#,
        ));
        assert_eq!(field, None);
        assert_eq!(message, "duplicate field `role`");
        let (field, _) = invalid(parse_json::<NewService>(
            br#"{"name":"web","spec":{"image":"a:1","image":"b:1"}}"#,
        ));
        assert_eq!(field.as_deref(), Some("spec"));
    }
}
