//! Promotion (pure): the spec a promoted release gets, and what it changes.
//!
//! A promotion carries the source release's *code-shaped* config — image,
//! command, ports, health check, secret references (by name: each
//! environment resolves them against its own secrets), volumes, hardening —
//! while *environment-shaped* values stay as the target has them: the values
//! of env vars the target already defines, replicas and resources. Env vars
//! only the source defines come along with the source's value (the release
//! needs them; the preview lists them as added); env vars only the target
//! defines are kept, so nothing environment-specific is lost or leaks.
use slipway_types::api::{PromotePreview, ServiceSpec};
use uuid::Uuid;

/// The spec of the release that promoting `source` onto `target` creates.
pub fn promoted_spec(source: &ServiceSpec, target: &ServiceSpec) -> ServiceSpec {
    let mut out = source.clone();
    let mut env = target.env.clone();
    for (k, v) in &source.env {
        env.entry(k.clone()).or_insert_with(|| v.clone());
    }
    out.env = env;
    out.replicas = target.replicas;
    out.resources = target.resources.clone();
    out
}

/// What changes in the target when `after` replaces `before`.
pub fn spec_diff(
    source_release_id: Uuid,
    target_service_id: Uuid,
    target_environment_id: Uuid,
    before: &ServiceSpec,
    after: &ServiceSpec,
) -> PromotePreview {
    let mut env_added = Vec::new();
    let mut env_changed = Vec::new();
    for (k, v) in &after.env {
        match before.env.get(k) {
            None => env_added.push(k.to_string()),
            Some(old) if old != v => env_changed.push(k.to_string()),
            Some(_) => {}
        }
    }
    let env_removed = before
        .env
        .keys()
        .filter(|k| !after.env.contains_key(*k))
        .map(|k| k.to_string())
        .collect();
    let mut other_changes = Vec::new();
    let mut differs = |name: &str, changed: bool| {
        if changed {
            other_changes.push(name.to_owned());
        }
    };
    differs("command", before.command != after.command);
    differs("ports", before.ports != after.ports);
    differs("secrets", before.secrets != after.secrets);
    differs("volumes", before.volumes != after.volumes);
    differs("health_check", before.health_check != after.health_check);
    differs("replicas", before.replicas != after.replicas);
    differs("resources", before.resources != after.resources);
    differs("hardening", before.hardening != after.hardening);
    PromotePreview {
        source_release_id,
        target_service_id,
        target_environment_id,
        image_before: before.image.clone(),
        image_after: after.image.clone(),
        env_added,
        env_removed,
        env_changed,
        other_changes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: serde_json::Value) -> ServiceSpec {
        serde_json::from_value(json).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn promotion_keeps_target_values_and_carries_code() {
        let source = spec(serde_json::json!({
            "image": "ghcr.io/acme/api:2", "command": ["serve"],
            "env": {"DATABASE_URL": "postgres://staging", "NEW_FLAG": "1", "LOG": "debug"},
            "replicas": 1,
            "secrets": [{"env": "API_KEY", "secret": "API_KEY"}]
        }));
        let target = spec(serde_json::json!({
            "image": "ghcr.io/acme/api:1",
            "env": {"DATABASE_URL": "postgres://prod", "LOG": "info", "PROD_ONLY": "x"},
            "replicas": 3
        }));
        let out = promoted_spec(&source, &target);
        assert_eq!(out.image, source.image);
        assert_eq!(out.command, source.command);
        assert_eq!(out.secrets, source.secrets);
        assert_eq!(out.replicas, 3);
        let env: Vec<(String, String)> = out
            .env
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        assert_eq!(
            env,
            vec![
                ("DATABASE_URL".into(), "postgres://prod".into()),
                ("LOG".into(), "info".into()),
                ("NEW_FLAG".into(), "1".into()),
                ("PROD_ONLY".into(), "x".into()),
            ]
        );

        let p = spec_diff(Uuid::nil(), Uuid::nil(), Uuid::nil(), &target, &out);
        assert_eq!(p.image_before.as_str(), "ghcr.io/acme/api:1");
        assert_eq!(p.image_after.as_str(), "ghcr.io/acme/api:2");
        assert_eq!(p.env_added, vec!["NEW_FLAG".to_owned()]);
        assert!(p.env_removed.is_empty());
        assert!(p.env_changed.is_empty());
        assert_eq!(
            p.other_changes,
            vec!["command".to_owned(), "secrets".to_owned()]
        );
    }

    #[test]
    fn diff_reports_removed_and_changed() {
        let a = spec(serde_json::json!({"image": "a:1", "env": {"A": "1", "B": "2"}}));
        let b =
            spec(serde_json::json!({"image": "a:1", "env": {"A": "9", "C": "3"}, "replicas": 2}));
        let p = spec_diff(Uuid::nil(), Uuid::nil(), Uuid::nil(), &a, &b);
        assert_eq!(p.env_added, vec!["C".to_owned()]);
        assert_eq!(p.env_removed, vec!["B".to_owned()]);
        assert_eq!(p.env_changed, vec!["A".to_owned()]);
        assert_eq!(p.other_changes, vec!["replicas".to_owned()]);
        assert_eq!(p.image_before, p.image_after);
    }
}
