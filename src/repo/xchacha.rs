//! XChaCha20-Poly1305 (draft-irtf-cfrg-xchacha) from RustCrypto's `chacha20poly1305`, behind the
//! small in-place interface the sealing code uses, with a key that is overwritten on drop.

/// Length of the key, the extended nonce and the tag.
pub const KEY_LEN: usize = 32;
pub const NONCE_LEN: usize = 24;
pub const TAG_LEN: usize = 16;

/// An XChaCha20-Poly1305 key. Its bytes are overwritten on drop (best effort).
#[derive(Clone)]
pub struct XChaCha([u8; KEY_LEN]);

impl Drop for XChaCha {
    fn drop(&mut self) {
        self.0 = [0u8; KEY_LEN];
        std::hint::black_box(&self.0);
    }
}

/// The tag did not verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unauthentic;

impl XChaCha {
    /// The cipher under `key`.
    pub fn new(key: [u8; KEY_LEN]) -> XChaCha {
        XChaCha(key)
    }

    /// Encrypts `buf` in place and returns the tag over it and `ad`.
    pub fn seal_in_place(
        &self,
        nonce: &[u8; NONCE_LEN],
        ad: &[u8],
        buf: &mut [u8],
    ) -> [u8; TAG_LEN] {
        use chacha20poly1305::aead::{AeadInPlace, KeyInit};
        let cipher = chacha20poly1305::XChaCha20Poly1305::new(&self.0.into());
        // RustCrypto refuses only messages past ChaCha20's 256 GiB counter space; nothing
        // dstore seals comes near (an attachment is at most 100 MB).
        cipher
            .encrypt_in_place_detached(nonce.into(), ad, buf)
            .map(Into::into)
            .unwrap_or_else(|_| unreachable!("a sealed object is far below 256 GiB"))
    }

    /// Checks `tag` over `buf` and `ad`, then decrypts `buf` in place.
    pub fn open_in_place(
        &self,
        nonce: &[u8; NONCE_LEN],
        ad: &[u8],
        buf: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<(), Unauthentic> {
        use chacha20poly1305::aead::{AeadInPlace, KeyInit};
        let cipher = chacha20poly1305::XChaCha20Poly1305::new(&self.0.into());
        cipher
            .decrypt_in_place_detached(nonce.into(), ad, buf, tag.into())
            .map_err(|_| Unauthentic)
    }
}
