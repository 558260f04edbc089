//! `env_file` content as compose reads it (`KEY=VALUE` lines).
//!
//! Blank lines and `#` comments are skipped, `export ` is allowed before a
//! key, an unquoted value ends at ` #` and is trimmed, a single-quoted value
//! is literal, a double-quoted one knows `\n`, `\t`, `\"`, `\\` and `\$`;
//! quoted values may span lines. A bare `KEY` takes its value from outside
//! the file (compose: the shell).

/// One variable of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// 1-based line of the key.
    pub line: usize,
    pub key: String,
    pub value: Value,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// Unquoted or double-quoted: interpolated like an `environment` value.
    Template(String),
    /// Single-quoted: taken as is, `$` included.
    Literal(String),
    /// A bare `KEY`.
    FromOutside,
}

/// The variables of `content` in file order, or every bad line.
pub fn parse(content: &str) -> Result<Vec<Entry>, Vec<String>> {
    let lines: Vec<&str> = content
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .collect();
    let mut entries = Vec::new();
    let mut errors = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line_no = i + 1;
        let line = lines[i].trim();
        i += 1;
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line
            .strip_prefix("export ")
            .map(str::trim_start)
            .unwrap_or(line);
        let Some((key, value)) = line.split_once('=') else {
            if line.contains(char::is_whitespace) {
                errors.push(format!("line {line_no}: expected KEY=VALUE"));
            } else {
                entries.push(Entry {
                    line: line_no,
                    key: line.to_string(),
                    value: Value::FromOutside,
                });
            }
            continue;
        };
        let key = key.trim();
        if key.is_empty() || key.contains(char::is_whitespace) {
            errors.push(format!("line {line_no}: expected KEY=VALUE"));
            continue;
        }
        let value = value.trim_start();
        let quote = value.chars().next().filter(|c| *c == '\'' || *c == '"');
        let value = match quote {
            None => {
                let end = value
                    .char_indices()
                    .find(|&(j, c)| c == '#' && value[..j].ends_with(|p: char| p.is_whitespace()))
                    .map_or(value.len(), |(j, _)| j);
                Value::Template(value[..end].trim_end().to_string())
            }
            Some(q) => {
                let mut buf = value[1..].to_string();
                let close = loop {
                    if let Some(pos) = closing_quote(&buf, q) {
                        break Some(pos);
                    }
                    match lines.get(i) {
                        Some(next) => {
                            buf.push('\n');
                            buf.push_str(next);
                            i += 1;
                        }
                        None => break None,
                    }
                };
                let Some(pos) = close else {
                    errors.push(format!("line {line_no}: the {q} quote is not closed"));
                    continue;
                };
                let tail = buf[pos + 1..].trim();
                if !(tail.is_empty() || tail.starts_with('#')) {
                    errors.push(format!(
                        "line {line_no}: unexpected {tail:?} after the quoted value"
                    ));
                    continue;
                }
                let inner = &buf[..pos];
                if q == '\'' {
                    Value::Literal(inner.to_string())
                } else {
                    Value::Template(double_quoted(inner))
                }
            }
        };
        entries.push(Entry {
            line: line_no,
            key: key.to_string(),
            value,
        });
    }
    if errors.is_empty() {
        Ok(entries)
    } else {
        Err(errors)
    }
}

/// Byte position of the quote closing `s` (which starts after the opening one).
fn closing_quote(s: &str, q: char) -> Option<usize> {
    let mut escaped = false;
    for (j, c) in s.char_indices() {
        if q == '"' && escaped {
            escaped = false;
        } else if q == '"' && c == '\\' {
            escaped = true;
        } else if c == q {
            return Some(j);
        }
    }
    None
}

/// The escapes of a double-quoted value; `\$` is a literal `$`, written
/// `$$` in the template.
fn double_quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('t') => out.push('\t'),
            Some('$') => out.push_str("$$"),
            Some(c @ ('"' | '\\')) => out.push(c),
            Some(c) => {
                out.push('\\');
                out.push(c);
            }
            None => out.push('\\'),
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;

    fn values(content: &str) -> Vec<(String, Value)> {
        parse(content)
            .unwrap()
            .into_iter()
            .map(|e| (e.key, e.value))
            .collect()
    }

    fn t(s: &str) -> Value {
        Value::Template(s.into())
    }

    #[test]
    fn lines_comments_quotes_and_export() {
        let got = values(
            "# database\n\nDB_HOST=postgres\nexport DB_PORT = 5432\n\
             URL=postgres://a:${PW}@db/x # inline\nHASH=abc#def\nEMPTY=\n\
             SINGLE='it is $HOME' # literal\nDOUBLE=\"line1\\nline2 \\\"q\\\" \\$5\"\n\
             MULTI=\"a\nb\"\nFROM_SHELL\r\nWIN=1\r\n",
        );
        assert_eq!(
            got,
            [
                ("DB_HOST".into(), t("postgres")),
                ("DB_PORT".into(), t("5432")),
                ("URL".into(), t("postgres://a:${PW}@db/x")),
                ("HASH".into(), t("abc#def")),
                ("EMPTY".into(), t("")),
                ("SINGLE".into(), Value::Literal("it is $HOME".into())),
                ("DOUBLE".into(), t("line1\nline2 \"q\" $$5")),
                ("MULTI".into(), t("a\nb")),
                ("FROM_SHELL".into(), Value::FromOutside),
                ("WIN".into(), t("1")),
            ]
        );
        assert_eq!(parse("A=1\nB=2\n").unwrap()[1].line, 2);
    }

    #[test]
    fn bad_lines_are_all_reported() {
        let errors = parse("GOOD=1\nnot a pair\nQ=\"open\nX='a' b\n").unwrap_err();
        assert_eq!(
            errors,
            [
                "line 2: expected KEY=VALUE",
                "line 3: the \" quote is not closed"
            ]
        );
        let errors = parse("X='a' b\n").unwrap_err();
        assert_eq!(errors, ["line 1: unexpected \"b\" after the quoted value"]);
    }
}
