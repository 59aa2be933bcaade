//! Authentication and ACL users of the proxy, as Redis 7.0 has them. Users belong to one proxy
//! (each proxy of a cluster has its own, from its `--requirepass` / `--aclfile` and the ACL
//! SETUSER / DELUSER it is sent); they are never sent to the shard nodes.
//!
//! The per-command cost: a session remembers whether its user may run everything
//! (`Session::open`) and the ACL version it checked against; only a session that is not open, or
//! that sees a newer version, goes through `gate` (NOAUTH, NOPERM, then the normal path).

use tessera_proto::glob;
mod index;
mod user;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use tessera_proto::command::{self, CommandSpec};

pub use index::CATEGORIES;
pub use user::{hash_password, RuleError, User};

pub const NOAUTH: &str = "NOAUTH Authentication required.";
pub const WRONGPASS: &str = "WRONGPASS invalid username-password pair or user is disabled.";

/// Every user of this proxy, and a version raised on every change so sessions re-check.
#[derive(Debug)]
pub struct Acl {
    users: RwLock<BTreeMap<Bytes, Arc<User>>>,
    version: AtomicU64,
}

/// Why a user may not run a command (Redis's ACL_DENIED_*).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denied {
    Command(&'static str),
    Key,
    Channel,
}

impl Denied {
    pub fn message(&self) -> String {
        match self {
            Denied::Command(name) => {
                format!("NOPERM this user has no permissions to run the '{name}' command")
            }
            Denied::Key => {
                "NOPERM this user has no permissions to access one of the keys used as arguments"
                    .to_string()
            }
            Denied::Channel => "NOPERM this user has no permissions to access one of the channels used as arguments".to_string(),
        }
    }
}

/// An aclfile that could not be loaded; the text follows Redis's `ACLLoadFromFile`.
#[derive(Debug, thiserror::Error)]
pub enum AclFileError {
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}:{line}: {reason}")]
    Line {
        path: String,
        line: usize,
        reason: String,
    },
}

impl Acl {
    /// The default user alone; with `requirepass`, the default user has that password instead of
    /// nopass (as Redis's `requirepass` rewrites the default user).
    pub fn new(requirepass: Option<&str>) -> Acl {
        let mut default = User::default_user();
        if let Some(pass) = requirepass.filter(|p| !p.is_empty()) {
            let _ = default.apply(b"resetpass");
            let _ = default.apply(format!(">{pass}").as_bytes());
        }
        let mut users = BTreeMap::new();
        users.insert(default.name.clone(), Arc::new(default));
        Acl {
            users: RwLock::new(users),
            version: AtomicU64::new(1),
        }
    }

