//! The TigerBeetle id scheme (SPEC §5): an id is the first 16 bytes of SHA-256(label), read
//! little-endian; 0 and `u128::MAX` are reserved by TigerBeetle, so the lowest bit is flipped.

use sha2::{Digest, Sha256};

/// The u128 id for a label such as `acct:limit:<key>` or `xfer:reserve:<lease>:<key>`.
pub fn id_for_label(label: &str) -> u128 {
    let digest = Sha256::digest(label.as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    let id = u128::from_le_bytes(bytes);
    if id == 0 || id == u128::MAX {
        id ^ 1
    } else {
        id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_is_first_16_bytes_little_endian() {
        let digest = Sha256::digest(b"acct:operator");
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&digest[..16]);
        assert_eq!(id_for_label("acct:operator"), u128::from_le_bytes(bytes));
    }

    #[test]
    fn ids_differ_per_label_and_are_stable() {
        assert_ne!(id_for_label("a"), id_for_label("b"));
        assert_eq!(id_for_label("a"), id_for_label("a"));
        assert_ne!(id_for_label(""), 0);
    }
}
