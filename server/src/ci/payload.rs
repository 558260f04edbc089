//! Webhook signatures and payloads (pure). Each provider's request is
//! verified, then normalised into a [`CiEvent`] that trigger rules match.
use serde_json::Value;
use sha2::{Digest, Sha256};
use slipway_types::api::{GenericHookPayload, TriggerEvent};

/// Generic signatures older or newer than this are refused (replay window).
pub const GENERIC_TOLERANCE_SECS: i64 = 300;

/// HMAC-SHA256 (RFC 2104) over the concatenation of `parts`.
fn hmac_hex(secret: &[u8], parts: &[&[u8]]) -> Option<Vec<u8>> {
    const BLOCK: usize = 64;
    let mut key = [0u8; BLOCK];
    if secret.len() > BLOCK {
        key[..32].copy_from_slice(&Sha256::digest(secret));
    } else {
        key[..secret.len()].copy_from_slice(secret);
    }
    let mut inner = Sha256::new();
    inner.update(key.map(|b| b ^ 0x36));
    for p in parts {
        inner.update(p);
    }
    let mut outer = Sha256::new();
    outer.update(key.map(|b| b ^ 0x5c));
    outer.update(inner.finalize());
    Some(outer.finalize().to_vec())
}

fn eq_hex(expected: &[u8], sent_hex: &str) -> bool {
    match hex::decode(sent_hex.trim()) {
        Ok(sent) => crate::auth::constant_time_eq(expected, &sent),
        Err(_) => false,
    }
}

/// `X-Hub-Signature-256: sha256=<hex hmac-sha256(secret, body)>`.
pub fn verify_github(secret: &str, body: &[u8], header: &str) -> bool {
    let Some(sent) = header.strip_prefix("sha256=") else {
        return false;
    };
    hmac_hex(secret.as_bytes(), &[body]).is_some_and(|e| eq_hex(&e, sent))
}

/// `X-Gitlab-Token: <secret>`, compared in constant time.
pub fn verify_gitlab(secret: &str, header: &str) -> bool {
    crate::auth::constant_time_eq(secret.as_bytes(), header.as_bytes())
}

/// `X-Slipway-Signature: t=<unix>,v1=<hex hmac-sha256(secret, "t.body")>`.
pub fn verify_generic(
    secret: &str,
    body: &[u8],
    header: &str,
    now_unix: i64,
) -> Result<(), &'static str> {
    let mut t = None;
    let mut sigs = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) => t = v.parse::<i64>().ok(),
            Some(("v1", v)) => sigs.push(v),
            _ => {}
        }
    }
    let t = t.ok_or("signature header has no valid t=")?;
    if (now_unix - t).abs() > GENERIC_TOLERANCE_SECS {
        return Err("signature timestamp is outside the 5-minute tolerance");
    }
    let ts = t.to_string();
    let expected = hmac_hex(secret.as_bytes(), &[ts.as_bytes(), b".", body]).ok_or("bad secret")?;
    // Check every v1 (rotation may send two) without stopping early.
    let ok = sigs.iter().fold(false, |acc, s| eq_hex(&expected, s) | acc);
    if ok {
        Ok(())
    } else {
        Err("signature does not match")
    }
}

/// Builds a GitHub `X-Hub-Signature-256` value (for tests and senders).
pub fn sign_github(secret: &str, body: &[u8]) -> String {
    let sig = hmac_hex(secret.as_bytes(), &[body]).unwrap_or_default();
    format!("sha256={}", hex::encode(sig))
}

/// Builds a generic signature header (used by tests and documented for senders).
pub fn sign_generic(secret: &str, body: &[u8], t: i64) -> String {
    let ts = t.to_string();
    let sig = hmac_hex(secret.as_bytes(), &[ts.as_bytes(), b".", body]).unwrap_or_default();
    format!("t={t},v1={}", hex::encode(sig))
}