    /// Loads users from a file in Redis's aclfile format (`user <name> <rules...>` per line,
    /// blank lines skipped; like Redis, no comments). A `default` line replaces the default user.
    /// All or nothing: one bad line loads no user.
    pub fn load_file(&self, path: &Path) -> Result<(), AclFileError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| AclFileError::Read {
            path: shown.clone(),
            source,
        })?;
        let mut loaded = BTreeMap::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            let error = |reason: String| AclFileError::Line {
                path: shown.clone(),
                line: n + 1,
                reason,
            };
            let words: Vec<&str> = line.split_whitespace().collect();
            if words.len() < 2 || words[0] != "user" {
                return Err(error(
                    "should start with user keyword followed by the username".to_string(),
                ));
            }
            let name = Bytes::copy_from_slice(words[1].as_bytes());
            if loaded.contains_key(&name) {
                return Err(error(
                    "Duplicate user found. A user can only be defined once in config files"
                        .to_string(),
                ));
            }
            let mut user = User::new(name.clone());
            for rule in &words[2..] {
                user.apply(rule.as_bytes())
                    .map_err(|e| error(format!("{}. Line: '{line}'", e.message())))?;
            }
            loaded.insert(name, Arc::new(user));
        }
        let mut users = self.users.write().unwrap_or_else(|p| p.into_inner());
        users.extend(loaded);
        self.version.fetch_add(1, Ordering::Release);
        Ok(())
    }

    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    pub fn get(&self, name: &[u8]) -> Option<Arc<User>> {
        let users = self.users.read().unwrap_or_else(|p| p.into_inner());
        users.get(name).cloned()
    }

    /// Every user, sorted by name (Redis keeps them in a radix tree).
    pub fn users(&self) -> Vec<Arc<User>> {
        let users = self.users.read().unwrap_or_else(|p| p.into_inner());
        users.values().cloned().collect()
    }

    /// ACL SETUSER: applies every rule to a copy (all or nothing), creating the user if needed.
    pub fn set_user(&self, name: &Bytes, rules: &[Bytes]) -> Result<(), (Bytes, RuleError)> {
        let mut users = self.users.write().unwrap_or_else(|p| p.into_inner());
        let mut user = match users.get(name) {
            Some(existing) => User::clone(existing),
            None => User::new(name.clone()),
        };
        for rule in rules {
            user.apply(rule).map_err(|e| (rule.clone(), e))?;
        }
        users.insert(name.clone(), Arc::new(user));
        self.version.fetch_add(1, Ordering::Release);
        Ok(())
    }

    /// ACL DELUSER: how many of `names` existed and were removed (never `default`).
    pub fn delete_users(&self, names: &[Bytes]) -> usize {
        let mut users = self.users.write().unwrap_or_else(|p| p.into_inner());
        let removed = names
            .iter()
            .filter(|name| users.remove(&name[..]).is_some())
            .count();
        self.version.fetch_add(1, Ordering::Release);
        removed
    }

    /// Whether clients that have not authenticated must (the default user has a password or is
    /// off), as Redis's `authRequired`.
    pub fn auth_required(&self) -> bool {
        self.get(b"default")
            .is_none_or(|default| !default.nopass || !default.enabled)
    }

    /// The user `name` opens with `password`, as Redis's `ACLCheckUserCredentials`.
    pub fn authenticate(&self, name: &[u8], password: &[u8]) -> Option<Arc<User>> {
        self.get(name).filter(|user| user.check_password(password))
    }
}

/// Whether `user` may run `args` (resolved to `spec`), as Redis 7.0's `ACLSelectorCheckCmd`:
/// the command bit (AUTH, HELLO, QUIT and RESET, flagged no_auth, are always allowed), then every
/// key against the key patterns, then publish / subscribe channels against the channel patterns.
pub fn check(user: &User, spec: &'static CommandSpec, args: &[Bytes]) -> Result<(), Denied> {
    let allowed = index::index().id(spec).is_some_and(|id| user.commands[id]);
    if !user.allcommands && !allowed && !spec.flags.contains(&"no_auth") {
        return Err(Denied::Command(spec.name));
    }
    let shard_channels = spec.key_specs.iter().any(|k| k.flags.contains(&"not_key"));
    if !user.allkeys && !shard_channels {
        for i in spec.key_indexes(args) {
            let Some(key) = args.get(i) else { continue };
            if !user.keys.iter().any(|p| glob::matches(p, key)) {
                return Err(Denied::Key);
            }
        }
    }
    if !user.allchannels {
        for (channel, is_pattern) in channels(spec, args) {
            let ok = user.channels.iter().any(|p| {
                if is_pattern {
                    p == channel
                } else {
                    glob::matches(p, channel)
                }
            });
            if !ok {
                return Err(Denied::Channel);
            }
        }
    }
    Ok(())
}

/// The channels a publish / subscribe command names, and whether they are patterns (Redis's
/// `getChannelsFromCommand` for CMD_CHANNEL_PUBLISH and CMD_CHANNEL_SUBSCRIBE).
fn channels<'a>(spec: &CommandSpec, args: &'a [Bytes]) -> Vec<(&'a Bytes, bool)> {
    match spec.name {
        "publish" | "spublish" => args.get(1).map(|c| (c, false)).into_iter().collect(),
        "subscribe" | "ssubscribe" => args[1..].iter().map(|c| (c, false)).collect(),
        "psubscribe" => args[1..].iter().map(|c| (c, true)).collect(),
        _ => Vec::new(),
    }
}

