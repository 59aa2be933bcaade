//! Reading the append-only file back at start: record by record, streaming (the file may be far
//! larger than one read), cutting off a torn last record the way Redis's `aof-load-truncated yes`
//! does, and refusing a file that is damaged before its end.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;

use bytes::Bytes;

use crate::error::AofError;

/// Longest argument accepted (Redis's proto-max-bulk-len): a longer length is damage, and
/// checking it first bounds what a damaged header can make us allocate.
const MAX_ARG_LEN: u64 = 512 * 1024 * 1024;
/// Longest header line (`*<n>` / `$<n>`); anything longer is damage.
const MAX_LINE: usize = 64;

/// What loading found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoadSummary {
    /// Records handed to the callback.
    pub records: u64,
    /// Length of the file after loading: where appending resumes, and the log's end offset.
    pub end_offset: u64,
    /// Bytes of a torn last record cut off the end of the file.
    pub truncated_bytes: u64,
}

/// Reads every record of the file at `path` in order and hands its arguments to `apply`. A missing
/// file is an empty log. A last record cut short (a crash mid-write) is dropped and the file
/// truncated to the end of the last whole record, with a warning; a malformed record anywhere is
/// `AofError::Corrupt`, and an `apply` error is `AofError::Replay`: both stop start-up.
pub fn load<F, E>(path: &Path, mut apply: F) -> Result<LoadSummary, AofError>
where
    F: FnMut(Vec<Bytes>) -> Result<(), E>,
    E: std::fmt::Display,
{
    let io_error = |action: &'static str| {
        move |source: io::Error| AofError::Io {
            action,
            path: path.to_path_buf(),
            source,
        }
    };
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(LoadSummary::default()),
        Err(e) => return Err(io_error("open")(e)),
    };
    let file_len = file.metadata().map_err(io_error("stat"))?.len();
    let mut reader = Reader {
        inner: BufReader::with_capacity(1 << 20, file),
        offset: 0,
        file_len,
    };
    let mut summary = LoadSummary::default();
    // A transaction read since its MULTI: its offset and its records with theirs, applied at EXEC.
    let mut open_multi: Option<(u64, Vec<OffsetRecord>)> = None;
    let mut apply_at = |offset: u64, args: Vec<Bytes>, summary: &mut LoadSummary| {
        apply(args).map_err(|e| AofError::Replay {
            path: path.to_path_buf(),
            offset,
            reason: e.to_string(),
        })?;
        summary.records += 1;
        Ok::<(), AofError>(())
    };
    let corrupt = |offset: u64, reason: &'static str| AofError::Corrupt {
        path: path.to_path_buf(),
        offset,
        reason,
    };
    loop {
        let start = reader.offset;
        let cut_from = match reader.record() {
            Ok(Some(args)) => {
                if is_named(&args, b"multi") {
                    if open_multi.is_some() {
                        return Err(corrupt(start, "MULTI inside a transaction"));
                    }
                    open_multi = Some((start, Vec::new()));
                } else if is_named(&args, b"exec") {
                    let Some((_, records)) = open_multi.take() else {
                        return Err(corrupt(start, "EXEC without MULTI"));
                    };
                    for (offset, args) in records {
                        apply_at(offset, args, &mut summary)?;
                    }
                } else if let Some((_, records)) = open_multi.as_mut() {
                    records.push((start, args));
                } else {
                    apply_at(start, args, &mut summary)?;
                }
                continue;
            }
            Ok(None) => match &open_multi {
                None => {
                    summary.end_offset = start;
                    return Ok(summary);
                }
                Some((multi_start, _)) => {
                    tracing::warn!(
                        path = %path.display(),
                        valid_bytes = multi_start,
                        "Revert incomplete MULTI/EXEC transaction in AOF file: the file ends \
                         inside a transaction, which is dropped whole and cut off the file (as \
                         Redis's aof-load-truncated yes)"
                    );
                    *multi_start
                }
            },
            Err(Bad::Truncated) => {
                // A transaction the torn record belongs to goes with it.
                let cut_from = open_multi
                    .as_ref()
                    .map_or(start, |(multi_start, _)| *multi_start);
                tracing::warn!(
                    path = %path.display(),
                    valid_bytes = cut_from,
                    cut_bytes = file_len - cut_from,
                    "!!! Warning: short read while loading the AOF file !!! The last record was \
                     torn (a crash mid-write); it is dropped and the file truncated to the last \
                     whole record (as Redis's aof-load-truncated yes)"
                );
                cut_from
            }
            Err(Bad::Format(reason)) => return Err(corrupt(start, reason)),
            Err(Bad::Io(e)) => return Err(io_error("read")(e)),
        };
        summary.end_offset = cut_from;
        summary.truncated_bytes = file_len - cut_from;
        let file = OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(io_error("open for truncation"))?;
        file.set_len(cut_from).map_err(io_error("truncate"))?;
        file.sync_all().map_err(io_error("fsync"))?;
        return Ok(summary);
    }
}

