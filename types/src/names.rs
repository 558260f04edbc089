//! Validated names and values. Each newtype has a private field and can only be
//! built through `TryFrom`, so a value of the type is proof it was checked.
//! serde goes through the same `TryFrom`, so JSON bodies are parsed, not trusted.
use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! string_newtype {
    ($(#[$m:meta])* $name:ident, $check:path) => {
        $(#[$m])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = String;
            fn try_from(value: String) -> Result<Self, Self::Error> {
                $check(&value)?;
                Ok(Self(value))
            }
        }

        impl TryFrom<&str> for $name {
            type Error = String;
            fn try_from(value: &str) -> Result<Self, Self::Error> {
                Self::try_from(value.to_owned())
            }
        }

        impl From<$name> for String {
            fn from(v: $name) -> String {
                v.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

string_newtype!(
    /// A DNS label (RFC 1123): 1–63 lowercase letters, digits and `-`, starting
    /// with a letter and not ending with `-`. Used for projects, environments,
    /// services and hosts so they can become container and DNS names.
    ResourceName,
    check_dns_label
);

string_newtype!(
    /// An environment variable / secret name: `[A-Za-z_][A-Za-z0-9_]*`, at most 128 chars.
    EnvVarName,
    check_env_var_name
);

string_newtype!(
    /// A container image reference: `[registry[:port]/]path[:tag][@sha256:<64 hex>]`.
    ImageRef,
    check_image_ref
);

string_newtype!(
    /// A Linux capability name without the `CAP_` prefix (e.g. `NET_BIND_SERVICE`), or `ALL`.
    Capability,
    check_capability
);

pub fn check_dns_label(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("must not be empty".into());
    }
    if s.len() > 63 {
        return Err("must be at most 63 characters".into());
    }
    if !s.starts_with(|c: char| c.is_ascii_lowercase()) {
        return Err("must start with a lowercase letter".into());
    }
    if s.ends_with('-') {
        return Err("must not end with '-'".into());
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        return Err(format!(
            "may contain only lowercase letters, digits and '-' (found '{c}')"
        ));
    }
    Ok(())
}

/// A host name of DNS labels separated by dots (`db.internal`), at most 253
/// bytes: what `/etc/hosts` entries may name.
pub fn check_hostname(s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > 253 {
        return Err("must be 1–253 characters".into());
    }
    for label in s.split('.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !ok {
            return Err(format!("{s:?} is not a host name"));
        }
    }
    Ok(())
}

pub fn check_env_var_name(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("must not be empty".into());
    }
    if s.len() > 128 {
        return Err("must be at most 128 characters".into());
    }
    if s.starts_with(|c: char| c.is_ascii_digit()) {
        return Err("must not start with a digit".into());
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '_'))
    {
        return Err(format!(
            "may contain only letters, digits and '_' (found '{c}')"
        ));
    }
    Ok(())
}

pub fn check_capability(s: &str) -> Result<(), String> {
    let body = s.strip_prefix("CAP_").unwrap_or(s);
    if body.is_empty() || body.len() > 32 {
        return Err("must be 1–32 characters".into());
    }
    if !body.chars().all(|c| c.is_ascii_uppercase() || c == '_') {
        return Err("must be an upper-case capability name such as NET_BIND_SERVICE".into());
    }
    Ok(())
}

fn is_path_component(s: &str) -> bool {
    // [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*
    if s.is_empty() {
        return false;
    }
    let bytes = s.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return false;
    }
    let mut prev_sep: Option<u8> = None;
    let mut run = 0;
    for &b in bytes {
        if alnum(b) {
            prev_sep = None;
            run = 0;
        } else if b == b'.' || b == b'_' || b == b'-' {
            run += 1;
            match (prev_sep, b) {
                (None, _) => {}
                (Some(b'_'), b'_') if run == 2 => {}
                (Some(b'-'), b'-') => {}
                _ => return false,
            }
            prev_sep = Some(b);
        } else {
            return false;
        }
    }
    true
}

fn is_registry_host(s: &str) -> bool {
    // host[:port], host may contain dots; the first component is a registry
    // only if it has a '.' or ':' or is "localhost".
    let (host, port) = match s.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (s, None),
    };
    if let Some(p) = port {
        if p.is_empty() || p.len() > 5 || !p.chars().all(|c| c.is_ascii_digit()) {
            return false;
        }
    }
    !host.is_empty()
        && host
            .split('.')
            .all(|l| !l.is_empty() && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
}

