//! Command ids for ACL bitmaps: every command of the shared table and every subcommand gets a
//! position, in table order (a container before its subcommands), as Redis gives each command an
//! id for its per-user bitmap. Built once.

use std::collections::HashMap;
use std::sync::OnceLock;

use tessera_proto::command::{self, CommandSpec};

/// Redis's ACL categories, in `ACLCommandCategories` order (what ACL CAT lists, and the order the
/// rule description tries them in).
pub const CATEGORIES: &[&str] = &[
    "keyspace",
    "read",
    "write",
    "set",
    "sortedset",
    "list",
    "hash",
    "string",
    "bitmap",
    "hyperloglog",
    "geo",
    "stream",
    "pubsub",
    "admin",
    "fast",
    "slow",
    "blocking",
    "dangerous",
    "connection",
    "transaction",
    "scripting",
];

pub struct Index {
    /// Every command and subcommand; a command's id is its position here.
    pub commands: Vec<&'static CommandSpec>,
    /// Full name (`get`, `client|list`) -> id.
    by_name: HashMap<&'static str, usize>,
    /// For each id: the ids of its subcommands (empty for most).
    pub children: Vec<Vec<usize>>,
}

impl Index {
    pub fn id(&self, spec: &CommandSpec) -> Option<usize> {
        self.by_name.get(spec.name).copied()
    }

    /// How many commands and subcommands there are (the size of a user's bitmap).
    pub fn count(&self) -> usize {
        self.commands.len()
    }

    /// Ids of the commands (and subcommands) in `category`.
    pub fn in_category<'a>(&'a self, category: &'a str) -> impl Iterator<Item = usize> + 'a {
        self.commands
            .iter()
            .enumerate()
            .filter(move |(_, spec)| spec.acl_categories.contains(&category))
            .map(|(id, _)| id)
    }
}

pub fn index() -> &'static Index {
    static INDEX: OnceLock<Index> = OnceLock::new();
    INDEX.get_or_init(|| {
        let mut commands = Vec::new();
        let mut children = Vec::new();
        for spec in command::all() {
            let parent = commands.len();
            commands.push(spec);
            children.push(Vec::new());
            for sub in spec.subcommands {
                children[parent].push(commands.len());
                commands.push(sub);
                children.push(Vec::new());
            }
        }
        let by_name = commands
            .iter()
            .enumerate()
            .map(|(id, spec)| (spec.name, id))
            .collect();
        Index {
            commands,
            by_name,
            children,
        }
    })
}
