//! Redis's CRC-64 (src/crc64.c): the Jones polynomial, reflected in and out, initial value 0, no
//! final xor ("CRC-64/REDIS"). DUMP payloads end with it, little endian, over everything before it.

/// The Jones polynomial 0xad93d23594c935a9, bit-reversed for the reflected (LSB-first) algorithm.
const POLY_REFLECTED: u64 = 0x95ac_9329_ac4b_c9b5;

/// One entry per byte value: the CRC of that byte alone, so each input byte costs one lookup.
const TABLE: [u64; 256] = build_table();

const fn build_table() -> [u64; 256] {
    let mut table = [0u64; 256];
    let mut byte = 0;
    while byte < 256 {
        let mut crc = byte as u64;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ POLY_REFLECTED
            } else {
                crc >> 1
            };
            bit += 1;
        }
        table[byte] = crc;
        byte += 1;
    }
    table
}

/// Continues the CRC `crc` (0 to start) over `data`, as Redis's `crc64(crc, data, len)`.
pub fn crc64(mut crc: u64, data: &[u8]) -> u64 {
    for &byte in data {
        crc = TABLE[((crc ^ u64::from(byte)) & 0xff) as usize] ^ (crc >> 8);
    }
    crc
}

#[cfg(test)]
mod tests {
    use super::crc64;

    /// The catalogue's check value, and a real DUMP payload's footer.
    #[test]
    fn matches_redis_check_values() {
        assert_eq!(crc64(0, b"123456789"), 0xe9c6_d914_c4b8_d9ca);
        // The footer redis-server 7.0 wrote for `SET k hello` + `DUMP k`.
        let footer = u64::from_le_bytes(*b"cr\xdfve4 \n");
        assert_eq!(crc64(0, b"\x00\x05hello\n\x00"), footer);
    }

    #[test]
    fn continues_across_chunks() {
        let whole = crc64(0, b"hello world");
        assert_eq!(crc64(crc64(0, b"hello "), b"world"), whole);
    }
}
