//! Container logs against a client that stops reading (issue 12, defect 11):
//! real server and agent processes, a real container printing fast, a raw
//! TCP client that sends the request and never reads. The server's buffer
//! for it stays bounded (`/metrics`), its RSS stays flat while the container
//! keeps printing, the follow is stopped after the stall limit (the agent
//! cancels), and when the client reads at last it gets the lines that
//! waited, the `lagged` marker with the number skipped, and the end.
use crate::harness::{free_port, Agent, Server, Store, DEPLOY_WITHIN};
use serde_json::json;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The container: the web server for its health check, then ~2,000 lines
/// of ~420 bytes a second (a chatty service; the issue saw 1,700).
const CHATTY: &str = "trap 'exit 0' TERM; httpd -p 8080 -h /www; \
    pad=$(printf '%0400d' 0); i=0; \
    while :; do i=$((i+1)); echo \"line $i $pad\"; usleep 500; done";

/// The server's log buffer for one client (`agents::logs::LOG_BUFFER`).
const BUFFER_BYTES: f64 = 512.0 * 1024.0;
/// How much the server's RSS may move while the client does not read (the
/// unbounded channel grew it by 3.7 MiB in these 15 s; bounded: +0.3 MiB).
const RSS_SLACK_KIB: u64 = 2 * 1024;

async fn metric(server: &Server, name: &str) -> f64 {
    let text = reqwest::get(format!("{}/metrics", server.base))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no metric {name} in /metrics:\n{text}"))
}

/// Polls `/metrics` (every 200 ms, at most `within`) until `name` satisfies `ok`.
async fn wait_metric(
    server: &Server,
    name: &str,
    within: Duration,
    ok: impl Fn(f64) -> bool,
) -> f64 {
    let deadline = Instant::now() + within;
    loop {
        let v = metric(server, name).await;
        if ok(v) {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "{name} is still {v} after {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_client_that_stops_reading_costs_a_bounded_buffer() {
    let server = Server::start(Store::Sqlite).await;
    let (env, svc) = server
        .seed(
            "chatty",
            free_port(),
            json!({"command": ["sh", "-c", CHATTY]}),
        )
        .await;
    let agent = Agent::enroll(&server, "node-1", &env).await;
    let d = server.deploy(&svc, json!({})).await;
    let done = server.wait_done(&d, DEPLOY_WITHIN).await;
    assert_eq!(done["state"], "succeeded", "{done}\n{}", agent.log());

    // The container as the agent reports it (status every few seconds).
    let host = agent.host_id.clone();
    let deadline = Instant::now() + Duration::from_secs(30);
    let container = loop {
        let h = server.get(&format!("/hosts/{host}")).await;
        let found = h["containers"].as_array().and_then(|cs| {
            cs.iter()
                .find(|c| c["deployment_id"] == d.as_str() && c["state"] == "running")
                .and_then(|c| c["id"].as_str().map(str::to_owned))
        });
        if let Some(id) = found {
            break id;
        }
        assert!(
            Instant::now() < deadline,
            "no running container reported: {h}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };

    // A client that sends the request and never reads (small receive
    // window, so the kernel holds little for it).
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let mut conn = sock
        .connect(format!("127.0.0.1:{}", server.port).parse().unwrap())
        .await
        .unwrap();
    conn.write_all(
        format!(
            "GET /api/v1/hosts/{host}/containers/{container}/logs?tail=0&follow=true HTTP/1.1\r\n\
             Host: 127.0.0.1\r\nAuthorization: Bearer {}\r\n\r\n",
            server.token
        )
        .as_bytes(),
    )
    .await
    .unwrap();

    // Lines are being skipped for it: its buffer is full.
    let skipped = r#"slipway_stream_skipped_total{stream="logs"}"#;
    wait_metric(&server, skipped, Duration::from_secs(30), |v| v > 0.0).await;
    let pid = server.pid();
    let rss_start = rss_kib(pid);
    let skipped_start = metric(&server, skipped).await;
    let (mut rss_max, mut buffered_max) = (rss_start, 0.0f64);
    // Sampled for 15 s (less than the 20 s stall limit).
    let until = Instant::now() + Duration::from_secs(15);
    while Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(500)).await;
        rss_max = rss_max.max(rss_kib(pid));
        buffered_max = buffered_max.max(metric(&server, "slipway_stream_buffered_bytes").await);
    }
    let skipped_end = metric(&server, skipped).await;
    println!(
        "not reading for 15 s: {} lines skipped, buffered at most {buffered_max} bytes, \
         server RSS {rss_start} → max {rss_max} KiB",
        skipped_end - skipped_start
    );
    assert!(
        skipped_end - skipped_start > 5_000.0,
        "the container should have kept printing: {skipped_start} → {skipped_end} skipped"
    );
    assert!(
        buffered_max <= BUFFER_BYTES,
        "buffered {buffered_max} bytes"
    );
    assert!(
        rss_max <= rss_start + RSS_SLACK_KIB,
        "server RSS grew from {rss_start} to {rss_max} KiB while the client did not read"
    );

    // After the stall limit the follow is stopped and the agent cancels.
    wait_metric(
        &server,
        "slipway_stream_stopped_total",
        Duration::from_secs(30),
        |v| v >= 1.0,
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !agent.log().contains("cancelling") {
        assert!(
            Instant::now() < deadline,
            "the agent was not told to stop:\n{}",
            agent.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The client reads at last: what waited, the gap, the end and why.
    let mut got = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let deadline = Instant::now() + Duration::from_secs(30);
    while !String::from_utf8_lossy(&got).contains("event: end\n") {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, conn.read(&mut buf)).await {
            Ok(Ok(0)) | Err(_) => break,
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Ok(Err(e)) => panic!("read: {e}"),
        }
    }
    let text = String::from_utf8_lossy(&got);
    assert!(
        text.starts_with("HTTP/1.1 200"),
        "{}",
        &text[..text.len().min(300)]
    );
    assert!(text.contains("data: {\"stream\":\"stdout\",\"line\":\"line "));
    let marker = text
        .split("event: lagged\ndata: {\"skipped\":")
        .nth(1)
        .and_then(|rest| rest.split('}').next())
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or_else(|| panic!("no lagged marker in the last bytes: {}", tail(&text)));
    assert!(marker > 0);
    assert!(
        text.contains(
            "event: end\ndata: {\"ok\":false,\"error\":\"the client read nothing for 20 s: the agent stopped following\"}"
        ),
        "{}",
        tail(&text)
    );
    // No line is buffered for anyone any more.
    assert_eq!(metric(&server, "slipway_stream_buffered_bytes").await, 0.0);
}

fn tail(s: &str) -> &str {
    let mut at = s.len().saturating_sub(600);
    while !s.is_char_boundary(at) {
        at += 1;
    }
    &s[at..]
}
