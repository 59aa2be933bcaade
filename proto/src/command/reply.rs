//! COMMAND and its subcommands (COUNT, INFO, DOCS, LIST, GETKEYS) answered from the table, shaped
//! as redis-server 7.0 sends them: one implementation, so shard nodes and the proxy answer
//! `COMMAND ...` alike, each over the commands it serves (redis-cli reads them for hints).

use bytes::Bytes;

use super::errors::{arity_error, unknown_subcommand_error};
use super::{lookup_served, served, Begin, CommandSpec, Find, KeySpec, Server};
use crate::resp::Frame;

/// `COMMAND [subcommand ...]` on `server`: only the commands it serves are shown, and LIST names
/// their subcommands too, as Redis does.
pub fn command(server: Server, args: &[Bytes]) -> Frame {
    let Some(sub) = args.get(1) else {
        return Frame::Array(served(server).map(info).collect());
    };
    let lower = String::from_utf8_lossy(sub).to_ascii_lowercase();
    let arity = || Frame::error(arity_error(&format!("command|{lower}")));
    match lower.as_str() {
        "count" if args.len() == 2 => Frame::Integer(served(server).count() as i64),
        "info" if args.len() == 2 => Frame::Array(served(server).map(info).collect()),
        "info" => Frame::Array(
            args[2..]
                .iter()
                .map(|name| lookup_served(server, name).map_or(Frame::Null, info))
                .collect(),
        ),
        "docs" => {
            let specs: Vec<&CommandSpec> = if args.len() == 2 {
                served(server).collect()
            } else {
                args[2..]
                    .iter()
                    .filter_map(|name| lookup_served(server, name))
                    .collect()
            };
            Frame::Map(specs.into_iter().map(|s| (bulk(s.name), docs(s))).collect())
        }
        "list" if args.len() == 2 => Frame::Array(
            served(server)
                .flat_map(|s| std::iter::once(s).chain(s.subcommands.iter()))
                .map(|s| bulk(s.name))
                .collect(),
        ),
        "getkeys" if args.len() >= 3 => getkeys(server, &args[2..]),
        "count" | "list" | "getkeys" => arity(),
        _ => Frame::error(unknown_subcommand_error(args)),
    }
}

/// `COMMAND GETKEYS command args...`: the keys `command_args` names, by the table's key specs.
fn getkeys(server: Server, command_args: &[Bytes]) -> Frame {
    let Some(spec) = lookup_served(server, &command_args[0]) else {
        return Frame::error("ERR Invalid command specified");
    };
    if !spec.arity_ok(command_args.len()) {
        return Frame::error("ERR Invalid number of arguments specified for command");
    }
    let keys = spec.key_indexes(command_args);
    if keys.is_empty() {
        return Frame::error("ERR The command has no key arguments");
    }
    Frame::Array(
        keys.into_iter()
            .filter_map(|i| command_args.get(i).cloned())
            .map(Frame::Bulk)
            .collect(),
    )
}

/// One COMMAND INFO entry: `[name, arity, flags, first, last, step, acl categories, tips,
/// key specs, subcommands]`, with Redis's RESP3 types (sets for flags, categories, tips and key
/// specs). Subcommands come sorted by name (Redis lists them in hash order).
pub fn info(spec: &CommandSpec) -> Frame {
    Frame::Array(vec![
        bulk(spec.name),
        Frame::Integer(i64::from(spec.arity)),
        Frame::Set(spec.flags.iter().map(|f| simple(f)).collect()),
        Frame::Integer(i64::from(spec.first_key)),
        Frame::Integer(i64::from(spec.last_key)),
        Frame::Integer(i64::from(spec.step)),
        Frame::Set(
            spec.acl_categories
                .iter()
                .map(|c| Frame::Simple(Bytes::from(format!("@{c}"))))
                .collect(),
        ),
        Frame::Set(spec.tips.iter().map(|t| bulk(t)).collect()),
        Frame::Set(spec.key_specs.iter().map(key_spec).collect()),
        // Redis sends an empty set when there are no subcommands, an array otherwise.
        if spec.subcommands.is_empty() {
            Frame::Set(Vec::new())
        } else {
            Frame::Array(spec.subcommands.iter().map(info).collect())
        },
    ])
}

