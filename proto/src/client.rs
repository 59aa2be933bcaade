//! What the CLIENT and HELLO commands show and accept, the same on nodes and the proxy: the CLIENT
//! LIST / INFO line in Redis's field order, client names (SETNAME, HELLO SETNAME, SETINFO), the
//! LIST filters and HELLO's options and reply, each with Redis's error texts.

use std::fmt::Write as _;

use bytes::Bytes;

use crate::resp::request::string_to_i64;
use crate::resp::{Frame, Protocol};

/// `CLIENT SETNAME` / `HELLO SETNAME` refusal.
pub const BAD_NAME: &str =
    "ERR Client names cannot contain spaces, newlines or special characters.";

/// A name Redis accepts: printable ASCII without spaces (`validateClientAttr`).
pub fn valid_name(name: &[u8]) -> bool {
    name.iter().all(|&b| (b'!'..=b'~').contains(&b))
}

/// `HELLO [protover [AUTH user pass] [SETNAME name]]`, parsed as Redis 7.0 parses it before
/// acting on any of it (a bad name is refused here, before AUTH is tried).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Hello<'a> {
    /// The protocol asked for; `None` keeps the connection's.
    pub protocol: Option<Protocol>,
    /// `AUTH user password`.
    pub credentials: Option<(&'a Bytes, &'a Bytes)>,
    pub name: Option<&'a Bytes>,
}

/// HELLO's refusal when the client is not authenticated and gave no AUTH.
pub const HELLO_NOAUTH: &str = "NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time";

impl<'a> Hello<'a> {
    /// `args` is the whole command, `HELLO` first. Errors are Redis's texts.
    pub fn parse(args: &'a [Bytes]) -> Result<Hello<'a>, String> {
        let mut hello = Hello::default();
        if let Some(version) = args.get(1) {
            hello.protocol = Some(match string_to_i64(version) {
                None => return Err("ERR Protocol version is not an integer or out of range".into()),
                Some(2) => Protocol::Resp2,
                Some(3) => Protocol::Resp3,
                Some(_) => return Err("NOPROTO unsupported protocol version".into()),
            });
        }
        let mut i = 2;
        while i < args.len() {
            let more = args.len() - i - 1;
            if args[i].eq_ignore_ascii_case(b"auth") && more >= 2 {
                hello.credentials = Some((&args[i + 1], &args[i + 2]));
                i += 3;
            } else if args[i].eq_ignore_ascii_case(b"setname") && more >= 1 {
                if !valid_name(&args[i + 1]) {
                    return Err(BAD_NAME.into());
                }
                hello.name = Some(&args[i + 1]);
                i += 2;
            } else {
                return Err(format!(
                    "ERR Syntax error in HELLO option '{}'",
                    String::from_utf8_lossy(&args[i])
                ));
            }
        }
        Ok(hello)
    }
}

/// HELLO's reply: the server's description for the connection `id`, now speaking `protocol`;
/// `role` is `master` or `replica`.
pub fn hello_reply(protocol: Protocol, id: u64, role: &'static str) -> Frame {
    let text = |s: &'static str| Frame::Bulk(Bytes::from_static(s.as_bytes()));
    let proto = if protocol == Protocol::Resp3 { 3 } else { 2 };
    Frame::Map(vec![
        (text("server"), text("redis")),
        (text("version"), text(crate::REDIS_VERSION)),
        (text("proto"), Frame::Integer(proto)),
        (text("id"), Frame::Integer(id as i64)),
        (text("mode"), text("cluster")),
        (text("role"), text(role)),
        (text("modules"), Frame::Array(Vec::new())),
    ])
}

/// Which library attribute `CLIENT SETINFO` sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LibAttribute {
    Name,
    Version,
}

/// Parses `CLIENT SETINFO attr value`: the attribute, or Redis's error text.
pub fn setinfo(attr: &[u8], value: &[u8]) -> Result<LibAttribute, String> {
    let attribute = if attr.eq_ignore_ascii_case(b"lib-name") {
        LibAttribute::Name
    } else if attr.eq_ignore_ascii_case(b"lib-ver") {
        LibAttribute::Version
    } else {
        return Err(format!(
            "ERR Unrecognized option '{}'",
            String::from_utf8_lossy(attr)
        ));
    };
    if !valid_name(value) {
        return Err(format!(
            "ERR {} cannot contain spaces, newlines or special characters.",
            String::from_utf8_lossy(attr)
        ));
    }
    Ok(attribute)
}