/// What a delivery means for trigger rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CiEvent {
    pub kind: TriggerEvent,
    /// The branch or tag the rule's pattern is matched against (None only
    /// for generic events without `ref`).
    pub name: Option<String>,
    pub sha: Option<String>,
    pub git_ref: Option<String>,
    /// A full image reference carried by the payload (package, generic).
    pub image: Option<String>,
    /// Generic: the service named by the payload.
    pub service: Option<String>,
    pub branch: Option<String>,
    pub tag: Option<String>,
}

impl CiEvent {
    fn new(kind: TriggerEvent) -> Self {
        CiEvent {
            kind,
            name: None,
            sha: None,
            git_ref: None,
            image: None,
            service: None,
            branch: None,
            tag: None,
        }
    }

    fn from_ref(kind_branch: TriggerEvent, git_ref: &str, sha: Option<String>) -> Self {
        let mut e = if let Some(tag) = git_ref.strip_prefix("refs/tags/") {
            let mut e = CiEvent::new(TriggerEvent::Tag);
            e.tag = Some(tag.to_owned());
            e.name = Some(tag.to_owned());
            e
        } else {
            let branch = git_ref.strip_prefix("refs/heads/").unwrap_or(git_ref);
            let mut e = CiEvent::new(kind_branch);
            e.branch = Some(branch.to_owned());
            e.name = Some(branch.to_owned());
            e
        };
        e.git_ref = Some(git_ref.to_owned());
        e.sha = sha;
        e
    }
}

/// The outcome of reading a payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    Event(CiEvent),
    /// A well-formed delivery that triggers nothing (ping, deleted branch, …).
    Ignored(String),
}

/// A malformed payload (400).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed(pub String);

fn json(body: &[u8]) -> Result<Value, Malformed> {
    serde_json::from_slice(body).map_err(|e| Malformed(format!("body is not JSON: {e}")))
}

fn s(v: &Value, path: &[&str]) -> Option<String> {
    let mut cur = v;
    for p in path {
        cur = cur.get(*p)?;
    }
    cur.as_str().map(str::to_owned)
}

fn need(v: &Value, path: &[&str]) -> Result<String, Malformed> {
    s(v, path).ok_or_else(|| Malformed(format!("payload lacks {}", path.join("."))))
}

fn valid_sha(sha: Option<String>) -> Option<String> {
    sha.filter(|s| (7..=64).contains(&s.len()) && s.chars().all(|c| c.is_ascii_hexdigit()))
        .filter(|s| s.chars().any(|c| c != '0'))
}

