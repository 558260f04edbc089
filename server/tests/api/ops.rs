use crate::helpers::{spawn_app, Backend};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_ready_metrics_and_headers() {
    let app = spawn_app(Backend::Sqlite).await;
    app.get("/health").await.expect(200);
    let ready = app.get("/ready").await.expect(200);
    assert_eq!(ready.body["status"], "ready");
    for h in [
        "x-request-id",
        "x-content-type-options",
        "x-frame-options",
        "content-security-policy",
    ] {
        assert!(ready.headers.contains_key(h), "missing {h}");
    }
    // A sane incoming request id is echoed back; a hostile one is replaced.
    let r = app
        .client
        .get(app.url("/health"))
        .header("x-request-id", "ci-run-42")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "ci-run-42");
    let r = app
        .client
        .get(app.url("/health"))
        .header("x-request-id", "bad id\twith tab")
        .send()
        .await
        .unwrap();
    assert_ne!(r.headers()["x-request-id"], "bad id\twith tab");
    app.get("/api/v1/projects").await.expect(401);
    let m = app.get("/metrics").await.expect(200).text;
    assert!(m.contains("slipway_http_requests_total{method=\"GET\",route=\"/api/v1/projects\",status=\"401\"} 1"), "{m}");
    assert!(m.contains("slipway_http_request_duration_seconds_bucket"));
    // The dashboard is served for client-side routes (here: not built in this temp dir → clear 503).
    let spa = app.get("/projects/abc").await;
    assert!(spa.status == 200 || spa.status == 503, "{}", spa.status);
}
