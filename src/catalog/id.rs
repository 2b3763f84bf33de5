//! File IDs: ten characters from an alphabet without look-alikes (no 0/o, 1/l/i), easy to type.

use rand::Rng;

const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyz23456789";
pub const ID_LEN: usize = 10;

/// A fresh random file ID (31^10, about 8e14 possibilities).
pub fn new_file_id() -> String {
    let mut rng = rand::thread_rng();
    (0..ID_LEN)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect()
}

/// Whether `text` could be a file ID; anything else never touches the file system.
pub fn is_valid_id(text: &str) -> bool {
    text.len() == ID_LEN && text.bytes().all(|b| ALPHABET.contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_valid_and_distinct() {
        let a = new_file_id();
        let b = new_file_id();
        assert!(is_valid_id(&a) && is_valid_id(&b));
        assert_ne!(a, b);
        assert!(!is_valid_id("../../etc1"));
        assert!(!is_valid_id("short"));
    }
}