/// A record read and the offset it starts at.
type OffsetRecord = (u64, Vec<Bytes>);

/// Whether a record is the command `name` (lowercase), in any case.
fn is_named(args: &[Bytes], name: &[u8]) -> bool {
    args.len() == 1 && args[0].eq_ignore_ascii_case(name)
}

/// Why a record could not be read.
enum Bad {
    /// The file ended inside the record.
    Truncated,
    /// The bytes are not a record.
    Format(&'static str),
    Io(io::Error),
}

impl From<io::Error> for Bad {
    fn from(e: io::Error) -> Bad {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            Bad::Truncated
        } else {
            Bad::Io(e)
        }
    }
}

struct Reader<R> {
    inner: BufReader<R>,
    /// Bytes consumed so far.
    offset: u64,
    file_len: u64,
}

impl<R: Read> Reader<R> {
    /// The next record, or `None` at a clean end of file.
    fn record(&mut self) -> Result<Option<Vec<Bytes>>, Bad> {
        let argc = loop {
            if self.inner.fill_buf()?.is_empty() {
                return Ok(None);
            }
            let line = self.line()?;
            match line.first() {
                // Redis 7 writes annotations (`#TS:...`) between records; they carry no write.
                Some(b'#') => continue,
                Some(b'*') => {
                    break number(&line[1..]).ok_or(Bad::Format("bad multibulk count"))?
                }
                _ => return Err(Bad::Format("expected '*' at the start of a record")),
            }
        };
        if argc == 0 {
            return Err(Bad::Format("empty record"));
        }
        let mut args = Vec::with_capacity(argc.min(1024) as usize);
        for _ in 0..argc {
            let line = self.line()?;
            if line.first() != Some(&b'$') {
                return Err(Bad::Format("expected '$' before an argument"));
            }
            let len = number(&line[1..]).ok_or(Bad::Format("bad bulk length"))?;
            if len > MAX_ARG_LEN {
                return Err(Bad::Format("bulk length over 512 MB"));
            }
            if self.offset + len + 2 > self.file_len {
                // Do not allocate for bytes the file does not have.
                return Err(Bad::Truncated);
            }
            let mut data = vec![0u8; len as usize + 2];
            self.inner.read_exact(&mut data)?;
            self.offset += len + 2;
            if !data.ends_with(b"\r\n") {
                return Err(Bad::Format("argument not followed by CRLF"));
            }
            data.truncate(len as usize);
            args.push(Bytes::from(data));
        }
        Ok(Some(args))
    }

    /// One header line without its CRLF.
    fn line(&mut self) -> Result<Vec<u8>, Bad> {
        let mut line = Vec::with_capacity(16);
        let read = (&mut self.inner)
            .take(MAX_LINE as u64 + 2)
            .read_until(b'\n', &mut line)?;
        self.offset += read as u64;
        if !line.ends_with(b"\n") {
            return if read < MAX_LINE + 2 {
                Err(Bad::Truncated)
            } else {
                Err(Bad::Format("header line too long"))
            };
        }
        if !line.ends_with(b"\r\n") {
            return Err(Bad::Format("header line not ended by CRLF"));
        }
        line.truncate(line.len() - 2);
        Ok(line)
    }
}

fn number(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}