/// Redis's client types (`getClientTypeByName`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientType {
    Normal,
    Replica,
    PubSub,
    Master,
}

impl ClientType {
    /// `normal`, `slave` / `replica`, `pubsub`, `master`, any case; else Redis's error text.
    pub fn parse(name: &[u8]) -> Result<ClientType, String> {
        Ok(match name.to_ascii_lowercase().as_slice() {
            b"normal" => ClientType::Normal,
            b"slave" | b"replica" => ClientType::Replica,
            b"pubsub" => ClientType::PubSub,
            b"master" => ClientType::Master,
            _ => {
                return Err(format!(
                    "ERR Unknown client type '{}'",
                    String::from_utf8_lossy(name)
                ))
            }
        })
    }
}

/// Which clients CLIENT LIST shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListFilter {
    All,
    Type(ClientType),
    /// In the order given; ids that are no client (or negative) list nothing.
    Ids(Vec<i64>),
}

impl ListFilter {
    /// Parses the options after `CLIENT LIST` as Redis's `clientCommand`: nothing, `TYPE t`, or
    /// `ID id [id ...]`.
    pub fn parse(options: &[Bytes]) -> Result<ListFilter, String> {
        match options {
            [] => Ok(ListFilter::All),
            [option, kind] if option.eq_ignore_ascii_case(b"type") => {
                ClientType::parse(kind).map(ListFilter::Type)
            }
            [option, ids @ ..] if !ids.is_empty() && option.eq_ignore_ascii_case(b"id") => ids
                .iter()
                .map(|id| string_to_i64(id).ok_or_else(|| "ERR Invalid client ID".to_string()))
                .collect::<Result<_, _>>()
                .map(ListFilter::Ids),
            _ => Err("ERR syntax error".to_string()),
        }
    }
}

/// One client as CLIENT LIST / INFO print it. Buffer and memory fields a server does not track
/// are 0.
#[derive(Debug, Clone, Default)]
pub struct ClientLine<'a> {
    pub id: u64,
    pub addr: String,
    pub laddr: String,
    pub name: &'a [u8],
    pub age_secs: u64,
    pub idle_secs: u64,
    /// Subscribed to anything (flag P).
    pub pubsub: bool,
    /// Commands queued since MULTI (flag x), `None` outside a transaction (Redis prints -1).
    pub multi: Option<usize>,
    /// Waiting in a blocking command (flag b).
    pub blocked: bool,
    pub sub: usize,
    pub psub: usize,
    pub ssub: usize,
    pub qbuf: usize,
    pub qbuf_free: usize,
    /// The last command, as Redis names it (`client|list`, `NULL` before any).
    pub cmd: &'a str,
    pub user: &'a [u8],
    pub resp: u8,
}

