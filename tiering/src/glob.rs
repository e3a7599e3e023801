//! Glob-style matching as Redis's `stringmatchlen`, for KEYS, SCAN MATCH, PSUBSCRIBE and
//! CONFIG GET: `*`, `?`, `[abc]`, `[^a-z]`, and `\` escapes.

/// Returns true if `text` matches `pattern`.
pub fn glob_match(pattern: &[u8], text: &[u8], nocase: bool) -> bool {
    let mut skip_longer = false;
    matches(pattern, text, nocase, &mut skip_longer)
}

fn eq(a: u8, b: u8, nocase: bool) -> bool {
    if nocase {
        a.eq_ignore_ascii_case(&b)
    } else {
        a == b
    }
}

/// `skip_longer` is Redis's guard against exponential backtracking: once the rest of a pattern
/// after a `*` matched nowhere in the remaining text, no earlier `*` can help either.
fn matches(mut p: &[u8], mut s: &[u8], nocase: bool, skip_longer: &mut bool) -> bool {
    while !p.is_empty() && !s.is_empty() {
        let mut pattern_done = false;
        match p[0] {
            b'*' => {
                while p.len() > 1 && p[1] == b'*' {
                    p = &p[1..];
                }
                if p.len() == 1 {
                    return true;
                }
                while !s.is_empty() {
                    if matches(&p[1..], s, nocase, skip_longer) {
                        return true;
                    }
                    if *skip_longer {
                        return false;
                    }
                    s = &s[1..];
                }
                *skip_longer = true;
                return false;
            }
            b'?' => s = &s[1..],
            b'[' => {
                p = &p[1..];
                let not = p.first() == Some(&b'^');
                if not {
                    p = &p[1..];
                }
                let mut hit = false;
                loop {
                    if p.is_empty() {
                        // An unterminated class ends with the pattern.
                        pattern_done = true;
                        break;
                    }
                    if p[0] == b'\\' && p.len() >= 2 {
                        p = &p[1..];
                        if p[0] == s[0] {
                            hit = true;
                        }
                    } else if p[0] == b']' {
                        break;
                    } else if p.len() >= 3 && p[1] == b'-' {
                        let (mut start, mut end, mut c) = (p[0], p[2], s[0]);
                        if start > end {
                            std::mem::swap(&mut start, &mut end);
                        }
                        if nocase {
                            start = start.to_ascii_lowercase();
                            end = end.to_ascii_lowercase();
                            c = c.to_ascii_lowercase();
                        }
                        p = &p[2..];
                        if c >= start && c <= end {
                            hit = true;
                        }
                    } else if eq(p[0], s[0], nocase) {
                        hit = true;
                    }
                    p = &p[1..];
                }
                if hit == not {
                    return false;
                }
                s = &s[1..];
            }
            b'\\' if p.len() >= 2 => {
                p = &p[1..];
                if !eq(p[0], s[0], nocase) {
                    return false;
                }
                s = &s[1..];
            }
            c => {
                if !eq(c, s[0], nocase) {
                    return false;
                }
                s = &s[1..];
            }
        }
        if !pattern_done {
            p = &p[1..];
        }
        if s.is_empty() {
            while p.first() == Some(&b'*') {
                p = &p[1..];
            }
            break;
        }
    }
    p.is_empty() && s.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_glob_rules() {
        assert!(glob_match(b"*", b"anything", false));
        assert!(glob_match(b"h?llo", b"hello", false));
        assert!(glob_match(b"h*llo", b"heeeello", false));
        assert!(glob_match(b"h[ae]llo", b"hallo", false));
        assert!(!glob_match(b"h[ae]llo", b"hillo", false));
        assert!(glob_match(b"h[^e]llo", b"hallo", false));
        assert!(!glob_match(b"h[^e]llo", b"hello", false));
        assert!(glob_match(b"h[a-b]llo", b"hbllo", false));
        assert!(glob_match(b"h\\*llo", b"h*llo", false));
        assert!(!glob_match(b"h\\*llo", b"hello", false));
        assert!(glob_match(b"key:*", b"key:", false));
        assert!(!glob_match(b"a", b"", false));
        assert!(glob_match(b"HELLO", b"hello", true));
        assert!(glob_match(b"", b"", false));
    }

    #[test]
    fn hostile_pattern_terminates() {
        let pattern = b"*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*b".to_vec();
        let text = vec![b'a'; 100];
        assert!(!glob_match(&pattern, &text, false));
    }
}