/// What the security gate decided for one command of a session that is not open.
pub enum Gate {
    /// Go on with the normal path.
    Pass,
    /// Answer this error instead (it flags a transaction being queued, as Redis's rejectCommand).
    Reject(String),
}

/// The gate for a session whose user may not run everything, or that has not authenticated.
/// Unknown commands and wrong arity pass (the router answers them, as Redis checks them first).
pub fn gate(user: Option<&User>, args: &[Bytes]) -> Gate {
    let Ok(spec) = command::resolve(args) else {
        return Gate::Pass;
    };
    let Some(user) = user else {
        if spec.flags.contains(&"no_auth") {
            return Gate::Pass;
        }
        return Gate::Reject(NOAUTH.to_string());
    };
    match check(user, spec, args) {
        Ok(()) => Gate::Pass,
        Err(denied) => Gate::Reject(denied.message()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(words: &[&str]) -> Vec<Bytes> {
        words
            .iter()
            .map(|w| Bytes::copy_from_slice(w.as_bytes()))
            .collect()
    }

    fn user(rules: &[&str]) -> User {
        let mut u = User::new(Bytes::from_static(b"u"));
        for rule in rules {
            u.apply(rule.as_bytes()).expect(rule);
        }
        u
    }

    fn run(u: &User, words: &[&str]) -> Result<(), Denied> {
        let a = args(words);
        let spec = command::resolve(&a).expect("known command");
        check(u, spec, &a)
    }

    #[test]
    fn commands_keys_and_channels() {
        let u = user(&["on", "nopass", "~app:*", "+@string", "-set", "+client|id"]);
        assert_eq!(run(&u, &["get", "app:1"]), Ok(()));
        assert_eq!(run(&u, &["get", "other"]), Err(Denied::Key));
        assert_eq!(run(&u, &["set", "app:1", "v"]), Err(Denied::Command("set")));
        assert_eq!(run(&u, &["mget", "app:1", "nope"]), Err(Denied::Key));
        assert_eq!(run(&u, &["client", "id"]), Ok(()));
        assert_eq!(run(&u, &["auth", "u", "p"]), Ok(()));
        assert_eq!(
            run(&u, &["client", "list"]),
            Err(Denied::Command("client|list"))
        );
        let p = user(&["+@all", "allkeys", "&news.*"]);
        assert_eq!(run(&p, &["publish", "news.1", "x"]), Ok(()));
        assert_eq!(run(&p, &["publish", "other", "x"]), Err(Denied::Channel));
        assert_eq!(run(&p, &["psubscribe", "news.*"]), Ok(()));
        assert_eq!(run(&p, &["psubscribe", "news.1*"]), Err(Denied::Channel));
        assert_eq!(
            Denied::Command("set").message(),
            "NOPERM this user has no permissions to run the 'set' command"
        );
    }

    #[test]
    fn requirepass_and_gate() {
        let acl = Acl::new(Some("pw"));
        assert!(acl.auth_required());
        assert!(acl.authenticate(b"default", b"pw").is_some());
        assert!(acl.authenticate(b"default", b"no").is_none());
        assert!(matches!(gate(None, &args(&["get", "k"])), Gate::Reject(t) if t == NOAUTH));
        assert!(matches!(gate(None, &args(&["auth", "pw"])), Gate::Pass));
        assert!(matches!(gate(None, &args(&["nosuch"])), Gate::Pass));
        assert!(!Acl::new(None).auth_required());
    }

    #[test]
    fn setuser_is_all_or_nothing() {
        let acl = Acl::new(None);
        let name = Bytes::from_static(b"bob");
        let err = acl
            .set_user(&name, &args(&["on", "+nosuch"]))
            .expect_err("unknown command");
        assert_eq!(err.1, RuleError::UnknownCommand);
        assert!(acl.get(b"bob").is_none());
        acl.set_user(&name, &args(&["on", ">x", "+get"]))
            .expect("valid");
        assert!(acl.authenticate(b"bob", b"x").is_some());
        assert_eq!(acl.delete_users(&args(&["bob", "nobody"])), 1);
    }
}
