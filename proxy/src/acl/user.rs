//! One ACL user and the rules of ACL SETUSER that change it, as Redis 7.0's `ACLSetUser` /
//! `ACLSetSelector` apply them, and its description (`ACL LIST`, `ACL GETUSER`) as Redis's
//! `ACLDescribeUser` writes it: `+@all` or `-@all`, then categories chosen greedily, then the
//! single commands that still differ.
//!
//! The subset: on, off, nopass, resetpass, >password, <password, #hash, !hash, ~pattern, allkeys,
//! resetkeys, &pattern, allchannels, resetchannels, +command, -command, +container|sub,
//! -container|sub, +@category, -@category, allcommands, nocommands, reset, sanitize-payload,
//! skip-sanitize-payload. Not supported (refused with Redis's "Syntax error"): selectors
//! `(...)`, `%R~` / `%W~` key permissions, and `+command|firstarg` for commands without
//! subcommands.

use bytes::Bytes;
use sha2::{Digest, Sha256};

use super::index::{index, CATEGORIES};

/// Why a rule was refused; the text is Redis's `ACLSetUserStringError`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleError {
    UnknownCommand,
    Syntax,
    KeyAfterAll,
    ChannelAfterAll,
    NoSuchPassword,
    BadHash,
    SubcommandFirstArg,
}

impl RuleError {
    pub fn message(self) -> &'static str {
        match self {
            RuleError::UnknownCommand => "Unknown command or category name in ACL",
            RuleError::Syntax => "Syntax error",
            RuleError::KeyAfterAll => "Adding a pattern after the * pattern (or the 'allkeys' flag) is not valid and does not have any effect. Try 'resetkeys' to start with an empty list of patterns",
            RuleError::ChannelAfterAll => "Adding a pattern after the * pattern (or the 'allchannels' flag) is not valid and does not have any effect. Try 'resetchannels' to start with an empty list of channels",
            RuleError::NoSuchPassword => {
                "The password you are trying to remove from the user does not exist"
            }
            RuleError::BadHash => "The password hash must be exactly 64 characters and contain only lowercase hexadecimal characters",
            RuleError::SubcommandFirstArg => "Allowing first-arg of a subcommand is not supported",
        }
    }
}

/// A user: flags, password hashes, key and channel patterns, and the commands it may run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: Bytes,
    pub enabled: bool,
    pub nopass: bool,
    /// Redis keeps both flags apart (neither is set on a new user).
    pub sanitize_payload: Option<bool>,
    /// SHA-256 of each password, lowercase hex, in the order added.
    pub passwords: Vec<String>,
    pub allkeys: bool,
    pub keys: Vec<Bytes>,
    pub allchannels: bool,
    pub channels: Vec<Bytes>,
    /// Per command id (see `index`): may it run.
    pub commands: Vec<bool>,
    /// Redis's reserved bit set only by `+@all`: commands added later are allowed too.
    pub future: bool,
    /// Redis's SELECTOR_FLAG_ALLCOMMANDS: `+@all` and nothing taken away since.
    pub allcommands: bool,
}

/// Redis's `ACLHashPassword`: SHA-256, lowercase hex.
pub fn hash_password(password: &[u8]) -> String {
    hex::encode(Sha256::digest(password))
}