fn key_spec(spec: &KeySpec) -> Frame {
    let begin = match spec.begin {
        Begin::Index(index) => typed("index", vec![(bulk("index"), int(index))]),
        Begin::Keyword {
            keyword,
            start_from,
        } => typed(
            "keyword",
            vec![
                (bulk("keyword"), bulk(keyword)),
                (bulk("startfrom"), int(start_from)),
            ],
        ),
        Begin::Unknown => typed("unknown", Vec::new()),
    };
    let find = match spec.find {
        Find::Range {
            last_key,
            key_step,
            limit,
        } => typed(
            "range",
            vec![
                (bulk("lastkey"), int(last_key)),
                (bulk("keystep"), int(key_step)),
                (bulk("limit"), int(limit)),
            ],
        ),
        Find::KeyNum {
            key_num_index,
            first_key,
            key_step,
        } => typed(
            "keynum",
            vec![
                (bulk("keynumidx"), int(key_num_index)),
                (bulk("firstkey"), int(first_key)),
                (bulk("keystep"), int(key_step)),
            ],
        ),
        Find::Unknown => typed("unknown", Vec::new()),
    };
    Frame::Map(vec![
        (
            bulk("flags"),
            Frame::Set(spec.flags.iter().map(|f| simple(f)).collect()),
        ),
        (bulk("begin_search"), begin),
        (bulk("find_keys"), find),
    ])
}

fn typed(kind: &'static str, spec: Vec<(Frame, Frame)>) -> Frame {
    Frame::Map(vec![
        (bulk("type"), bulk(kind)),
        (bulk("spec"), Frame::Map(spec)),
    ])
}

/// One COMMAND DOCS value (the caller pairs it with the name): summary, since, group, complexity
/// and, for containers, the subcommands' docs. Arguments and history are not in the table.
pub fn docs(spec: &CommandSpec) -> Frame {
    let mut fields = vec![
        (bulk("summary"), bulk(spec.summary)),
        (bulk("since"), bulk(spec.since)),
        (bulk("group"), bulk(spec.group)),
        (bulk("complexity"), bulk(spec.complexity)),
    ];
    if !spec.subcommands.is_empty() {
        let subs = spec
            .subcommands
            .iter()
            .map(|sub| (bulk(sub.name), docs(sub)))
            .collect();
        fields.push((bulk("subcommands"), Frame::Map(subs)));
    }
    Frame::Map(fields)
}

fn bulk(text: &'static str) -> Frame {
    Frame::Bulk(Bytes::from_static(text.as_bytes()))
}

fn simple(text: &'static str) -> Frame {
    Frame::Simple(Bytes::from_static(text.as_bytes()))
}

fn int(n: i32) -> Frame {
    Frame::Integer(i64::from(n))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::lookup;
    use crate::resp::Protocol;

    #[test]
    fn info_is_byte_for_byte_redis() {
        // `HELLO 3` + `COMMAND INFO get` on redis-server 7.0.15, without the outer `*1`.
        let want = "*10\r\n$3\r\nget\r\n:2\r\n~2\r\n+readonly\r\n+fast\r\n:1\r\n:1\r\n:1\r\n~3\r\n\
            +@read\r\n+@string\r\n+@fast\r\n~0\r\n~1\r\n%3\r\n$5\r\nflags\r\n~2\r\n+RO\r\n+access\r\n\
            $12\r\nbegin_search\r\n%2\r\n$4\r\ntype\r\n$5\r\nindex\r\n$4\r\nspec\r\n%1\r\n$5\r\nindex\r\n\
            :1\r\n$9\r\nfind_keys\r\n%2\r\n$4\r\ntype\r\n$5\r\nrange\r\n$4\r\nspec\r\n%3\r\n\
            $7\r\nlastkey\r\n:0\r\n$7\r\nkeystep\r\n:1\r\n$5\r\nlimit\r\n:0\r\n~0\r\n";
        let got = info(lookup(b"get").unwrap()).to_bytes(Protocol::Resp3);
        assert_eq!(String::from_utf8_lossy(&got), want);
        let xread = info(lookup(b"xread").unwrap()).to_bytes(Protocol::Resp3);
        let xread = String::from_utf8_lossy(&xread);
        assert!(xread.contains(
            "$4\r\ntype\r\n$7\r\nkeyword\r\n$4\r\nspec\r\n%2\r\n$7\r\nkeyword\r\n$7\r\nSTREAMS\r\n\
             $9\r\nstartfrom\r\n:1\r\n"
        ));
    }

    #[test]
    fn docs_are_redis_docs_without_arguments() {
        let got = docs(lookup(b"get").unwrap()).to_bytes(Protocol::Resp3);
        assert_eq!(
            String::from_utf8_lossy(&got),
            "%4\r\n$7\r\nsummary\r\n$22\r\nGet the value of a key\r\n$5\r\nsince\r\n$5\r\n1.0.0\r\n\
             $5\r\ngroup\r\n$6\r\nstring\r\n$10\r\ncomplexity\r\n$4\r\nO(1)\r\n"
        );
        let client = docs(lookup(b"client").unwrap()).to_bytes(Protocol::Resp2);
        assert!(String::from_utf8_lossy(&client).contains("$14\r\nclient|getname\r\n*8\r\n"));
    }
}
