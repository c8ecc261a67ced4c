//! Encryption of secrets: PBKDF2-HMAC-SHA256 key derivation and AES-256-GCM,
//! through RustCrypto's audited `pbkdf2` and `aes-gcm` crates (no cipher
//! code of ours). The layout is WebCrypto's, so blobs written by the
//! reference TypeScript system decrypt here: a 16-byte random salt, a
//! 12-byte random IV, and the ciphertext with its 16-byte tag appended.
//! `alkdev_storage.secrets` holds the key versions, base64 and the bounds.
//!
//! Both calls release the GIL for the derivation (100,000 or 200,000
//! rounds of HMAC-SHA256, tens of milliseconds).

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use sha2::Sha256;

use crate::detach::detached;
use crate::errors::Error;

pub const SALT_BYTES: usize = 16;
pub const IV_BYTES: usize = 12;
pub const TAG_BYTES: usize = 16;

fn derive(password: &[u8], salt: &[u8], iterations: u32) -> Key<Aes256Gcm> {
    let mut key = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, iterations, &mut key);
    key.into()
}

fn random<const N: usize>() -> Result<[u8; N], Error> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes)
        .map_err(|e| Error::Programming(format!("the system's random source failed: {e}")))?;
    Ok(bytes)
}

/// Encrypt `plaintext` under a key derived from `password` with
/// `iterations` rounds: `(salt, iv, ciphertext + tag)`, salt and IV fresh
/// from the system's random source.
#[pyfunction]
pub fn _encrypt<'py>(
    py: Python<'py>,
    plaintext: &[u8],
    password: &[u8],
    iterations: u32,
) -> PyResult<(
    Bound<'py, PyBytes>,
    Bound<'py, PyBytes>,
    Bound<'py, PyBytes>,
)> {
    let salt = random::<SALT_BYTES>()?;
    let iv = random::<IV_BYTES>()?;
    let data = detached(py, || {
        let cipher = Aes256Gcm::new(&derive(password, &salt, iterations));
        cipher.encrypt(Nonce::from_slice(&iv), plaintext)
    })
    .map_err(|_| Error::Programming("AES-GCM refused the plaintext".into()))?;
    Ok((
        PyBytes::new(py, &salt),
        PyBytes::new(py, &iv),
        PyBytes::new(py, &data),
    ))
}

/// Decrypt what `_encrypt` (or WebCrypto) wrote; None when the tag does
/// not verify: a wrong password or a changed salt, IV or ciphertext, which
/// AES-GCM cannot tell apart.
#[pyfunction]
pub fn _decrypt<'py>(
    py: Python<'py>,
    password: &[u8],
    salt: &[u8],
    iv: &[u8],
    data: &[u8],
    iterations: u32,
) -> PyResult<Option<Bound<'py, PyBytes>>> {
    if iv.len() != IV_BYTES || data.len() < TAG_BYTES {
        return Err(crate::errors::invalid_input(format!(
            "an encrypted secret has a {IV_BYTES}-byte IV and at least its {TAG_BYTES}-byte \
             tag of data, not {} and {} bytes",
            iv.len(),
            data.len()
        )));
    }
    let plain = detached(py, || {
        let cipher = Aes256Gcm::new(&derive(password, salt, iterations));
        cipher.decrypt(Nonce::from_slice(iv), data).ok()
    });
    Ok(plain.map(|p| PyBytes::new(py, &p)))
}
