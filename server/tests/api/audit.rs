use crate::{
    helpers::{spawn_app_with, Backend, TestApp},
    store_test,
};
use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};
use serde_json::json;
use slipway_server::{
    audit::{mac, AuditError, AuditTx},
    secrets::MasterKey,
};
use slipway_types::api::{AuditEntry, Page};
use std::time::{Duration, Instant};

store_test!(
    every_mutation_is_audited,
    audit_verify_detects_a_changed_row,
    audit_filters_and_csv,
    audit_cut_tail_with_rewound_head_is_detected,
    audit_tampered_checkpoint_is_detected,
    audit_commit_without_an_entry_is_refused,
    audit_store_from_before_head_macs_is_sealed_on_upgrade
);

async fn every_mutation_is_audited(mut app: TestApp) {
    app.setup_admin().await;
    let (p, env, svc) = app.seed_service("shop", "staging", "web").await;
    app.put(
        &format!("/api/v1/environments/{env}/variables/TOKEN"),
        &json!({"value": "x", "secret": true}),
    )
    .await
    .expect(201);
    app.patch(
        &format!("/api/v1/projects/{p}"),
        &json!({"description": "d"}),
    )
    .await
    .expect(200);
    app.post(&format!("/api/v1/services/{svc}/deployments"), &json!({}))
        .await
        .expect(202);
    let token = app.token("viewer", &[]).await;
    let tokens: serde_json::Value = app.get("/api/v1/tokens").await.expect(200).body;
    let tid = tokens["items"][0]["id"].as_str().unwrap().to_owned();
    app.delete(&format!("/api/v1/tokens/{tid}"))
        .await
        .expect(204);
    // The revoked token no longer works.
    app.send(reqwest::Method::GET, "/api/v1/projects", None, Some(&token))
        .await
        .expect(401);
    // A failed login is audited with its reason.
    app.post(
        "/api/v1/auth/login",
        &json!({"username": "admin", "password": "wrong password!"}),
    )
    .await
    .expect(401);

    let all: Page<AuditEntry> = app.get("/api/v1/audit?limit=100").await.expect(200).json();
    let mut actions: Vec<&str> = all.items.iter().map(|e| e.action.as_str()).collect();
    actions.reverse();
    assert_eq!(
        actions,
        [
            "user.create",
            "auth.login",
            "project.create",
            "environment.create",
            "service.create",
            "secret.create",
            "project.update",
            "release.create",
            "deployment.create",
            "token.create",
            "token.revoke",
            "auth.login_failed",
        ]
    );
    let failed = &all.items[0];
    assert_eq!(failed.summary["reason"], "wrong password");
    assert!(failed
        .source_ip
        .as_deref()
        .is_some_and(|ip| ip.starts_with("127.")));
    let create = all
        .items
        .iter()
        .find(|e| e.action == "project.create")
        .unwrap();
    assert_eq!(create.actor, "admin");
    assert_eq!(create.target_id.as_deref(), Some(p.as_str()));
    assert!(create.request_id.is_some());
    // Sequence numbers are contiguous.
    let mut seqs: Vec<i64> = all.items.iter().map(|e| e.seq).collect();
    seqs.sort();
    assert_eq!(seqs, (1..=seqs.len() as i64).collect::<Vec<_>>());
}

async fn audit_verify_detects_a_changed_row(mut app: TestApp) {
    app.setup_admin().await;
    app.seed_service("shop", "staging", "web").await;
    let ok = app.cli(&["audit", "verify"]);
    let out = String::from_utf8_lossy(&ok.stdout);
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{out} {}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(out.contains("intact: 5 entries"), "{out}");

    let db = app.db().await;
    db.execute(Statement::from_string(
        db.get_database_backend(),
        "UPDATE audit_log SET actor = 'mallory' WHERE seq = 3".to_owned(),
    ))
    .await
    .unwrap();
    let bad = app.cli(&["audit", "verify"]);
    let out = String::from_utf8_lossy(&bad.stdout);
    assert_eq!(bad.status.code(), Some(1), "{out}");
    assert!(out.contains("first bad entry is #3"), "{out}");

    // Deleting the newest entry is detected through the head.
    db.execute(Statement::from_string(
        db.get_database_backend(),
        "UPDATE audit_log SET actor = 'admin' WHERE seq = 3".to_owned(),
    ))
    .await
    .unwrap();
    assert_eq!(app.cli(&["audit", "verify"]).status.code(), Some(0));
    db.execute(Statement::from_string(
        db.get_database_backend(),
        "DELETE FROM audit_log WHERE seq = 5".to_owned(),
    ))
    .await
    .unwrap();
    let gone = app.cli(&["audit", "verify"]);
    assert_eq!(
        gone.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&gone.stdout)
    );
}

