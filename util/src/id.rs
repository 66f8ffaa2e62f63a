//! Ids of pods and containers.

use std::io::Read;

/// A new random id: 64 hex digits (256 bits from the kernel's random
/// source), as containerd and CRI-O make them.
pub fn new_id() -> String {
    let mut b = [0u8; 32];
    let filled = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut b));
    if filled.is_err() {
        // No /dev/urandom: still unique enough for ids (not secrets).
        let t = crate::time::now_ns().to_le_bytes();
        b[..8].copy_from_slice(&t);
        b[8..12].copy_from_slice(&std::process::id().to_le_bytes());
    }
    let mut s = String::with_capacity(64);
    for x in b {
        s.push(char::from_digit(u32::from(x >> 4), 16).unwrap_or('0'));
        s.push(char::from_digit(u32::from(x & 0xf), 16).unwrap_or('0'));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_64_lowercase_hex_digits_and_differ() {
        let a = new_id();
        assert_eq!(a.len(), 64);
        assert!(
            a.bytes()
                .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
        );
        assert_ne!(a, new_id());
    }
}
