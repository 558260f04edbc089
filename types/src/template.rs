//! Env value templates: `${NAME}` inside a service's env value refers to a
//! variable or secret of its environment, resolved at deploy time into the
//! container's environment only (the release snapshot keeps the template).
//!
//! Syntax: `${NAME}` with `NAME` an env var name (`[A-Za-z_][A-Za-z0-9_]*`);
//! `$$` is a literal `$`; a `$` not followed by `{` or `$` is a literal `$`
//! (so `$HOME` or a trailing `$` pass through unchanged). Resolved values are
//! inserted as they are, never expanded again. Pure: the server checks the
//! syntax where specs are saved and renders at deploy time.
use crate::names::check_env_var_name;

/// One part of a parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece<'a> {
    /// Literal text (escapes already undone).
    Text(String),
    /// `${NAME}`: the name.
    Ref(&'a str),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplateError {
    /// A `${` at byte `at` with no `}` after it.
    Unterminated { at: usize },
    /// `${…}` around something that is not a variable name.
    InvalidName { name: String },
}

impl std::fmt::Display for TemplateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TemplateError::Unterminated { at } => write!(
                f,
                "`${{` at byte {at} is not closed by `}}` (write `$$` for a literal `$`)"
            ),
            TemplateError::InvalidName { name } => write!(
                f,
                "`${{{name}}}` is not a variable name ([A-Za-z_][A-Za-z0-9_]*; \
                 defaults like `${{X:-y}}` are not supported; `$$` is a literal `$`)"
            ),
        }
    }
}

impl std::error::Error for TemplateError {}

/// Splits `s` into literal text and references.
pub fn parse(s: &str) -> Result<Vec<Piece<'_>>, TemplateError> {
    let mut pieces = Vec::new();
    let mut text = String::new();
    let mut i = 0;
    let bytes = s.as_bytes();
    while i < s.len() {
        // Copy up to the next `$` in one go (UTF-8 safe: `$` is ASCII).
        let Some(off) = s[i..].find('$') else {
            text.push_str(&s[i..]);
            break;
        };
        text.push_str(&s[i..i + off]);
        i += off;
        match bytes.get(i + 1) {
            Some(b'$') => {
                text.push('$');
                i += 2;
            }
            Some(b'{') => {
                let start = i + 2;
                let Some(len) = s[start..].find('}') else {
                    return Err(TemplateError::Unterminated { at: i });
                };
                let name = &s[start..start + len];
                if check_env_var_name(name).is_err() {
                    return Err(TemplateError::InvalidName {
                        name: name.to_string(),
                    });
                }
                if !text.is_empty() {
                    pieces.push(Piece::Text(std::mem::take(&mut text)));
                }
                pieces.push(Piece::Ref(name));
                i = start + len + 1;
            }
            _ => {
                text.push('$');
                i += 1;
            }
        }
    }
    if !text.is_empty() {
        pieces.push(Piece::Text(text));
    }
    Ok(pieces)
}

/// The names `s` refers to, in order (duplicates kept).
pub fn references(s: &str) -> Result<Vec<&str>, TemplateError> {
    Ok(parse(s)?
        .into_iter()
        .filter_map(|p| match p {
            Piece::Ref(n) => Some(n),
            Piece::Text(_) => None,
        })
        .collect())
}

/// Why a template could not be rendered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RenderError {
    Syntax(TemplateError),
    /// `lookup` knows no value for this name.
    Unknown(String),
}

impl From<TemplateError> for RenderError {
    fn from(e: TemplateError) -> Self {
        RenderError::Syntax(e)
    }
}

impl std::fmt::Display for RenderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RenderError::Syntax(e) => e.fmt(f),
            RenderError::Unknown(name) => write!(f, "${{{name}}} is not defined"),
        }
    }
}

impl std::error::Error for RenderError {}

/// Renders `s`, each `${NAME}` replaced by `lookup(NAME)` (inserted as is,
/// never expanded again).
pub fn render<'v>(
    s: &str,
    lookup: impl Fn(&str) -> Option<&'v str>,
) -> Result<String, RenderError> {
    let mut out = String::with_capacity(s.len());
    for p in parse(s)? {
        match p {
            Piece::Text(t) => out.push_str(&t),
            Piece::Ref(name) => {
                out.push_str(lookup(name).ok_or_else(|| RenderError::Unknown(name.into()))?)
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn vals() -> BTreeMap<&'static str, &'static str> {
        BTreeMap::from([
            ("DB_PASSWORD", "s3cr$t}"),
            ("HOST", "postgres"),
            ("NESTED", "${HOST}"),
        ])
    }

    fn r(s: &str) -> Result<String, RenderError> {
        let v = vals();
        render(s, |n| v.get(n).copied())
    }

    #[test]
    fn a_reference_inside_a_longer_value() {
        assert_eq!(
            r("postgresql://app:${DB_PASSWORD}@${HOST}/app").unwrap(),
            "postgresql://app:s3cr$t}@postgres/app"
        );
        assert_eq!(r("${HOST}${HOST}").unwrap(), "postgrespostgres");
    }

    #[test]
    fn values_are_not_expanded_again() {
        assert_eq!(r("x=${NESTED}").unwrap(), "x=${HOST}");
    }

    #[test]
    fn escapes_and_lone_dollars() {
        assert_eq!(r("$${HOST}").unwrap(), "${HOST}");
        assert_eq!(r("a$$b").unwrap(), "a$b");
        assert_eq!(r("$$$${HOST}").unwrap(), "$${HOST}");
        assert_eq!(r("$$${HOST}").unwrap(), "$postgres");
        assert_eq!(r("$HOME and 5$ and $").unwrap(), "$HOME and 5$ and $");
        assert_eq!(r("plain, ünïcödé").unwrap(), "plain, ünïcödé");
        assert_eq!(r("").unwrap(), "");
    }

    #[test]
    fn syntax_errors() {
        assert_eq!(
            parse("pw=${DB_PASSWORD"),
            Err(TemplateError::Unterminated { at: 3 })
        );
        assert_eq!(
            parse("${X:-default}"),
            Err(TemplateError::InvalidName {
                name: "X:-default".into()
            })
        );
        assert_eq!(
            parse("${}"),
            Err(TemplateError::InvalidName { name: "".into() })
        );
        // `${${X}}`: the name is `${X` (nesting is not a thing).
        assert!(matches!(
            parse("${${X}}"),
            Err(TemplateError::InvalidName { .. })
        ));
        assert!(parse("${A}").is_ok());
    }

    #[test]
    fn unknown_names_are_reported() {
        assert_eq!(r("${NOPE}"), Err(RenderError::Unknown("NOPE".into())));
        assert_eq!(references("a${A}b${B}$${C}").unwrap(), vec!["A", "B"]);
    }
}