async fn audit_filters_and_csv(mut app: TestApp) {
    app.setup_admin().await;
    app.seed_service("shop", "staging", "web").await;
    let by_action: Page<AuditEntry> = app
        .get("/api/v1/audit?action=project.create")
        .await
        .expect(200)
        .json();
    assert_eq!(by_action.total, 1);
    let by_prefix: Page<AuditEntry> = app
        .get("/api/v1/audit?action=environment")
        .await
        .expect(200)
        .json();
    assert_eq!(by_prefix.total, 1);
    let by_actor: Page<AuditEntry> = app
        .get("/api/v1/audit?actor=nobody")
        .await
        .expect(200)
        .json();
    assert_eq!(by_actor.total, 0);
    let by_type: Page<AuditEntry> = app
        .get("/api/v1/audit?target_type=service")
        .await
        .expect(200)
        .json();
    assert_eq!(by_type.total, 1);
    let future: Page<AuditEntry> = app
        .get("/api/v1/audit?since=2999-01-01T00:00:00Z")
        .await
        .expect(200)
        .json();
    assert_eq!(future.total, 0);
    let past: Page<AuditEntry> = app
        .get("/api/v1/audit?until=2999-01-01T00:00:00Z")
        .await
        .expect(200)
        .json();
    assert_eq!(past.total, 5);
    app.get("/api/v1/audit?since=yesterday").await.expect(422);
    app.get("/api/v1/audit?format=xml").await.expect(422);
    let csv = app
        .get("/api/v1/audit?format=csv&action=project")
        .await
        .expect(200);
    assert!(csv.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/csv"));
    let lines: Vec<&str> = csv.text.lines().collect();
    assert_eq!(
        lines[0],
        "seq,at,actor,action,target_type,target_id,summary,source_ip,request_id,hash"
    );
    assert_eq!(lines.len(), 2);
    assert!(lines[1].contains("project.create"));
}

async fn exec(db: &DatabaseConnection, sql: &str) {
    db.execute(Statement::from_string(
        db.get_database_backend(),
        sql.to_owned(),
    ))
    .await
    .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

async fn query_one(db: &DatabaseConnection, sql: &str) -> sea_orm::QueryResult {
    db.query_one(Statement::from_string(
        db.get_database_backend(),
        sql.to_owned(),
    ))
    .await
    .unwrap_or_else(|e| panic!("{sql}: {e}"))
    .unwrap_or_else(|| panic!("{sql}: no row"))
}

async fn entry_hash(db: &DatabaseConnection, seq: i64) -> String {
    query_one(db, &format!("SELECT hash FROM audit_log WHERE seq = {seq}"))
        .await
        .try_get("", "hash")
        .unwrap()
}

fn out(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A store written before head MACs (schema and head as they were, no
/// checkpoint) is sealed by the next server start, not locked until an
/// operator runs `audit seal`; `slipway migrate` alone (which may run
/// without the master key) does not seal. The seal is in the log. A MAC
/// removed later, from a store that has checkpoints, is still refused.
async fn audit_store_from_before_head_macs_is_sealed_on_upgrade(mut app: TestApp) {
    app.setup_admin().await;
    app.seed_service("shop", "staging", "web").await;
    let db = app.db().await;
    exec(&db, "DROP TABLE audit_checkpoint").await;
    exec(&db, "ALTER TABLE audit_head DROP COLUMN mac").await;
    exec(
        &db,
        "DELETE FROM seaql_migrations WHERE version = 'm20261202_000002_audit_mac'",
    )
    .await;

    let migrated = app.cli(&["migrate"]);
    assert_eq!(migrated.status.code(), Some(0), "{}", out(&migrated));
    let unsealed = app.cli(&["audit", "verify"]);
    assert_eq!(unsealed.status.code(), Some(1), "{}", out(&unsealed));
    assert!(out(&unsealed).contains("no MAC"), "{}", out(&unsealed));

    // The next start (a replica on the same store and key) seals it.
    let mut upgraded = app.replica().await;
    upgraded.login_admin().await;
    let ok = app.cli(&["audit", "verify"]);
    assert_eq!(ok.status.code(), Some(0), "{}", out(&ok));
    assert!(out(&ok).contains("head authenticated"), "{}", out(&ok));
    upgraded
        .post("/api/v1/projects", &json!({"name": "after-upgrade"}))
        .await
        .expect(201);
    let seal: Page<AuditEntry> = upgraded
        .get("/api/v1/audit?action=audit.seal")
        .await
        .expect(200)
        .json();
    assert_eq!(seal.items.len(), 1);
    assert_eq!(seal.items[0].actor, "system:upgrade");

    // Only a never-authenticated chain is sealed: a MAC removed afterwards
    // (checkpoints exist) stays refused, by a fresh start too.
    exec(&db, "UPDATE audit_head SET mac = NULL WHERE id = 1").await;
    let again = app.replica().await;
    again
        .post(
            "/api/v1/auth/login",
            &json!({"username": crate::helpers::ADMIN, "password": crate::helpers::PASSWORD}),
        )
        .await
        .expect(503);
}

/// Someone with the database deletes the newest entries and rewinds the
/// head to the last one left: the head's MAC no longer matches.
async fn audit_cut_tail_with_rewound_head_is_detected(mut app: TestApp) {
    app.setup_admin().await;
    app.seed_service("shop", "staging", "web").await;
    let ok = app.cli(&["audit", "verify"]);
    assert_eq!(ok.status.code(), Some(0), "{}", out(&ok));
    assert!(out(&ok).contains("head authenticated"), "{}", out(&ok));

    let db = app.db().await;
    let hash3 = entry_hash(&db, 3).await;
    exec(&db, "DELETE FROM audit_log WHERE seq > 3").await;
    exec(
        &db,
        &format!("UPDATE audit_head SET seq = 3, hash = '{hash3}' WHERE id = 1"),
    )
    .await;
    let cut = app.cli(&["audit", "verify"]);
    assert_eq!(cut.status.code(), Some(1), "{}", out(&cut));
    assert!(out(&cut).contains("first bad entry is #3"), "{}", out(&cut));
    assert!(out(&cut).contains("MAC does not match"), "{}", out(&cut));

    // The server does not chain new entries onto the cut log (which would
    // hide the cut under a fresh MAC): changes are refused.
    let refused = app
        .post("/api/v1/projects", &json!({"name": "after-cut"}))
        .await
        .expect(503);
    assert_eq!(refused.error_code(), "unavailable");

    // An operator who accepts the state seals it; the seal stays in the log.
    let sealed = app.cli(&["audit", "seal", "--reason", "restored after incident 7"]);
    assert_eq!(sealed.status.code(), Some(0), "{}", out(&sealed));
    let ok = app.cli(&["audit", "verify"]);
    assert_eq!(ok.status.code(), Some(0), "{}", out(&ok));
    app.post("/api/v1/projects", &json!({"name": "after-seal"}))
        .await
        .expect(201);
    let seal: Page<AuditEntry> = app
        .get("/api/v1/audit?action=audit.seal")
        .await
        .expect(200)
        .json();
    assert_eq!(seal.items[0].seq, 4);
    assert_eq!(seal.items[0].summary["head_was_authenticated"], false);
    assert_eq!(seal.items[0].summary["head_seq"], 3);
}

async fn audit_tampered_checkpoint_is_detected(mut app: TestApp) {
    app.setup_admin().await;
    app.seed_service("shop", "staging", "web").await;
    let db = app.db().await;
    // The first commit (setup: user.create and auth.login) took a checkpoint.
    let cp = query_one(
        &db,
        "SELECT seq, hash FROM audit_checkpoint ORDER BY seq LIMIT 1",
    )
    .await;
    let seq: i64 = cp.try_get("", "seq").unwrap();
    assert_eq!(seq, 2);
    let other = entry_hash(&db, 3).await;
    exec(
        &db,
        &format!("UPDATE audit_checkpoint SET hash = '{other}' WHERE seq = 2"),
    )
    .await;
    let bad = app.cli(&["audit", "verify"]);
    assert_eq!(bad.status.code(), Some(1), "{}", out(&bad));
    assert!(
        out(&bad).contains("checkpoint #2 has a wrong MAC"),
        "{}",
        out(&bad)
    );
    // A checkpoint past the chain's end shows deleted entries, even when
    // the head was put back consistently (here: MAC left as it was).
    let hash2 = entry_hash(&db, 2).await;
    exec(
        &db,
        &format!("UPDATE audit_checkpoint SET hash = '{hash2}' WHERE seq = 2"),
    )
    .await;
    assert_eq!(app.cli(&["audit", "verify"]).status.code(), Some(0));
    exec(&db, "DELETE FROM audit_log").await;
    exec(
        &db,
        &format!(
            "UPDATE audit_head SET seq = 0, hash = '{}', mac = NULL WHERE id = 1",
            slipway_server::audit::GENESIS_HASH
        ),
    )
    .await;
    let wiped = app.cli(&["audit", "verify"]);
    assert_eq!(wiped.status.code(), Some(1), "{}", out(&wiped));
    assert!(
        out(&wiped).contains("checkpoint #2 was taken later"),
        "{}",
        out(&wiped)
    );
}

async fn audit_commit_without_an_entry_is_refused(mut app: TestApp) {
    app.setup_admin().await;
    let db = app.db().await;
    let key = std::fs::read_to_string(app.data_dir.path().join("master.key")).unwrap();
    mac::register(&db, MasterKey::from_base64(&key).unwrap().audit_key());
    let tx = AuditTx::begin(&db).await.unwrap();
    exec_in(&tx, "UPDATE users SET username = 'mallory'").await;
    assert!(matches!(
        tx.commit().await,
        Err(AuditError::NothingRecorded)
    ));
    // Nothing of it was written.
    let u = query_one(&db, "SELECT username FROM users").await;
    assert_eq!(u.try_get::<String>("", "username").unwrap(), "admin");
    assert_eq!(app.cli(&["audit", "verify"]).status.code(), Some(0));
}

async fn exec_in(tx: &AuditTx, sql: &str) {
    tx.conn()
        .execute(Statement::from_string(
            tx.conn().get_database_backend(),
            sql.to_owned(),
        ))
        .await
        .unwrap();
}

/// A head replayed from an older copy of the store (with its valid MAC)
/// passes the plain check; the witness, which saw the later head, does not.
async fn witness_detects_a_replayed_head(backend: Backend) {
    let outside = tempfile::tempdir().unwrap();
    let witness = outside.path().join("audit-witness.jsonl");
    let witness_str = witness.display().to_string();
    let mut app = spawn_app_with(
        backend,
        &[
            ("SLIPWAY_AUDIT_WITNESS_FILE", witness_str.as_str()),
            ("SLIPWAY_AUDIT_WITNESS_INTERVAL_SECONDS", "1"),
        ],
    )
    .await;
    app.setup_admin().await;
    app.seed_service("shop", "staging", "web").await;
    let db = app.db().await;
    let old = query_one(&db, "SELECT seq, hash, mac FROM audit_head WHERE id = 1").await;
    let (old_seq, old_hash, old_mac): (i64, String, String) = (
        old.try_get("", "seq").unwrap(),
        old.try_get("", "hash").unwrap(),
        old.try_get("", "mac").unwrap(),
    );
    assert_eq!(old_seq, 5);
    app.post("/api/v1/projects", &json!({"name": "later"}))
        .await
        .expect(201);
    wait_for_witnessed(&witness, 6).await;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&witness).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let w = ["audit", "verify", "--witness", witness_str.as_str()];
    let agree = app.cli(&w);
    assert_eq!(agree.status.code(), Some(0), "{}", out(&agree));
    assert!(out(&agree).contains("agrees"), "{}", out(&agree));

    exec(&db, "DELETE FROM audit_log WHERE seq > 5").await;
    exec(&db, "DELETE FROM audit_checkpoint WHERE seq > 5").await;
    exec(
        &db,
        &format!(
            "UPDATE audit_head SET seq = {old_seq}, hash = '{old_hash}', mac = '{old_mac}' WHERE id = 1"
        ),
    )
    .await;
    let plain = app.cli(&["audit", "verify"]);
    assert_eq!(plain.status.code(), Some(0), "{}", out(&plain));
    let caught = app.cli(&w);
    assert_eq!(caught.status.code(), Some(1), "{}", out(&caught));
    assert!(
        out(&caught).contains("witnessed entry #6") && out(&caught).contains("ends at entry 5"),
        "{}",
        out(&caught)
    );
}

/// Bounded poll of the witness file for a head at `seq` or later.
async fn wait_for_witnessed(file: &std::path::Path, seq: i64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let seen = std::fs::read_to_string(file)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter_map(|v| v["seq"].as_i64())
            .max();
        if seen.is_some_and(|s| s >= seq) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the witness never saw entry {seq} (last: {seen:?})"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn witness_detects_a_replayed_head_sqlite() {
    witness_detects_a_replayed_head(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn witness_detects_a_replayed_head_postgres() {
    witness_detects_a_replayed_head(Backend::Postgres).await;
}
