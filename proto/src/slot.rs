//! Key -> hash slot, exactly as Redis Cluster computes it: CRC16-XMODEM of the key, or of the first
//! non-empty `{hashtag}` in it, modulo 16384.

/// Number of hash slots in a cluster.
pub const SLOT_COUNT: u16 = 16384;

/// The hash slot of `key`.
pub fn key_hash_slot(key: &[u8]) -> u16 {
    let hashed = hash_tag(key).unwrap_or(key);
    crc16::State::<crc16::XMODEM>::calculate(hashed) % SLOT_COUNT
}

/// The part of `key` between the first `{` and the next `}`, when it is non-empty.
fn hash_tag(key: &[u8]) -> Option<&[u8]> {
    let open = key.iter().position(|&b| b == b'{')?;
    let rest = &key[open + 1..];
    let close = rest.iter().position(|&b| b == b'}')?;
    (close > 0).then(|| &rest[..close])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_redis_values() {
        // Values from `CLUSTER KEYSLOT` on redis-server 7.0.
        assert_eq!(key_hash_slot(b"somekey"), 11058);
        assert_eq!(key_hash_slot(b"foo{hash_tag}"), 2515);
        assert_eq!(key_hash_slot(b"hash_tag"), 2515);
        assert_eq!(key_hash_slot(b"foo"), 12182);
        assert_eq!(key_hash_slot(b""), 0);
    }

    #[test]
    fn empty_or_unclosed_tag_hashes_whole_key() {
        assert_eq!(key_hash_slot(b"foo{}bar"), key_hash_slot(b"foo{}bar"));
        assert_ne!(key_hash_slot(b"{}a"), key_hash_slot(b"{}b"));
        assert_eq!(
            key_hash_slot(b"a{b"),
            crc16::State::<crc16::XMODEM>::calculate(b"a{b") % 16384
        );
        assert_eq!(
            key_hash_slot(b"{user1000}.following"),
            key_hash_slot(b"{user1000}.followers")
        );
    }
}
