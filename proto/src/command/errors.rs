//! Redis's error texts about commands themselves: unknown command, unknown subcommand, wrong
//! number of arguments, byte for byte as redis-server 7.0 words them.

use bytes::Bytes;

/// `ERR unknown command 'name', with args beginning with: 'a' 'b' ` as Redis words it.
///
/// Redis 7.0 cuts the name at 128 bytes, quotes arguments while the list is shorter than 128 bytes
/// (cutting the last one to fit), stops each at a NUL byte (C strings) and turns `\r` and `\n` into
/// spaces. Invalid UTF-8 is replaced; `unknown_command_error_bytes` keeps the bytes exact.
pub fn unknown_command_error(args: &[Bytes]) -> String {
    String::from_utf8_lossy(&unknown_command_error_bytes(args)).into_owned()
}

/// `unknown_command_error` as raw bytes, exactly what Redis sends after `-`.
pub fn unknown_command_error_bytes(args: &[Bytes]) -> Bytes {
    let name = args.first().map(|a| c_str(a, 128)).unwrap_or_default();
    let mut quoted: Vec<u8> = Vec::new();
    for arg in args.iter().skip(1) {
        if quoted.len() >= 128 {
            break;
        }
        let room = 128 - quoted.len();
        quoted.push(b'\'');
        quoted.extend_from_slice(c_str(arg, room));
        quoted.extend_from_slice(b"' ");
    }
    let mut text = Vec::with_capacity(64 + name.len() + quoted.len());
    text.extend_from_slice(b"ERR unknown command '");
    text.extend_from_slice(name);
    text.extend_from_slice(b"', with args beginning with: ");
    text.extend_from_slice(&quoted);
    Bytes::from(sanitize(text))
}

/// `ERR unknown subcommand 'x'. Try CLUSTER HELP.` as Redis words it (`args[0]` upper-cased,
/// `args[1]` cut at 128 bytes).
pub fn unknown_subcommand_error(args: &[Bytes]) -> String {
    let container = args
        .first()
        .map(|a| c_str(a, usize::MAX))
        .unwrap_or_default();
    let sub = args.get(1).map(|a| c_str(a, 128)).unwrap_or_default();
    let mut text = Vec::with_capacity(48 + container.len() + sub.len());
    text.extend_from_slice(b"ERR unknown subcommand '");
    text.extend_from_slice(sub);
    text.extend_from_slice(b"'. Try ");
    text.extend(container.iter().map(u8::to_ascii_uppercase));
    text.extend_from_slice(b" HELP.");
    String::from_utf8_lossy(&sanitize(text)).into_owned()
}

/// `arg` as C's `%.*s` prints it: up to the first NUL, at most `max` bytes.
fn c_str(arg: &[u8], max: usize) -> &[u8] {
    let end = arg
        .iter()
        .position(|&b| b == 0)
        .unwrap_or(arg.len())
        .min(max);
    &arg[..end]
}

/// Redis turns `\r` and `\n` of an error into spaces so the reply stays one line.
fn sanitize(mut text: Vec<u8>) -> Vec<u8> {
    for b in &mut text {
        if *b == b'\r' || *b == b'\n' {
            *b = b' ';
        }
    }
    text
}
/// `ERR wrong number of arguments for 'get' command` as Redis words it.
pub fn arity_error(name: &str) -> String {
    format!("ERR wrong number of arguments for '{name}' command")
}