pub fn check_image_ref(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("must not be empty".into());
    }
    if s.len() > 255 {
        return Err("must be at most 255 characters".into());
    }
    let (rest, digest) = match s.split_once('@') {
        Some((r, d)) => (r, Some(d)),
        None => (s, None),
    };
    if let Some(d) = digest {
        let hex = d
            .strip_prefix("sha256:")
            .ok_or("digest must start with 'sha256:'")?;
        if hex.len() != 64
            || !hex
                .chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        {
            return Err("digest must be sha256: followed by 64 lowercase hex digits".into());
        }
    }
    // A tag is after the last ':' that comes after the last '/'.
    let last_slash = rest.rfind('/');
    let (name, tag) = match rest.rfind(':') {
        Some(i) if last_slash.is_none_or(|j| i > j) => (&rest[..i], Some(&rest[i + 1..])),
        _ => (rest, None),
    };
    if let Some(t) = tag {
        let ok = !t.is_empty()
            && t.len() <= 128
            && t.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
            && t.chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
        if !ok {
            return Err(format!(
                "invalid tag \"{t}\": use letters, digits, '_', '.', '-' (max 128)"
            ));
        }
    }
    let mut parts: Vec<&str> = name.split('/').collect();
    if parts.len() > 1 {
        let first = parts[0];
        if first.contains('.') || first.contains(':') || first == "localhost" {
            if !is_registry_host(first) {
                return Err(format!("invalid registry host \"{first}\""));
            }
            parts.remove(0);
        }
    }
    if parts.is_empty() {
        return Err("missing repository name".into());
    }
    for p in parts {
        if !is_path_component(p) {
            return Err(format!(
                "invalid repository component \"{p}\": use lowercase letters, digits and separators '.', '_', '-'"
            ));
        }
    }
    Ok(())
}

/// A TCP/UDP port, 1–65535.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "i64", into = "u16")]
pub struct Port(u16);

impl Port {
    pub fn get(self) -> u16 {
        self.0
    }
}

impl TryFrom<i64> for Port {
    type Error = String;
    fn try_from(v: i64) -> Result<Self, Self::Error> {
        if (1..=65535).contains(&v) {
            Ok(Port(v as u16))
        } else {
            Err(format!("port must be between 1 and 65535 (got {v})"))
        }
    }
}

impl From<Port> for u16 {
    fn from(p: Port) -> u16 {
        p.0
    }
}

impl fmt::Display for Port {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// JSON Schemas of the validated names: the same rules as their `check_*`
/// functions, as patterns and bounds (a test holds the two together).
#[cfg(feature = "schema")]
mod schema {
    use super::{Capability, EnvVarName, ImageRef, Port, ResourceName};
    use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
    use std::borrow::Cow;

    pub const RESOURCE_NAME: &str = "^[a-z](?:[a-z0-9-]*[a-z0-9])?$";
    pub const ENV_VAR_NAME: &str = "^[A-Za-z_][A-Za-z0-9_]*$";
    pub const CAPABILITY: &str = "^(?:CAP_)?[A-Z_]{1,32}$";
    /// `[registry[:port]/]path[:tag][@sha256:<64 hex>]`; the first component
    /// is a registry when it has a `.` or a port or is `localhost`.
    pub const IMAGE_REF: &str = concat!(
        "^(?:(?:localhost|[A-Za-z0-9-]+(?:\\.[A-Za-z0-9-]+)+)(?::[0-9]{1,5})?/",
        "|[A-Za-z0-9-]+:[0-9]{1,5}/)?",
        "[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*",
        "(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*",
        "(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?",
        "(?:@sha256:[a-f0-9]{64})?$"
    );

    macro_rules! schema {
        ($name:ident, $($json:tt)+) => {
            impl JsonSchema for $name {
                fn schema_name() -> Cow<'static, str> {
                    stringify!($name).into()
                }

                fn json_schema(_: &mut SchemaGenerator) -> Schema {
                    json_schema!($($json)+)
                }
            }
        };
    }

    schema!(ResourceName, {
        "description": "A DNS label: lowercase letters, digits and '-', starting with a letter, not ending with '-'.",
        "type": "string", "minLength": 1, "maxLength": 63, "pattern": RESOURCE_NAME,
    });
    schema!(EnvVarName, {
        "description": "An environment variable name.",
        "type": "string", "minLength": 1, "maxLength": 128, "pattern": ENV_VAR_NAME,
    });
    schema!(Capability, {
        "description": "A Linux capability without or with the CAP_ prefix (NET_BIND_SERVICE), or ALL.",
        "type": "string", "pattern": CAPABILITY, "not": {"const": "CAP_"},
    });
    schema!(ImageRef, {
        "description": "A container image reference.",
        "type": "string", "minLength": 1, "maxLength": 255, "pattern": IMAGE_REF,
    });
    schema!(Port, {
        "type": "integer", "minimum": 1, "maximum": 65535,
    });
}