/// GitHub: `X-GitHub-Event` and the JSON body.
pub fn parse_github(event: &str, body: &[u8]) -> Result<Parsed, Malformed> {
    let v = json(body)?;
    match event {
        "push" => {
            let git_ref = need(&v, &["ref"])?;
            if v.get("deleted").and_then(Value::as_bool) == Some(true) {
                return Ok(Parsed::Ignored(format!("{git_ref} was deleted")));
            }
            Ok(Parsed::Event(CiEvent::from_ref(
                TriggerEvent::Push,
                &git_ref,
                valid_sha(s(&v, &["after"])),
            )))
        }
        "release" => {
            let action = need(&v, &["action"])?;
            if action != "published" {
                return Ok(Parsed::Ignored(format!("release action {action}")));
            }
            let tag = need(&v, &["release", "tag_name"])?;
            let mut e = CiEvent::new(TriggerEvent::Release);
            e.git_ref = Some(format!("refs/tags/{tag}"));
            e.name = Some(tag.clone());
            e.tag = Some(tag);
            Ok(Parsed::Event(e))
        }
        "registry_package" | "package" => {
            let action = need(&v, &["action"])?;
            if action != "published" {
                return Ok(Parsed::Ignored(format!("package action {action}")));
            }
            let pkg = v
                .get("registry_package")
                .or_else(|| v.get("package"))
                .ok_or_else(|| Malformed("payload lacks registry_package".into()))?;
            let version = pkg
                .get("package_version")
                .ok_or_else(|| Malformed("payload lacks package_version".into()))?;
            let tag = s(version, &["container_metadata", "tag", "name"])
                .filter(|t| !t.is_empty())
                .or_else(|| s(version, &["version"]));
            let mut e = CiEvent::new(TriggerEvent::Package);
            e.image = s(version, &["package_url"]).filter(|u| !u.is_empty());
            e.name = tag.clone();
            e.tag = tag;
            Ok(Parsed::Event(e))
        }
        "workflow_run" => {
            let action = need(&v, &["action"])?;
            let run = v
                .get("workflow_run")
                .ok_or_else(|| Malformed("payload lacks workflow_run".into()))?;
            let conclusion = s(run, &["conclusion"]).unwrap_or_default();
            if action != "completed" || conclusion != "success" {
                return Ok(Parsed::Ignored(format!(
                    "workflow run {action}/{}",
                    if conclusion.is_empty() {
                        "pending"
                    } else {
                        &conclusion
                    }
                )));
            }
            let branch = need(run, &["head_branch"])?;
            let mut e = CiEvent::new(TriggerEvent::WorkflowRun);
            e.git_ref = Some(format!("refs/heads/{branch}"));
            e.name = Some(branch.clone());
            e.branch = Some(branch);
            e.sha = valid_sha(s(run, &["head_sha"]));
            Ok(Parsed::Event(e))
        }
        "ping" => Ok(Parsed::Ignored("ping".into())),
        other => Ok(Parsed::Ignored(format!("event {other} is not handled"))),
    }
}

/// GitLab: `X-Gitlab-Event` and the JSON body.
pub fn parse_gitlab(event: &str, body: &[u8]) -> Result<Parsed, Malformed> {
    let v = json(body)?;
    let zero = |sha: &Option<String>| sha.as_deref().is_some_and(|s| s.chars().all(|c| c == '0'));
    match event {
        "Push Hook" | "Tag Push Hook" => {
            let git_ref = need(&v, &["ref"])?;
            let after = s(&v, &["after"]);
            if zero(&after) {
                return Ok(Parsed::Ignored(format!("{git_ref} was deleted")));
            }
            let sha = valid_sha(s(&v, &["checkout_sha"]).or(after));
            Ok(Parsed::Event(CiEvent::from_ref(
                TriggerEvent::Push,
                &git_ref,
                sha,
            )))
        }
        "Pipeline Hook" => {
            let attrs = v
                .get("object_attributes")
                .ok_or_else(|| Malformed("payload lacks object_attributes".into()))?;
            let status = need(attrs, &["status"])?;
            if status != "success" {
                return Ok(Parsed::Ignored(format!("pipeline {status}")));
            }
            let name = need(attrs, &["ref"])?;
            let is_tag = attrs.get("tag").and_then(Value::as_bool) == Some(true);
            let mut e = CiEvent::new(TriggerEvent::WorkflowRun);
            if is_tag {
                e.git_ref = Some(format!("refs/tags/{name}"));
                e.tag = Some(name.clone());
            } else {
                e.git_ref = Some(format!("refs/heads/{name}"));
                e.branch = Some(name.clone());
            }
            e.name = Some(name);
            e.sha = valid_sha(s(attrs, &["sha"]));
            Ok(Parsed::Event(e))
        }
        other => Ok(Parsed::Ignored(format!("event {other} is not handled"))),
    }
}

/// The generic webhook's typed body.
pub fn parse_generic(body: &[u8]) -> Result<(String, CiEvent), Malformed> {
    // Objects only, like every API body (serde would also read an array).
    let p: GenericHookPayload = slipway_types::decode::from_value(json(body)?)
        .map_err(|e| Malformed(format!("invalid generic payload: {e}")))?;
    if p.id.is_empty() || p.id.len() > 200 {
        return Err(Malformed("id must be 1–200 characters".into()));
    }
    let mut e = CiEvent::new(TriggerEvent::Generic);
    e.service = Some(p.service);
    e.image = Some(p.image.to_string());
    e.sha = valid_sha(p.git_sha);
    if let Some(r) = &p.git_ref {
        let c = CiEvent::from_ref(TriggerEvent::Push, r, None);
        e.branch = c.branch;
        e.tag = c.tag;
        e.name = c.name;
        e.git_ref = Some(r.clone());
    }
    Ok((p.id, e))
}