impl ClientLine<'_> {
    /// `flags`, in the order Redis's `getClientInfoString` writes them: P, x, b, or N for none.
    pub fn flags(&self) -> String {
        let mut flags = String::new();
        if self.pubsub {
            flags.push('P');
        }
        if self.multi.is_some() {
            flags.push('x');
        }
        if self.blocked {
            flags.push('b');
        }
        if flags.is_empty() {
            flags.push('N');
        }
        flags
    }

    /// The line, fields in Redis 7.0's order (7.2's lib-name and lib-ver are not shown, as
    /// redis-server 7.0 is the oracle), ending in a newline.
    pub fn render(&self) -> String {
        let mut line = String::with_capacity(320);
        let buffer = self.qbuf + self.qbuf_free;
        let _ = writeln!(
            line,
            "id={} addr={} laddr={} fd=0 name={} age={} idle={} flags={} db=0 sub={} psub={} \
             ssub={} multi={} qbuf={} qbuf-free={} argv-mem=0 multi-mem=0 rbs={buffer} rbp={} \
             obl=0 oll=0 omem=0 tot-mem={buffer} events=r cmd={} user={} redir=-1 resp={}",
            self.id,
            self.addr,
            self.laddr,
            String::from_utf8_lossy(self.name),
            self.age_secs,
            self.idle_secs,
            self.flags(),
            self.sub,
            self.psub,
            self.ssub,
            self.multi.map_or(-1, |queued| queued as i64),
            self.qbuf,
            self.qbuf_free,
            self.qbuf,
            self.cmd,
            String::from_utf8_lossy(self.user),
            self.resp,
        );
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_has_redis_s_fields_in_order() {
        let line = ClientLine {
            id: 7,
            addr: "127.0.0.1:5000".into(),
            laddr: "127.0.0.1:6379".into(),
            name: b"app",
            multi: Some(2),
            blocked: true,
            cmd: "client|list",
            user: b"default",
            resp: 2,
            ..ClientLine::default()
        }
        .render();
        assert_eq!(
            line,
            "id=7 addr=127.0.0.1:5000 laddr=127.0.0.1:6379 fd=0 name=app age=0 idle=0 flags=xb \
             db=0 sub=0 psub=0 ssub=0 multi=2 qbuf=0 qbuf-free=0 argv-mem=0 multi-mem=0 rbs=0 \
             rbp=0 obl=0 oll=0 omem=0 tot-mem=0 events=r cmd=client|list user=default redir=-1 \
             resp=2\n"
        );
        assert_eq!(ClientLine::default().flags(), "N");
    }

    #[test]
    fn list_filters_parse_as_redis() {
        let args = |parts: &[&str]| -> Vec<Bytes> {
            parts
                .iter()
                .map(|p| Bytes::copy_from_slice(p.as_bytes()))
                .collect()
        };
        assert_eq!(ListFilter::parse(&[]), Ok(ListFilter::All));
        assert_eq!(
            ListFilter::parse(&args(&["TYPE", "Slave"])),
            Ok(ListFilter::Type(ClientType::Replica))
        );
        assert_eq!(
            ListFilter::parse(&args(&["id", "3", "-1"])),
            Ok(ListFilter::Ids(vec![3, -1]))
        );
        assert_eq!(
            ListFilter::parse(&args(&["id", "x"])),
            Err("ERR Invalid client ID".to_string())
        );
        assert_eq!(
            ListFilter::parse(&args(&["type", "boss"])),
            Err("ERR Unknown client type 'boss'".to_string())
        );
        for bad in [
            &["id"][..],
            &["type"],
            &["type", "normal", "x"],
            &["foo", "bar"],
        ] {
            assert_eq!(
                ListFilter::parse(&args(bad)),
                Err("ERR syntax error".to_string())
            );
        }
    }

    #[test]
    fn hello_options_parse_before_anything_happens() {
        let args = |parts: &[&str]| -> Vec<Bytes> {
            parts
                .iter()
                .map(|p| Bytes::copy_from_slice(p.as_bytes()))
                .collect()
        };
        let full = args(&["HELLO", "3", "auth", "u", "p", "SETNAME", "n"]);
        let hello = Hello::parse(&full).expect("valid");
        assert_eq!(hello.protocol, Some(Protocol::Resp3));
        assert_eq!(hello.credentials.map(|(u, _)| &u[..]), Some(&b"u"[..]));
        assert_eq!(hello.name.map(|n| &n[..]), Some(&b"n"[..]));
        assert_eq!(Hello::parse(&args(&["HELLO"])), Ok(Hello::default()));
        for (bad, error) in [
            (
                &["HELLO", "x"][..],
                "ERR Protocol version is not an integer or out of range",
            ),
            (&["HELLO", "4"], "NOPROTO unsupported protocol version"),
            (&["HELLO", "3", "setname", "a b"], BAD_NAME),
            (
                &["HELLO", "3", "auth", "u"],
                "ERR Syntax error in HELLO option 'auth'",
            ),
        ] {
            assert_eq!(Hello::parse(&args(bad)), Err(error.to_string()), "{bad:?}");
        }
    }

    #[test]
    fn setinfo_checks_attribute_then_value() {
        assert_eq!(setinfo(b"LIB-NAME", b"redis-py"), Ok(LibAttribute::Name));
        assert_eq!(setinfo(b"lib-ver", b"1.0"), Ok(LibAttribute::Version));
        assert_eq!(
            setinfo(b"lib-x", b"1"),
            Err("ERR Unrecognized option 'lib-x'".to_string())
        );
        assert_eq!(
            setinfo(b"lib-name", b"a b"),
            Err("ERR lib-name cannot contain spaces, newlines or special characters.".to_string())
        );
        assert!(valid_name(b"ok") && !valid_name(b"no\n"));
    }
}
