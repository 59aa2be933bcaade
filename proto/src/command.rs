//! The command table: every command Tessera knows, with Redis's arity, flags and key positions.
//! Shard nodes use it to check arity and answer COMMAND; the proxy uses it to find a command's keys
//! and decide how to route it.

use bytes::Bytes;

/// How the proxy handles a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Routing {
    /// Sent to the owner of its key's slot (all keys must share one slot, else CROSSSLOT).
    Keyed,
    /// Keys may span slots: split per slot and merge (MGET, MSET, DEL, UNLINK, EXISTS, TOUCH).
    Split,
    /// Sent to every master and the replies combined (DBSIZE, KEYS, FLUSHALL, ...).
    FanOut,
    /// Answered by the proxy itself (PING, ECHO, HELLO, CLUSTER, CLIENT, COMMAND, INFO, ...).
    Local,
}

/// One command's entry, as Redis describes it in COMMAND INFO.
#[derive(Debug, Clone, Copy)]
pub struct CommandSpec {
    /// Lowercase name.
    pub name: &'static str,
    /// Redis's arity: N means exactly N arguments (name included), -N means at least N.
    pub arity: i32,
    /// Redis's flags as COMMAND INFO shows them (`write`, `readonly`, `denyoom`, `fast`, ...).
    pub flags: &'static [&'static str],
    /// Position of the first key (0: no keys), the last key (-1: the last argument) and the step.
    pub first_key: i32,
    pub last_key: i32,
    pub step: i32,
    /// Redis's ACL categories without the `@` (`string`, `read`, `fast`, ...).
    pub acl_categories: &'static [&'static str],
    /// COMMAND DOCS summary, group and version.
    pub summary: &'static str,
    pub group: &'static str,
    pub since: &'static str,
    pub routing: Routing,
}

impl CommandSpec {
    /// Whether `argc` arguments (name included) satisfy the arity.
    pub fn arity_ok(&self, argc: usize) -> bool {
        let _ = argc;
        todo!("implemented in the proto work")
    }

    /// Indexes into `args` of this command's keys (empty when it has none).
    pub fn key_indexes(&self, args: &[Bytes]) -> Vec<usize> {
        let _ = args;
        todo!("implemented in the proto work")
    }

    pub fn is_write(&self) -> bool {
        self.flags.contains(&"write")
    }
}

/// The entry for `name`, matched case-insensitively.
pub fn lookup(name: &[u8]) -> Option<&'static CommandSpec> {
    let _ = name;
    todo!("implemented in the proto work")
}

/// Every entry, for COMMAND and COMMAND COUNT.
pub fn all() -> &'static [CommandSpec] {
    todo!("implemented in the proto work")
}

/// `ERR unknown command 'name', with args beginning with: 'a' 'b' ` as Redis words it.
pub fn unknown_command_error(args: &[Bytes]) -> String {
    let _ = args;
    todo!("implemented in the proto work")
}

/// `ERR wrong number of arguments for 'get' command` as Redis words it.
pub fn arity_error(name: &str) -> String {
    format!("ERR wrong number of arguments for '{name}' command")
}