/// Substitutes `{sha}`, `{short_sha}`, `{tag}`, `{branch}`, `{ref}`; None
/// when the template needs a value the event lacks.
pub fn render_template(template: &str, e: &CiEvent) -> Option<String> {
    let short = e
        .sha
        .as_ref()
        .map(|s| s.chars().take(7).collect::<String>());
    let subs: [(&str, Option<&String>); 5] = [
        ("{sha}", e.sha.as_ref()),
        ("{short_sha}", short.as_ref()),
        ("{tag}", e.tag.as_ref()),
        ("{branch}", e.branch.as_ref()),
        ("{ref}", e.name.as_ref()),
    ];
    let mut out = template.to_owned();
    for (k, v) in subs {
        if out.contains(k) {
            let v = v?;
            // Branch names may hold `/`, not valid in an image tag.
            out = out.replace(k, &v.replace('/', "-"));
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc4231() {
        // Test case 2 of RFC 4231.
        let mac = hmac_hex(b"Jefe", &[b"what do ya want ", b"for nothing?"]).map(hex::encode);
        assert_eq!(
            mac.as_deref(),
            Some("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
        );
        // Test case 6: a key longer than the block is hashed first.
        let mac = hmac_hex(
            &[0xaa; 131],
            &[b"Test Using Larger Than Block-Size Key - Hash Key First"],
        )
        .map(hex::encode);
        assert_eq!(
            mac.as_deref(),
            Some("60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54")
        );
    }

    #[test]
    fn github_signature() {
        let body = br#"{"zen":"x"}"#;
        // echo -n '{"zen":"x"}' | openssl dgst -sha256 -hmac s3cret
        let sig = hmac_hex(b"s3cret", &[body])
            .map(hex::encode)
            .unwrap_or_default();
        assert!(verify_github("s3cret", body, &format!("sha256={sig}")));
        assert!(!verify_github("other", body, &format!("sha256={sig}")));
        assert!(!verify_github("s3cret", b"{}", &format!("sha256={sig}")));
        assert!(!verify_github("s3cret", body, &sig));
        assert!(!verify_github("s3cret", body, "sha256=zz"));
    }

    #[test]
    fn generic_signature_and_tolerance() {
        let body = br#"{"id":"1"}"#;
        let h = sign_generic("k", body, 1_000_000);
        assert_eq!(verify_generic("k", body, &h, 1_000_100), Ok(()));
        assert!(verify_generic("k", body, &h, 1_000_301).is_err());
        assert!(verify_generic("k", body, &h, 999_600).is_err());
        assert!(verify_generic("x", body, &h, 1_000_000).is_err());
        assert!(verify_generic("k", b"{}", &h, 1_000_000).is_err());
        assert!(verify_generic("k", body, "v1=00", 1_000_000).is_err());
    }

    /// An array is not the payload object read positionally.
    #[test]
    fn generic_payload_is_an_object() {
        assert!(parse_generic(br#"{"id":"1","service":"web","image":"app:1"}"#).is_ok());
        assert!(parse_generic(br#"["1","web","app:1",null,null,null]"#).is_err());
    }

    #[test]
    fn github_events() {
        let push = br#"{"ref":"refs/heads/main","after":"0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c","deleted":false}"#;
        let Ok(Parsed::Event(e)) = parse_github("push", push) else {
            panic!("push")
        };
        assert_eq!(
            (e.kind, e.name.as_deref()),
            (TriggerEvent::Push, Some("main"))
        );
        let tag =
            br#"{"ref":"refs/tags/v1.2.0","after":"0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c"}"#;
        let Ok(Parsed::Event(e)) = parse_github("push", tag) else {
            panic!("tag")
        };
        assert_eq!(
            (e.kind, e.tag.as_deref()),
            (TriggerEvent::Tag, Some("v1.2.0"))
        );
        assert!(matches!(
            parse_github("ping", b"{}"),
            Ok(Parsed::Ignored(_))
        ));
        assert!(matches!(
            parse_github("issues", b"{}"),
            Ok(Parsed::Ignored(_))
        ));
        assert!(parse_github("push", b"{}").is_err());
        assert!(parse_github("push", b"nope").is_err());
        let wf = br#"{"action":"completed","workflow_run":{"conclusion":"failure","head_branch":"main"}}"#;
        assert!(matches!(
            parse_github("workflow_run", wf),
            Ok(Parsed::Ignored(_))
        ));
    }

    #[test]
    fn github_package_and_gitlab_events() {
        let pkg =
            br#"{"action":"published","registry_package":{"name":"api","package_type":"CONTAINER",
            "package_version":{"version":"sha256:abc","package_url":"ghcr.io/acme/api:v1.4.0",
            "container_metadata":{"tag":{"name":"v1.4.0","digest":"sha256:abc"}}}}}"#;
        let Ok(Parsed::Event(e)) = parse_github("registry_package", pkg) else {
            panic!("package")
        };
        assert_eq!(e.kind, TriggerEvent::Package);
        assert_eq!(e.image.as_deref(), Some("ghcr.io/acme/api:v1.4.0"));
        assert_eq!(e.tag.as_deref(), Some("v1.4.0"));
        let upd = br#"{"action":"updated","registry_package":{}}"#;
        assert!(matches!(
            parse_github("package", upd),
            Ok(Parsed::Ignored(_))
        ));

        let tag = br#"{"object_kind":"tag_push","ref":"refs/tags/v2","after":"82b3d5ae55f7080f1e6022629cdb57bfae7cccc7","checkout_sha":"82b3d5ae55f7080f1e6022629cdb57bfae7cccc7"}"#;
        let Ok(Parsed::Event(e)) = parse_gitlab("Tag Push Hook", tag) else {
            panic!("tag")
        };
        assert_eq!((e.kind, e.tag.as_deref()), (TriggerEvent::Tag, Some("v2")));
        let deleted =
            br#"{"ref":"refs/heads/x","after":"0000000000000000000000000000000000000000"}"#;
        assert!(matches!(
            parse_gitlab("Push Hook", deleted),
            Ok(Parsed::Ignored(_))
        ));
        let pipe = br#"{"object_attributes":{"status":"success","ref":"v3","tag":true,"sha":"82b3d5ae55f7080f1e6022629cdb57bfae7cccc7"}}"#;
        let Ok(Parsed::Event(e)) = parse_gitlab("Pipeline Hook", pipe) else {
            panic!("pipeline")
        };
        assert_eq!(
            (e.kind, e.tag.as_deref()),
            (TriggerEvent::WorkflowRun, Some("v3"))
        );
        assert!(matches!(
            parse_gitlab("Issue Hook", b"{}"),
            Ok(Parsed::Ignored(_))
        ));
        assert!(parse_gitlab("Pipeline Hook", b"{}").is_err());
    }

    #[test]
    fn templates() {
        let mut e = CiEvent::new(TriggerEvent::Push);
        e.sha = Some("0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c".into());
        e.branch = Some("feature/x".into());
        e.name = e.branch.clone();
        assert_eq!(
            render_template("ghcr.io/acme/api:{short_sha}", &e).as_deref(),
            Some("ghcr.io/acme/api:0d1a26e")
        );
        assert_eq!(
            render_template("ghcr.io/acme/api:{branch}-{sha}", &e).as_deref(),
            Some("ghcr.io/acme/api:feature-x-0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c")
        );
        assert_eq!(render_template("ghcr.io/acme/api:{tag}", &e), None);
    }
}