fn valid_hash(hash: &[u8]) -> bool {
    hash.len() == 64 && hash.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn has_spaces(text: &[u8]) -> bool {
    text.iter().any(|b| b.is_ascii_whitespace() || *b == 0)
}

impl User {
    /// A new user as ACL SETUSER creates it: off, no passwords, no keys, no channels (Redis 7.0's
    /// `acl-pubsub-default resetchannels`), no commands.
    pub fn new(name: Bytes) -> User {
        User {
            name,
            enabled: false,
            nopass: false,
            sanitize_payload: None,
            passwords: Vec::new(),
            allkeys: false,
            keys: Vec::new(),
            allchannels: false,
            channels: Vec::new(),
            commands: vec![false; index().count()],
            future: false,
            allcommands: false,
        }
    }

    /// Redis's default user: on, nopass, every key, channel and command.
    pub fn default_user() -> User {
        let mut user = User::new(Bytes::from_static(b"default"));
        for rule in ["+@all", "~*", "&*", "on", "nopass"] {
            // These rules are valid by construction.
            let _ = user.apply(rule.as_bytes());
        }
        user
    }

    /// May this user run anything on any key and channel: the sessions of such a user skip the
    /// per-command check.
    pub fn unrestricted(&self) -> bool {
        self.allcommands && self.allkeys && self.allchannels
    }

    /// Whether `password` opens this user (enabled, and nopass or a matching password).
    pub fn check_password(&self, password: &[u8]) -> bool {
        if !self.enabled {
            return false;
        }
        if self.nopass {
            return true;
        }
        let hashed = hash_password(password);
        self.passwords.contains(&hashed)
    }

    /// Applies one ACL SETUSER rule.
    pub fn apply(&mut self, op: &[u8]) -> Result<(), RuleError> {
        if op.is_empty() {
            return Ok(());
        }
        let lower = op.to_ascii_lowercase();
        match lower.as_slice() {
            b"on" => self.enabled = true,
            b"off" => self.enabled = false,
            b"skip-sanitize-payload" => self.sanitize_payload = Some(false),
            b"sanitize-payload" => self.sanitize_payload = Some(true),
            b"nopass" => {
                self.nopass = true;
                self.passwords.clear();
            }
            b"resetpass" => {
                self.nopass = false;
                self.passwords.clear();
            }
            b"reset" => {
                for rule in [
                    "resetpass",
                    "resetkeys",
                    "resetchannels",
                    "off",
                    "sanitize-payload",
                    "-@all",
                ] {
                    self.apply(rule.as_bytes())?;
                }
            }
            b"allkeys" | b"~*" => {
                self.allkeys = true;
                self.keys.clear();
            }
            b"resetkeys" => {
                self.allkeys = false;
                self.keys.clear();
            }
            b"allchannels" | b"&*" => {
                self.allchannels = true;
                self.channels.clear();
            }
            b"resetchannels" => {
                self.allchannels = false;
                self.channels.clear();
            }
            b"allcommands" | b"+@all" => {
                self.commands.iter_mut().for_each(|bit| *bit = true);
                self.future = true;
                self.allcommands = true;
            }
            b"nocommands" | b"-@all" => {
                self.commands.iter_mut().for_each(|bit| *bit = false);
                self.future = false;
                self.allcommands = false;
            }
            _ => return self.apply_prefixed(op),
        }
        Ok(())
    }

    fn apply_prefixed(&mut self, op: &[u8]) -> Result<(), RuleError> {
        let rest = &op[1..];
        match op[0] {
            b'>' | b'#' => {
                let hash = if op[0] == b'>' {
                    hash_password(rest)
                } else if valid_hash(rest) {
                    String::from_utf8_lossy(rest).into_owned()
                } else {
                    return Err(RuleError::BadHash);
                };
                if !self.passwords.contains(&hash) {
                    self.passwords.push(hash);
                }
                self.nopass = false;
            }
            b'<' | b'!' => {
                let hash = if op[0] == b'<' {
                    hash_password(rest)
                } else if valid_hash(rest) {
                    String::from_utf8_lossy(rest).into_owned()
                } else {
                    return Err(RuleError::BadHash);
                };
                let Some(at) = self.passwords.iter().position(|p| *p == hash) else {
                    return Err(RuleError::NoSuchPassword);
                };
                self.passwords.remove(at);
            }
            b'~' => {
                if self.allkeys {
                    return Err(RuleError::KeyAfterAll);
                }
                if has_spaces(rest) {
                    return Err(RuleError::Syntax);
                }
                let pattern = Bytes::copy_from_slice(rest);
                if !self.keys.contains(&pattern) {
                    self.keys.push(pattern);
                }
            }
            b'&' => {
                if self.allchannels {
                    return Err(RuleError::ChannelAfterAll);
                }
                if has_spaces(rest) {
                    return Err(RuleError::Syntax);
                }
                let pattern = Bytes::copy_from_slice(rest);
                if !self.channels.contains(&pattern) {
                    self.channels.push(pattern);
                }
            }
            b'+' | b'-' if rest.first() == Some(&b'@') => {
                let allow = op[0] == b'+';
                let category = String::from_utf8_lossy(&rest[1..]).to_ascii_lowercase();
                if !CATEGORIES.contains(&category.as_str()) {
                    return Err(RuleError::UnknownCommand);
                }
                self.set_category(&category, allow);
            }
            b'+' | b'-' => {
                let allow = op[0] == b'+';
                let id = command_id(rest)?;
                self.set_command(id, allow);
            }
            _ => return Err(RuleError::Syntax),
        }
        Ok(())
    }

    /// Redis's `ACLChangeSelectorPerm`: the command and, for a container, all its subcommands.
    fn set_command(&mut self, id: usize, allow: bool) {
        self.commands[id] = allow;
        for &child in &index().children[id] {
            self.commands[child] = allow;
        }
        if !allow {
            self.allcommands = false;
        }
    }

    fn set_category(&mut self, category: &str, allow: bool) {
        let ids: Vec<usize> = index().in_category(category).collect();
        for id in ids {
            self.set_command(id, allow);
        }
    }

    /// Commands in `category` this user may (on) and may not (off) run.
    fn count_category(commands: &[bool], category: &str) -> (usize, usize) {
        index().in_category(category).fold((0, 0), |(on, off), id| {
            if commands[id] {
                (on + 1, off)
            } else {
                (on, off + 1)
            }
        })
    }

    /// The command rules as Redis 7.0's `ACLDescribeSelectorCommandRules` writes them. Single
    /// commands come in table order (Redis: its command dictionary's order).
    pub fn describe_commands(&self) -> String {
        let additive = !self.future;
        let mut rules = String::from(if additive { "-@all" } else { "+@all" });
        let mut fake = User::new(self.name.clone());
        let _ = fake.apply(if additive { b"-@all" } else { b"+@all" });
        let mut temp = self.commands.clone();
        let mut applied = [false; CATEGORIES.len()];
        loop {
            let mut best = None;
            let (mut min_diff, mut max_same) = (usize::MAX, 0);
            for (j, category) in CATEGORIES.iter().enumerate() {
                if applied[j] {
                    continue;
                }
                let (on, off) = User::count_category(&temp, category);
                let (diff, same) = if additive { (off, on) } else { (on, off) };
                if same > diff && (diff < min_diff || (diff == min_diff && same > max_same)) {
                    best = Some(j);
                    min_diff = diff;
                    max_same = same;
                }
            }
            let Some(best) = best else { break };
            let category = CATEGORIES[best];
            fake.set_category(category, additive);
            for id in index().in_category(category).collect::<Vec<_>>() {
                temp[id] = !additive;
                for &child in &index().children[id] {
                    temp[child] = !additive;
                }
            }
            rules.push_str(if additive { " +@" } else { " -@" });
            rules.push_str(category);
            applied[best] = true;
        }
        let idx = index();
        for (id, spec) in idx.commands.iter().enumerate() {
            if self.commands[id] != fake.commands[id] {
                rules.push(' ');
                rules.push(if self.commands[id] { '+' } else { '-' });
                rules.push_str(spec.name);
                fake.set_command(id, self.commands[id]);
            }
        }
        rules
    }

    /// `~*`, or each key pattern as `~pattern`, space separated.
    pub fn describe_keys(&self) -> String {
        if self.allkeys {
            return "~*".to_string();
        }
        self.keys
            .iter()
            .map(|k| format!("~{}", String::from_utf8_lossy(k)))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// `&*`, or each channel pattern as `&pattern`, space separated.
    pub fn describe_channels(&self) -> String {
        if self.allchannels {
            return "&*".to_string();
        }
        self.channels
            .iter()
            .map(|c| format!("&{}", String::from_utf8_lossy(c)))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The flags ACL GETUSER lists, in Redis's `ACLUserFlags` order.
    pub fn flags(&self) -> Vec<&'static str> {
        let mut flags = vec![if self.enabled { "on" } else { "off" }];
        if self.nopass {
            flags.push("nopass");
        }
        match self.sanitize_payload {
            Some(false) => flags.push("skip-sanitize-payload"),
            Some(true) => flags.push("sanitize-payload"),
            None => {}
        }
        flags
    }

    /// One ACL LIST line (Redis's `ACLDescribeUser` after `user <name> `).
    pub fn describe(&self) -> String {
        let mut out = format!("user {}", String::from_utf8_lossy(&self.name));
        for flag in self.flags() {
            out.push(' ');
            out.push_str(flag);
        }
        for hash in &self.passwords {
            out.push_str(" #");
            out.push_str(hash);
        }
        if self.allkeys {
            out.push_str(" ~*");
        } else {
            for key in &self.keys {
                out.push_str(" ~");
                out.push_str(&String::from_utf8_lossy(key));
            }
        }
        if self.allchannels {
            out.push_str(" &*");
        } else {
            out.push_str(" resetchannels");
            for channel in &self.channels {
                out.push_str(" &");
                out.push_str(&String::from_utf8_lossy(channel));
            }
        }
        out.push(' ');
        out.push_str(&self.describe_commands());
        out
    }
}

/// The id of `name` (`get`, `client|list`) for a `+` / `-` rule.
fn command_id(name: &[u8]) -> Result<usize, RuleError> {
    let idx = index();
    let lookup = |name: &[u8]| {
        tessera_proto::command::lookup(name)
            .and_then(|spec| idx.id(spec))
            .ok_or(RuleError::UnknownCommand)
    };
    let Some(bar) = name.iter().rposition(|&b| b == b'|') else {
        return lookup(name);
    };
    let (parent, sub) = (&name[..bar], &name[bar + 1..]);
    let parent_spec = tessera_proto::command::lookup(parent).ok_or(RuleError::UnknownCommand)?;
    if parent_spec.name.contains('|') {
        return Err(RuleError::SubcommandFirstArg);
    }
    if sub.is_empty() {
        return Err(RuleError::Syntax);
    }
    if parent_spec.subcommands.is_empty() {
        // Redis's deprecated "first argument" rules: not part of the subset.
        return Err(RuleError::Syntax);
    }
    lookup(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(rules: &[&str]) -> User {
        let mut u = User::new(Bytes::from_static(b"u"));
        for rule in rules {
            u.apply(rule.as_bytes()).expect(rule);
        }
        u
    }

    #[test]
    fn descriptions_match_redis() {
        // Each expected line is what redis-server 7.0.15 answers to ACL LIST for these rules.
        assert_eq!(
            User::default_user().describe(),
            "user default on nopass ~* &* +@all"
        );
        assert_eq!(user(&[]).describe(), "user u off resetchannels -@all");
        assert_eq!(
            user(&["on", ">p1", "~k*", "+get", "+@string", "-set"]).describe(),
            "user u on #f64551fcd6f07823cb87971cfb91446425da18286b3ab1ef935e0cbd7a69f68a ~k* resetchannels -@all +@string -set"
        );
        assert_eq!(
            user(&["+get", "+set", "+@string"]).describe_commands(),
            "-@all +@string"
        );
        assert_eq!(
            user(&["+@string", "-get", "+get"]).describe_commands(),
            "-@all +@string"
        );
        assert_eq!(
            user(&["+client|id", "+get"]).describe_commands(),
            "-@all +client|id +get"
        );
        assert_eq!(
            user(&["allcommands", "-get", "nocommands", "+set"]).describe_commands(),
            "-@all +set"
        );
        assert_eq!(
            user(&[">a", ">b", "<a", "nopass"]).describe(),
            "user u off nopass resetchannels -@all"
        );
    }

    #[test]
    fn rule_errors() {
        let mut u = User::new(Bytes::from_static(b"u"));
        assert_eq!(u.apply(b"+nosuch"), Err(RuleError::UnknownCommand));
        assert_eq!(u.apply(b"+@nosuch"), Err(RuleError::UnknownCommand));
        assert_eq!(u.apply(b"badrule"), Err(RuleError::Syntax));
        assert_eq!(u.apply(b"#abc"), Err(RuleError::BadHash));
        assert_eq!(u.apply(b"<nope"), Err(RuleError::NoSuchPassword));
        u.apply(b"allkeys").unwrap();
        assert_eq!(u.apply(b"~x"), Err(RuleError::KeyAfterAll));
    }

    #[test]
    fn passwords() {
        let u = user(&["on", ">secret"]);
        assert!(u.check_password(b"secret"));
        assert!(!u.check_password(b"other"));
        assert!(!user(&[">secret"]).check_password(b"secret"), "off");
        assert!(user(&["on", "nopass"]).check_password(b"anything"));
    }
}
