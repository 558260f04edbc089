use crate::{helpers::TestApp, store_test};
use sea_orm::{ConnectionTrait, Statement};
use serde_json::json;
use slipway_types::api::Variable;

store_test!(secrets_are_write_only_and_encrypted_at_rest);

const SECRET: &str = "pg-password-6f1e2d-DO-NOT-LEAK";

async fn secrets_are_write_only_and_encrypted_at_rest(mut app: TestApp) {
    app.setup_admin().await;
    let (_, env, _) = app.seed_service("shop", "production", "api").await;
    let path = format!("/api/v1/environments/{env}/variables/DATABASE_PASSWORD");
    let v: Variable = app
        .put(&path, &json!({"value": SECRET, "secret": true}))
        .await
        .expect(201)
        .json();
    assert!(v.secret);
    assert_eq!(v.value, None);
    assert_eq!(v.version, 1);
    assert_eq!(v.updated_by, "admin");
    let v2: Variable = app
        .put(
            &path,
            &json!({"value": format!("{SECRET}-2"), "secret": true}),
        )
        .await
        .expect(200)
        .json();
    assert_eq!(v2.version, 2);
    app.put(
        &format!("/api/v1/environments/{env}/variables/LOG_LEVEL"),
        &json!({"value": "debug"}),
    )
    .await
    .expect(201);

    let list: Vec<Variable> = app
        .get(&format!("/api/v1/environments/{env}/variables"))
        .await
        .expect(200)
        .json();
    assert_eq!(list.len(), 2);
    let plain = list
        .iter()
        .find(|v| v.name.as_str() == "LOG_LEVEL")
        .unwrap();
    assert_eq!(plain.value.as_deref(), Some("debug"));
    let secret = list
        .iter()
        .find(|v| v.name.as_str() == "DATABASE_PASSWORD")
        .unwrap();
    assert_eq!(secret.value, None);

    // Nowhere in the API: variables, audit (JSON and CSV), overview.
    for p in [
        format!("/api/v1/environments/{env}/variables"),
        "/api/v1/audit?limit=500".to_string(),
        "/api/v1/audit?format=csv".to_string(),
        "/api/v1/overview".to_string(),
        format!("/api/v1/environments/{env}"),
    ] {
        let r = app.get(&p).await.expect(200);
        assert!(!r.text.contains(SECRET), "{p} leaked the secret");
    }
    let audit = app.get("/api/v1/audit?action=secret").await.expect(200);
    assert_eq!(audit.body["total"], 2, "{}", audit.text);
    assert_eq!(audit.body["items"][0]["summary"]["value"], "<redacted>");

    // Not in the store in clear either.
    let db = app.db().await;
    let rows = db
        .query_all(Statement::from_string(
            db.get_database_backend(),
            "SELECT value, ciphertext FROM variables WHERE secret = true".to_owned(),
        ))
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    let value: Option<String> = rows[0].try_get("", "value").unwrap();
    let ct: Vec<u8> = rows[0].try_get("", "ciphertext").unwrap();
    assert_eq!(value, None);
    assert!(!ct.windows(SECRET.len()).any(|w| w == SECRET.as_bytes()));
    let dump = db
        .query_all(Statement::from_string(
            db.get_database_backend(),
            "SELECT summary FROM audit_log".to_owned(),
        ))
        .await
        .unwrap();
    for r in dump {
        let s: String = r.try_get("", "summary").unwrap();
        assert!(!s.contains(SECRET));
    }

    app.delete(&format!(
        "/api/v1/environments/{env}/variables/DATABASE_PASSWORD"
    ))
    .await
    .expect(204);
    app.delete(&format!(
        "/api/v1/environments/{env}/variables/DATABASE_PASSWORD"
    ))
    .await
    .expect(404);
}
