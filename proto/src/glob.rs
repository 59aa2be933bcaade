//! Glob-style matching, a port of Redis's `stringmatchlen` (util.c) so the same patterns match the
//! same strings: KEYS and SCAN MATCH on the shard node, PSUBSCRIBE and PUBSUB patterns, the proxy's
//! ACL key and channel patterns. Supports `*`, `?`, `[abc]`, `[^abc]`, `[a-z]` and `\` escapes.

/// Whether `string` matches `pattern`, case-sensitively, as Redis's `stringmatchlen(.., 0)`.
pub fn matches(pattern: &[u8], string: &[u8]) -> bool {
    let mut skip_longer = false;
    match_impl(pattern, string, &mut skip_longer, 0)
}

/// Redis bounds the recursion of `*` so a hostile pattern cannot exhaust the stack.
const MAX_NESTING: usize = 1000;

fn match_impl(mut p: &[u8], mut s: &[u8], skip_longer: &mut bool, nesting: usize) -> bool {
    if nesting > MAX_NESTING {
        return false;
    }
    while !p.is_empty() && !s.is_empty() {
        match p[0] {
            b'*' => {
                while p.len() > 1 && p[1] == b'*' {
                    p = &p[1..];
                }
                if p.len() == 1 {
                    return true;
                }
                while !s.is_empty() {
                    if match_impl(&p[1..], s, skip_longer, nesting + 1) {
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
            b'?' => {
                s = &s[1..];
            }
            b'[' => {
                p = &p[1..];
                let not = p.first() == Some(&b'^');
                if not {
                    p = &p[1..];
                }
                let mut matched = false;
                loop {
                    if p.is_empty() {
                        // Unterminated class: Redis steps back onto the last character.
                        break;
                    }
                    if p[0] == b'\\' && p.len() >= 2 {
                        p = &p[1..];
                        if p[0] == s[0] {
                            matched = true;
                        }
                    } else if p[0] == b']' {
                        break;
                    } else if p.len() >= 3 && p[1] == b'-' {
                        let (mut start, mut end) = (p[0], p[2]);
                        if start > end {
                            std::mem::swap(&mut start, &mut end);
                        }
                        p = &p[2..];
                        if (start..=end).contains(&s[0]) {
                            matched = true;
                        }
                    } else if p[0] == s[0] {
                        matched = true;
                    }
                    p = &p[1..];
                }
                if p.is_empty() {
                    // Redis: `pattern--; patternLen++;` leaves the cursor on the last byte, which
                    // the common `pattern++` below then consumes.
                    if not {
                        matched = !matched;
                    }
                    if !matched {
                        return false;
                    }
                    s = &s[1..];
                    continue;
                }
                if not {
                    matched = !matched;
                }
                if !matched {
                    return false;
                }
                s = &s[1..];
            }
            b'\\' if p.len() >= 2 => {
                p = &p[1..];
                if p[0] != s[0] {
                    return false;
                }
                s = &s[1..];
            }
            c => {
                if c != s[0] {
                    return false;
                }
                s = &s[1..];
            }
        }
        p = &p[1..];
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
    use super::matches;

    #[test]
    fn redis_glob_rules() {
        let cases: &[(&str, &str, bool)] = &[
            // As Redis: the loop needs input, so a lone `*` does not match the empty string
            // (KEYS and SCAN special-case `*` before matching).
            ("*", "", false),
            ("*", "anything", true),
            ("h?llo", "hello", true),
            ("h?llo", "hllo", false),
            ("h*llo", "heeeello", true),
            ("h[ae]llo", "hallo", true),
            ("h[ae]llo", "hillo", false),
            ("h[^e]llo", "hallo", true),
            ("h[^e]llo", "hello", false),
            ("h[a-b]llo", "hbllo", true),
            ("h[b-a]llo", "hallo", true),
            ("h[a-b]llo", "hcllo", false),
            ("h\\*llo", "h*llo", true),
            ("h\\*llo", "hello", false),
            ("a*b*c", "aXXbYYc", true),
            ("a*b*c", "aXXbYY", false),
            ("key:*", "key:1", true),
            ("key:*", "kez:1", false),
            ("", "", true),
            ("a", "", false),
            ("a**", "a", true),
            ("[abc", "a", true),
            ("foo\\", "foo\\", true),
        ];
        for (pattern, string, want) in cases {
            assert_eq!(
                matches(pattern.as_bytes(), string.as_bytes()),
                *want,
                "{pattern} ~ {string}"
            );
        }
    }

    #[test]
    fn hostile_pattern_terminates() {
        let pattern = "a*".repeat(2000) + "b";
        let string = "a".repeat(3000);
        assert!(!matches(pattern.as_bytes(), string.as_bytes()));
    }
}
