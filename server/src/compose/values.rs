//! Values as compose writes them: `$` interpolation, shell-like command
//! lines and durations.
//!
//! Compose interpolates `${NAME}` from the shell running `docker compose`.
//! Slipway has no such shell; instead:
//! - in `environment` (and `env_file`) values, `${NAME}` is kept verbatim: it
//!   is a template the server resolves at deploy time from the environment's
//!   variables and secrets, and `$$` stays `$$` (a literal `$` in Slipway's
//!   templates too). `$NAME` is written `${NAME}` and a lone `$` `$$`, so the
//!   stored text means what compose meant. [`env_template`]
//! - everywhere else (`command`, `entrypoint`, health checks, release
//!   command, volume sources) nothing is resolved: `$$` becomes `$` as
//!   compose does, and `${NAME}` is refused with a hint. [`unescape`]
use std::time::Duration;

/// Whether `c` may start a variable name.
fn name_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

fn name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The hint for a `${…}` form Slipway does not resolve.
fn unsupported_form(expr: &str, name: &str) -> String {
    if name.is_empty() {
        format!("{expr} is not a variable reference (write $$ for a literal $)")
    } else {
        format!(
            "{expr} is not supported: Slipway resolves only ${{NAME}}, at deploy time, from the \
             environment's variables and secrets (define {name} there instead of a default or \
             an error message; write $$ for a literal $)"
        )
    }
}

/// An `environment` value as a Slipway template (see the module comment), or
/// why it cannot be one.
pub fn env_template(s: &str) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push_str("$$");
            rest = tail;
        } else if let Some(inner) = after.strip_prefix('{') {
            let Some(end) = inner.find('}') else {
                return Err(format!("${{{inner} is not closed by }}"));
            };
            let expr = &inner[..end];
            let name_len = expr.find(|c| !name_char(c)).unwrap_or(expr.len());
            if name_len == expr.len() && expr.starts_with(name_start) {
                out.push_str("${");
                out.push_str(expr);
                out.push('}');
            } else {
                return Err(unsupported_form(&format!("${{{expr}}}"), &expr[..name_len]));
            }
            rest = &inner[end + 1..];
        } else if after.starts_with(name_start) {
            let len = after.find(|c| !name_char(c)).unwrap_or(after.len());
            out.push_str("${");
            out.push_str(&after[..len]);
            out.push('}');
            rest = &after[len..];
        } else {
            // A lone `$` (`$5`, `$ `, at the end): literal, as compose leaves it.
            out.push_str("$$");
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// Replaces `$$` by `$`; any `${…}` or `$NAME` is an interpolation compose
/// would resolve from the shell and Slipway does not: returned as the error.
pub fn unescape(s: &str) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if c != '$' {
            out.push(c);
            continue;
        }
        match chars.peek() {
            Some((_, '$')) => {
                chars.next();
                out.push('$');
            }
            Some((_, '{')) => {
                let rest = &s[i..];
                let end = rest.find('}').map_or(rest.len(), |e| e + 1);
                return Err(rest[..end].to_string());
            }
            Some((_, n)) if name_start(*n) => {
                let rest = &s[i + 1..];
                let end = rest.find(|c| !name_char(c)).unwrap_or(rest.len());
                return Err(format!("${}", &rest[..end]));
            }
            // A lone `$` (end of string, `$1`, `$ `) is literal.
            _ => out.push('$'),
        }
    }
    Ok(out)
}

/// The message for [`unescape`]'s error outside `environment`.
pub fn not_interpolated(var: &str) -> String {
    format!(
        "uses {var}: Slipway does not interpolate here (only environment values are templates); \
         write $$ for a literal $ that a shell in the container expands at run time, \
         or move the value into environment"
    )
}

/// `${NAME}` or `$NAME` as the whole value: the name.
pub fn whole_reference(s: &str) -> Option<&str> {
    let name = s
        .strip_prefix("${")
        .and_then(|r| r.strip_suffix('}'))
        .or_else(|| s.strip_prefix('$'))?;
    slipway_types::names::check_env_var_name(name)
        .is_ok()
        .then_some(name)
}

/// Whole seconds, rounded up, or `Err` when too long.
pub fn secs_ceil(d: Duration) -> Result<u32, String> {
    let s = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    u32::try_from(s).map_err(|_| "too long".to_string())
}

/// Splits a command line as a POSIX shell would (quotes and backslashes; no
/// expansion).
pub fn split_shell(s: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => cur.push(c),
                        None => return Err("unterminated single quote".into()),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\' | '$' | '`')) => cur.push(c),
                            Some('\n') => {}
                            Some(c) => {
                                cur.push('\\');
                                cur.push(c);
                            }
                            None => return Err("unterminated double quote".into()),
                        },
                        Some(c) => cur.push(c),
                        None => return Err("unterminated double quote".into()),
                    }
                }
            }
            '\\' => match chars.next() {
                Some('\n') => {}
                Some(c) => {
                    in_word = true;
                    cur.push(c);
                }
                None => return Err("trailing backslash".into()),
            },
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    Ok(words)
}
