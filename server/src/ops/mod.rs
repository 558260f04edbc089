//! Operations: request ids, security headers, access logs, Prometheus
//! metrics, and the health/readiness/metrics endpoints.
use crate::{state::AppState, store};
use actix_web::{
    body::MessageBody,
    dev::{ServiceRequest, ServiceResponse},
    http::header::{HeaderName, HeaderValue},
    middleware::Next,
    web, HttpMessage, HttpResponse,
};
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};
use sea_orm::{EntityTrait, QuerySelect};
use std::time::Instant;

/// The request's id: the caller's `X-Request-Id` if it is sane, else a new UUID.
#[derive(Clone, Debug)]
pub struct RequestId(pub String);

pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
    deployments: IntGaugeVec,
}

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new_custom(Some("slipway".into()), None)?;
        let requests = IntCounterVec::new(
            Opts::new(
                "http_requests_total",
                "HTTP requests by route pattern, method and status",
            ),
            &["method", "route", "status"],
        )?;
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "http_request_duration_seconds",
                "HTTP request latency by route pattern",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
            ]),
            &["method", "route", "status"],
        )?;
        let deployments = IntGaugeVec::new(
            Opts::new(
                "deployments",
                "Deployments by state (read from the store at scrape time)",
            ),
            &["state"],
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(latency.clone()))?;
        registry.register(Box::new(deployments.clone()))?;
        Ok(Self {
            registry,
            requests,
            latency,
            deployments,
        })
    }
}

fn sane_request_id(v: &HeaderValue) -> Option<String> {
    let s = v.to_str().ok()?;
    (!s.is_empty()
        && s.len() <= 128
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c)))
    .then(|| s.to_owned())
}

/// Wraps every request: id, timing, metrics, access log and security headers.
pub async fn middleware(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let start = Instant::now();
    let rid = req
        .headers()
        .get("x-request-id")
        .and_then(sane_request_id)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    req.extensions_mut().insert(RequestId(rid.clone()));
    let state = req.app_data::<web::Data<AppState>>().cloned();
    let hsts = state.as_ref().is_some_and(|s| s.settings.secure_cookies());
    let method = req.method().to_string();
    let path = req.path().to_owned();
    let mut res = next.call(req).await?;
    let status = res.status().as_u16();
    let route = res.request().match_pattern().unwrap_or_else(|| {
        if path.starts_with("/api/") {
            "unmatched".into()
        } else {
            "static".into()
        }
    });
    let elapsed = start.elapsed();
    if let Some(state) = &state {
        let labels = [method.as_str(), route.as_str(), &status.to_string()];
        state.metrics.requests.with_label_values(&labels).inc();
        state
            .metrics
            .latency
            .with_label_values(&labels)
            .observe(elapsed.as_secs_f64());
    }
    if route != "/health" && route != "/metrics" {
        tracing::info!(
            request_id = %rid,
            method = %method,
            path = %path,
            route = %route,
            status,
            latency_ms = elapsed.as_secs_f64() * 1000.0,
            "request"
        );
    }
    let h = res.headers_mut();
    let mut set = |k: &'static str, v: &'static str| {
        h.insert(HeaderName::from_static(k), HeaderValue::from_static(v));
    };
    set("x-content-type-options", "nosniff");
    set("x-frame-options", "DENY");
    set("referrer-policy", "no-referrer");
    set("cross-origin-opener-policy", "same-origin");
    set(
        "content-security-policy",
        "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    );
    if hsts {
        set(
            "strict-transport-security",
            "max-age=31536000; includeSubDomains",
        );
    }
    if let Ok(v) = HeaderValue::from_str(&rid) {
        h.insert(HeaderName::from_static("x-request-id"), v);
    }
    Ok(res)
}

pub async fn health() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"status": "ok"}))
}

pub async fn ready(state: web::Data<AppState>) -> HttpResponse {
    match store::ready(&state.db).await {
        Ok(()) => HttpResponse::Ok().json(serde_json::json!({"status": "ready"})),
        Err(reason) => HttpResponse::ServiceUnavailable().json(slipway_types::ApiErrorBody {
            error: slipway_types::ErrorCode::Unavailable,
            message: reason,
            field: None,
        }),
    }
}

pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    use crate::store::entities::deployment;
    let counts: Result<Vec<(String, i64)>, _> = deployment::Entity::find()
        .select_only()
        .column(deployment::Column::State)
        .column_as(
            sea_orm::sea_query::Expr::col(deployment::Column::Id).count(),
            "n",
        )
        .group_by(deployment::Column::State)
        .into_tuple()
        .all(&state.db)
        .await;
    if let Ok(counts) = counts {
        for s in slipway_types::api::DeploymentState::ALL {
            let n = counts
                .iter()
                .find(|(k, _)| k == s.as_str())
                .map_or(0, |(_, n)| *n);
            state
                .metrics
                .deployments
                .with_label_values(&[s.as_str()])
                .set(n);
        }
    }
    let mut families = state.metrics.registry.gather();
    families.extend(state.live.stats().gather());
    let mut buf = Vec::new();
    if TextEncoder::new().encode(&families, &mut buf).is_err() {
        return HttpResponse::InternalServerError().finish();
    }
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(buf)
}
