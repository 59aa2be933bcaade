//! Where a command's keys are: Redis 7's key specs (a begin search, then a find-keys rule) and
//! the one command whose keys no spec describes (SORT's STORE), evaluated as Redis's
//! `getKeysUsingKeySpecs` does.

use bytes::Bytes;

/// One Redis 7 key spec: where the search for keys begins, and how keys are found from there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeySpec {
    pub begin: Begin,
    pub find: Find,
    /// Redis's key-spec flags (`RO`, `RW`, `OW`, `RM`, `access`, `update`, `insert`, `delete`,
    /// `not_key`, `incomplete`, `variable_flags`).
    pub flags: &'static [&'static str],
}

/// Redis's `begin_search` of a key spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Begin {
    /// Keys start at this argument index.
    Index(i32),
    /// Keys start after `keyword`, searched from `start_from` (negative: from the end, backwards).
    Keyword {
        keyword: &'static str,
        start_from: i32,
    },
    /// Only the command itself knows (SORT's STORE); handled in `key_indexes` by name.
    Unknown,
}

/// Redis's `find_keys` of a key spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Find {
    /// Keys from the begin index up to `last_key` (relative to it; negative: from the end of the
    /// arguments), every `key_step`; with `limit` > 0 and `last_key` -1, only 1/limit of the rest
    /// (XREAD's STREAMS k1 k2 id1 id2).
    Range {
        last_key: i32,
        key_step: i32,
        limit: i32,
    },
    /// The argument at `key_num_index` (relative) holds the number of keys, which start at
    /// `first_key` (relative), every `key_step` (EVAL, ZUNIONSTORE, LMPOP, ...).
    KeyNum {
        key_num_index: i32,
        first_key: i32,
        key_step: i32,
    },
    Unknown,
}

impl KeySpec {
    /// Key indexes this spec finds in `args`, appended to `out`, as Redis's
    /// `getKeysUsingKeySpecs`. `Err(())` when the arguments do not fit the spec (a syntax error the
    /// command itself reports), in which case Redis reports no keys at all.
    pub(super) fn find_keys(&self, args: &[Bytes], out: &mut Vec<usize>) -> Result<(), ()> {
        let argc = args.len() as i64;
        let first = match self.begin {
            Begin::Index(pos) => i64::from(pos),
            Begin::Keyword {
                keyword,
                start_from,
            } => {
                let found = if start_from > 0 {
                    (i64::from(start_from)..argc - 1)
                        .find(|&i| args[i as usize].eq_ignore_ascii_case(keyword.as_bytes()))
                } else {
                    let start = argc + i64::from(start_from);
                    (1..=start.min(argc - 1))
                        .rev()
                        .find(|&i| args[i as usize].eq_ignore_ascii_case(keyword.as_bytes()))
                };
                match found {
                    Some(i) => i + 1,
                    None => return Ok(()),
                }
            }
            Begin::Unknown => return Ok(()),
        };
        let (first, last, step) = match self.find {
            Find::Range {
                last_key,
                key_step,
                limit,
            } => {
                let last = if last_key >= 0 {
                    first + i64::from(last_key)
                } else if limit == 0 {
                    argc + i64::from(last_key)
                } else {
                    first + ((argc - first) / i64::from(limit) + i64::from(last_key))
                };
                (first, last, i64::from(key_step))
            }
            Find::KeyNum {
                key_num_index,
                first_key,
                key_step,
            } => {
                if i64::from(key_num_index) >= argc - first {
                    return Err(());
                }
                let count = args
                    .get((first + i64::from(key_num_index)) as usize)
                    .and_then(|n| crate::resp::request::string_to_i64(n))
                    .filter(|&n| n >= 0)
                    .ok_or(())?;
                let first = first + i64::from(first_key);
                (first, first.saturating_add(count) - 1, i64::from(key_step))
            }
            Find::Unknown => return Ok(()),
        };
        if last >= argc || last < first || first >= argc || step <= 0 {
            return Err(());
        }
        let mut i = first;
        while i <= last {
            out.push(i as usize);
            i += step;
        }
        Ok(())
    }
}

/// SORT's STORE destination, found as Redis's `sortGetKeys` does: skipping LIMIT's two arguments
/// and BY's and GET's one, the last `STORE key` wins.
pub(super) fn sort_store_key(args: &[Bytes]) -> Option<usize> {
    let mut store = None;
    let mut i = 2;
    while i < args.len() {
        let arg = &args[i];
        if arg.eq_ignore_ascii_case(b"limit") {
            i += 2;
        } else if arg.eq_ignore_ascii_case(b"get") || arg.eq_ignore_ascii_case(b"by") {
            i += 1;
        } else if arg.eq_ignore_ascii_case(b"store") && i + 1 < args.len() {
            store = Some(i + 1);
        }
        i += 1;
    }
    store
}
