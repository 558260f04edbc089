//! Request extractors whose failures use the API error body: JSON bodies
//! parsed with the path of the offending field, and pagination.
use crate::error::ApiError;
use actix_web::{dev::Payload, web, FromRequest, HttpRequest};
use futures_util::{future::LocalBoxFuture, StreamExt};
use serde::{de::DeserializeOwned, Deserialize};
use slipway_types::api::{DEFAULT_PAGE_LIMIT, MAX_PAGE_LIMIT};

/// Largest accepted body, from `max_body_bytes`.
#[derive(Clone, Copy)]
pub struct BodyLimit(pub usize);

/// A JSON body parsed into `T`. Syntax errors → 400 `malformed_json`; a
/// value rejected by a field's type → 422 `invalid_input` naming the field.
pub struct ValidJson<T>(pub T);

impl<T: DeserializeOwned + 'static> FromRequest for ValidJson<T> {
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

pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        match inner.classify() {
            serde_json::error::Category::Data => ApiError::Invalid {
                field: (path != ".").then_some(path),
                message: strip_position(&inner.to_string()),
            },
            _ => ApiError::MalformedJson(inner.to_string()),
        }
    })
}

fn strip_position(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_owned(),
        None => msg.to_owned(),
    }
}

#[derive(Debug, Deserialize)]
pub struct PageQuery {
    pub limit: Option<u64>,
    pub offset: Option<u64>,
}

impl PageQuery {
    pub fn resolve(&self) -> Result<(u64, u64), ApiError> {
        let limit = self.limit.unwrap_or(DEFAULT_PAGE_LIMIT);
        if limit == 0 || limit > MAX_PAGE_LIMIT {
            return Err(ApiError::invalid(
                "limit",
                format!("must be between 1 and {MAX_PAGE_LIMIT}"),
            ));
        }
        Ok((limit, self.offset.unwrap_or(0)))
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
    use slipway_types::api::NewService;

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
    }
}
