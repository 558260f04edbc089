//! Claim → role mapping, pure: which roles do these id-token claims grant?
use serde_json::Value;
use slipway_types::{
    api::{ClaimsPreview, EnvironmentRole},
    Role,
};
use std::collections::BTreeMap;
use uuid::Uuid;

#[derive(Debug, Clone)]
pub struct Rule {
    pub id: Uuid,
    pub claim: String,
    pub value: String,
    pub role: Role,
    pub environment_id: Option<Uuid>,
}

/// A claim matches when it equals `value`, or is a list containing it.
/// Strings compare exactly; numbers and booleans by their JSON text.
fn claim_matches(claims: &Value, claim: &str, value: &str) -> bool {
    let scalar = |v: &Value| match v {
        Value::String(s) => s == value,
        Value::Number(n) => n.to_string() == value,
        Value::Bool(b) => b.to_string() == value,
        _ => false,
    };
    match claims.get(claim) {
        Some(Value::Array(items)) => items.iter().any(scalar),
        Some(v) => scalar(v),
        None => false,
    }
}

/// Applies every rule; the highest role wins per scope. An environment role
/// not above the global one is dropped (it adds nothing).
pub fn evaluate(rules: &[Rule], claims: &Value) -> ClaimsPreview {
    let mut global: Option<Role> = None;
    let mut envs: BTreeMap<Uuid, Role> = BTreeMap::new();
    let mut matched = Vec::new();
    for r in rules
        .iter()
        .filter(|r| claim_matches(claims, &r.claim, &r.value))
    {
        matched.push(r.id);
        match r.environment_id {
            None => global = global.max(Some(r.role)),
            Some(e) => {
                let slot = envs.entry(e).or_insert(r.role);
                *slot = (*slot).max(r.role);
            }
        }
    }
    ClaimsPreview {
        role: global,
        environments: envs
            .into_iter()
            .filter(|(_, role)| Some(*role) > global)
            .map(|(environment_id, role)| EnvironmentRole {
                environment_id,
                role,
            })
            .collect(),
        matched,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rule(claim: &str, value: &str, role: Role, env: Option<Uuid>) -> Rule {
        Rule {
            id: Uuid::new_v4(),
            claim: claim.into(),
            value: value.into(),
            role,
            environment_id: env,
        }
    }

    #[test]
    fn groups_map_to_global_and_environment_roles() {
        let prod = Uuid::new_v4();
        let staging = Uuid::new_v4();
        let rules = vec![
            rule("groups", "eng", Role::Viewer, None),
            rule("groups", "payments-oncall", Role::Deployer, Some(prod)),
            rule("groups", "payments-dev", Role::Deployer, Some(staging)),
            rule("groups", "eng-managers", Role::Approver, None),
        ];
        let p = evaluate(&rules, &json!({"groups": ["eng", "payments-dev"]}));
        assert_eq!(p.role, Some(Role::Viewer));
        assert_eq!(
            p.environments,
            vec![EnvironmentRole {
                environment_id: staging,
                role: Role::Deployer
            }]
        );
        assert_eq!(p.matched.len(), 2);

        // A higher global role makes the environment grant redundant.
        let p = evaluate(&rules, &json!({"groups": ["eng-managers", "payments-dev"]}));
        assert_eq!(p.role, Some(Role::Approver));
        assert!(p.environments.is_empty());

        let none = evaluate(&rules, &json!({"groups": ["marketing"]}));
        assert_eq!(none.role, None);
        assert!(none.environments.is_empty());
    }

    #[test]
    fn scalar_claims_and_missing_claims() {
        let rules = vec![
            rule("email_verified", "true", Role::Viewer, None),
            rule("hd", "acme.com", Role::Deployer, None),
        ];
        assert_eq!(
            evaluate(&rules, &json!({"email_verified": true})).role,
            Some(Role::Viewer)
        );
        assert_eq!(
            evaluate(&rules, &json!({"hd": "acme.com"})).role,
            Some(Role::Deployer)
        );
        assert_eq!(evaluate(&rules, &json!({"hd": "evil.com"})).role, None);
        assert_eq!(evaluate(&rules, &json!({})).role, None);
        // Substrings do not match.
        assert_eq!(evaluate(&rules, &json!({"hd": "acme.com.evil"})).role, None);
    }
}
