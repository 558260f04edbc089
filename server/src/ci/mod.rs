//! Releases from CI: signed webhooks (`hooks`) and their pure payload and
//! signature handling (`payload`), trigger-rule globs (`glob`), promotion
//! (`promote`, pure `diff`), and the per-environment deploy policy —
//! approvals, maintenance windows, freezes (`policy`, pure `schedule`).
pub mod diff;
pub mod glob;
pub mod hooks;
pub mod payload;
pub mod policy;
pub mod promote;
pub mod schedule;

use crate::{
    api::extract::{parse_json, BodyLimit},
    error::ApiError,
};
use actix_web::{dev::Payload, web, FromRequest, HttpRequest};
use futures_util::{future::LocalBoxFuture, StreamExt};
use serde::de::DeserializeOwned;
use slipway_types::api::Validate;

/// The raw request body (bounded by `max_body_bytes`), for signature checks.
pub struct RawBody(pub web::Bytes);

impl FromRequest for RawBody {
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
            Ok(RawBody(body.freeze()))
        })
    }
}

/// A JSON body that may also be absent (empty): then `T::default()`.
pub struct OptionalJson<T>(pub T);

impl<T: DeserializeOwned + Default + Validate + 'static> FromRequest for OptionalJson<T> {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let raw = RawBody::from_request(req, payload);
        Box::pin(async move {
            let RawBody(b) = raw.await?;
            if b.iter().all(u8::is_ascii_whitespace) {
                return Ok(OptionalJson(T::default()));
            }
            parse_json(&b).map(OptionalJson)
        })
    }
}

/// Associated data of a webhook secret's ciphertext.
pub fn webhook_aad(webhook_id: uuid::Uuid, version: i32) -> String {
    format!("slipway-webhook:v1:{webhook_id}:{version}")
}
