//! Glob patterns of trigger rules, matched against branch and tag names:
//! `*` matches within one `/`-separated segment, `**` across segments, `?`
//! one character other than `/`; everything else is literal.

/// True when `name` matches `pattern` as a whole.
pub fn matches(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    // memo[i][j]: pattern[i..] matches name[j..] (iterative DP, no recursion blow-up).
    let (pl, nl) = (p.len(), n.len());
    let mut memo = vec![vec![false; nl + 1]; pl + 1];
    memo[pl][nl] = true;
    for i in (0..pl).rev() {
        let double = p[i] == '*' && p.get(i + 1) == Some(&'*');
        for j in (0..=nl).rev() {
            memo[i][j] = if double {
                // `**` consumes any run of characters; a following `/` may
                // also match nothing so `release/**` matches `release/x/y`
                // and `**/x` matches `x`.
                let skip = i + 2;
                let mut ok = memo[skip][j] || (j < nl && memo[i][j + 1]);
                if !ok && p.get(skip) == Some(&'/') {
                    ok = memo[skip + 1][j];
                }
                ok
            } else if p[i] == '*' {
                memo[i + 1][j] || (j < nl && n[j] != '/' && memo[i][j + 1])
            } else if p[i] == '?' {
                j < nl && n[j] != '/' && memo[i + 1][j + 1]
            } else {
                j < nl && n[j] == p[i] && memo[i + 1][j + 1]
            };
        }
    }
    memo[0][0]
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn literals_and_single_star() {
        assert!(matches("main", "main"));
        assert!(!matches("main", "main2"));
        assert!(!matches("main", "mai"));
        assert!(matches("v*", "v1.2.3"));
        assert!(matches("v*", "v"));
        assert!(!matches("v*", "x1"));
        assert!(!matches("v*", "v1/hotfix"), "* does not cross /");
        assert!(matches("*", "anything"));
        assert!(!matches("*", "a/b"));
        assert!(matches("release/*", "release/1.0"));
        assert!(!matches("release/*", "release/1.0/rc1"));
        assert!(matches("feat-*-x", "feat-abc-x"));
        assert!(matches("v?.0", "v2.0"));
        assert!(!matches("v?.0", "v10.0"));
    }

    #[test]
    fn double_star_crosses_segments() {
        assert!(matches("release/**", "release/1.0"));
        assert!(matches("release/**", "release/1.0/rc1"));
        assert!(!matches("release/**", "hotfix/1.0"));
        assert!(matches("**", "a/b/c"));
        assert!(matches("**", ""));
        assert!(matches("**/prod", "prod"));
        assert!(matches("**/prod", "a/b/prod"));
        assert!(!matches("**/prod", "a/b/prod2"));
        assert!(matches("a/**/z", "a/z"));
        assert!(matches("a/**/z", "a/b/c/z"));
    }

    #[test]
    fn empty_and_pathological() {
        assert!(!matches("", "x"));
        assert!(matches("", ""));
        let long = "a".repeat(200);
        assert!(
            !matches("*a*a*a*a*a*a*a*a*b", &long),
            "no exponential blow-up"
        );
    }
}