#[cfg(feature = "schema")]
pub use schema::{CAPABILITY, ENV_VAR_NAME, IMAGE_REF, RESOURCE_NAME};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_labels() {
        for ok in ["a", "web", "api-v2", "x1", &"a".repeat(63)] {
            assert!(ResourceName::try_from(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "Web",
            "1abc",
            "-a",
            "a-",
            "a_b",
            "a.b",
            "ü",
            &"a".repeat(64),
        ] {
            assert!(ResourceName::try_from(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn env_var_names() {
        for ok in ["DATABASE_URL", "_x", "a1"] {
            assert!(EnvVarName::try_from(ok).is_ok(), "{ok}");
        }
        for bad in ["", "1A", "A-B", "A B", "A=B"] {
            assert!(EnvVarName::try_from(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn image_refs() {
        for ok in [
            "nginx",
            "nginx:1.25-alpine",
            "library/postgres:15",
            "ghcr.io/acme/api:v1.2.3",
            "localhost:5000/app",
            "registry.example.com:443/team/app@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "my_app__x/b-c.d",
        ] {
            assert!(ImageRef::try_from(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "Nginx",
            "nginx:",
            "nginx:bad tag",
            "-nginx",
            "a//b",
            "app@sha256:xyz",
            "app@md5:0123",
            "ghcr.io/",
            "a..b",
        ] {
            assert!(ImageRef::try_from(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ports() {
        assert!(Port::try_from(0).is_err());
        assert!(Port::try_from(65536).is_err());
        assert_eq!(Port::try_from(8080).map(Port::get), Ok(8080));
        let p: Result<Port, _> = serde_json::from_str("70000");
        assert!(p.is_err());
    }

    #[test]
    fn capabilities() {
        assert!(Capability::try_from("NET_BIND_SERVICE").is_ok());
        assert!(Capability::try_from("ALL").is_ok());
        assert!(Capability::try_from("net_admin").is_err());
    }

    /// The schemas' patterns and bounds accept exactly what the checks do.
    #[cfg(feature = "schema")]
    #[test]
    fn schema_patterns_agree_with_the_checks() {
        let long_tag = format!("app:{}", "t".repeat(128));
        let too_long_tag = format!("app:{}", "t".repeat(129));
        let samples: Vec<&str> = vec![
            "", "a", "web", "api-v2", "x1", "Web", "1abc", "-a", "a-", "a_b", "a.b", "ü",
            "DATABASE_URL", "_x", "a1", "1A", "A-B", "A B", "A=B", "nginx", "nginx:1.25-alpine",
            "library/postgres:15", "ghcr.io/acme/api:v1.2.3", "localhost:5000/app", "localhost",
            "registry.example.com:443/team/app@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "my_app__x/b-c.d", "Nginx", "nginx:", "nginx:bad tag", "-nginx", "a//b",
            "app@sha256:xyz", "app@md5:0123", "ghcr.io/", "a..b", "a.-b/x", "host:5000",
            "foo:123/x", "UPPER.io/app", "a___b", "a--b", "a._b", "x/_a", "h:123456/a",
            "NET_BIND_SERVICE", "ALL", "net_admin", "CAP_", "CAP_NET_ADMIN", "CAP_CAP_X", &long_tag,
            &too_long_tag,
        ];
        type Check = fn(&str) -> Result<(), String>;
        let cases: [(&str, Check, usize, usize, &str); 4] = [
            (RESOURCE_NAME, check_dns_label, 1, 63, ""),
            (ENV_VAR_NAME, check_env_var_name, 1, 128, ""),
            (CAPABILITY, check_capability, 0, usize::MAX, "CAP_"),
            (IMAGE_REF, check_image_ref, 1, 255, ""),
        ];
        for (pattern, check, min, max, excluded) in cases {
            let re = regex::Regex::new(pattern).expect("pattern");
            for s in &samples {
                let len = s.chars().count();
                let by_schema = re.is_match(s) && (min..=max).contains(&len) && *s != excluded;
                assert_eq!(by_schema, check(s).is_ok(), "{pattern} on {s:?}");
            }
        }
    }
}
