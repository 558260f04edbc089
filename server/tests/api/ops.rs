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

/// The bundle's `.gz`, written at build time, is what a browser accepting gzip
/// gets; others get the plain file; a `.gz` older than its file is ignored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_bundle_is_served_precompressed() {
    let app = spawn_app(Backend::Sqlite).await;
    let pkg = app.data_dir.path().join("static").join("pkg");
    std::fs::create_dir_all(&pkg).unwrap();
    let (plain, packed) = (
        b"\0asm plain module".to_vec(),
        b"\x1f\x8b precompressed".to_vec(),
    );
    std::fs::write(pkg.join("app_bg.wasm"), &plain).unwrap();
    std::fs::write(pkg.join("app_bg.wasm.gz"), &packed).unwrap();

    let fetch = |path: &'static str, accept: &'static str| {
        let req = app
            .client
            .get(app.url(path))
            .header("accept-encoding", accept);
        async move { req.send().await.unwrap() }
    };
    let r = fetch("/pkg/app_bg.wasm", "gzip, deflate").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-encoding"], "gzip");
    assert_eq!(r.headers()["content-type"], "application/wasm");
    assert!(r.headers()["vary"]
        .to_str()
        .unwrap()
        .contains("accept-encoding"));
    assert_eq!(r.bytes().await.unwrap().as_ref(), packed.as_slice());

    for refused in ["identity", "gzip;q=0"] {
        let r = fetch("/pkg/app_bg.wasm", refused).await;
        assert_eq!(r.status(), 200);
        assert!(r.headers().get("content-encoding").is_none(), "{refused}");
        assert_eq!(r.headers()["content-type"], "application/wasm");
        assert_eq!(r.bytes().await.unwrap().as_ref(), plain.as_slice());
    }

    // A newer plain file (a debug build over a release one): the stale .gz is
    // not served; the plain file is compressed on the fly instead.
    let later = std::time::SystemTime::now() + std::time::Duration::from_secs(60);
    std::fs::File::options()
        .write(true)
        .open(pkg.join("app_bg.wasm"))
        .unwrap()
        .set_modified(later)
        .unwrap();
    let r = fetch("/pkg/app_bg.wasm", "gzip").await;
    assert_eq!(r.status(), 200);
    assert_ne!(r.bytes().await.unwrap().as_ref(), packed.as_slice());

    for missing in ["/pkg/nope.js", "/pkg/.app_bg.wasm", "/pkg/..%2Fslipway.db"] {
        let r = fetch(missing, "gzip").await;
        assert_eq!(r.status(), 404, "{missing}");
    }
}
