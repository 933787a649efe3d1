//! Batch AES-128-GCM for protected IKE messages (RFC 5282), one SA key per row.
//!
//! Each message is a fixed-length row laid out as on the wire: `aad_len` octets of associated
//! data (the IKE header and the SK payload's generic header), an 8-octet IV, the plaintext
//! (ciphertext after sealing), and the 16-octet ICV. Each key is 20 octets: a 16-octet AES
//! key and the 4-octet salt that, followed by the IV, forms the 12-octet nonce.
//! The simulator seals and opens every message of a virtual-time step in one call.
#![forbid(unsafe_code)]

use aes_gcm::aead::AeadInPlace;
use aes_gcm::{Aes128Gcm, KeyInit, Nonce, Tag};

use crate::error::{CoreError, CoreResult};
use crate::par;

/// Key material per SA: AES-128 key then salt.
pub const KEY_LEN: usize = 20;
/// Explicit IV carried in the SK payload.
pub const IV_LEN: usize = 8;
/// Integrity check value (GCM tag) length.
pub const ICV_LEN: usize = 16;

fn check(keys: &[u8], rows: &[u8], row_len: usize, aad_len: usize) -> CoreResult<usize> {
    if !crate::cpu::aes_gcm_ok() {
        return Err(CoreError::InvalidArgument(
            "this build's AES-GCM needs AES-NI and PCLMULQDQ, which this CPU lacks; build \
             ikeqcd with RUSTFLAGS set (e.g. RUSTFLAGS=-Copt-level=3) to use the portable path"
                .to_owned(),
        ));
    }
    // checked: aad_len comes from the caller and may be anything up to usize::MAX
    if aad_len
        .checked_add(IV_LEN + ICV_LEN)
        .is_none_or(|need| row_len < need)
    {
        return Err(CoreError::ShapeMismatch(format!(
            "rows of {row_len} octets cannot hold {aad_len} octets of AAD, an IV and an ICV"
        )));
    }
    let n = rows.len() / row_len;
    if rows.len() % row_len != 0 || keys.len() != n * KEY_LEN {
        return Err(CoreError::ShapeMismatch(format!(
            "{n} rows need {n} keys of {KEY_LEN} octets, got {} octets of keys",
            keys.len()
        )));
    }
    Ok(n)
}

fn cipher_and_nonce(key: &[u8], row: &[u8], aad_len: usize) -> (Aes128Gcm, [u8; 12]) {
    let cipher = Aes128Gcm::new_from_slice(&key[..16]).expect("16-octet key");
    let mut nonce = [0u8; 12];
    nonce[..4].copy_from_slice(&key[16..KEY_LEN]);
    nonce[4..].copy_from_slice(&row[aad_len..aad_len + IV_LEN]);
    (cipher, nonce)
}

fn seal_one(key: &[u8], row: &mut [u8], aad_len: usize) {
    let (cipher, nonce) = cipher_and_nonce(key, row, aad_len);
    let end = row.len() - ICV_LEN;
    let (head, tag_out) = row.split_at_mut(end);
    let (aad, rest) = head.split_at_mut(aad_len);
    let body = &mut rest[IV_LEN..];
    let tag = cipher
        .encrypt_in_place_detached(Nonce::from_slice(&nonce), aad, body)
        .expect("GCM plaintext far below its size limit");
    tag_out.copy_from_slice(&tag);
}

fn open_one(key: &[u8], row: &mut [u8], aad_len: usize) -> bool {
    let (cipher, nonce) = cipher_and_nonce(key, row, aad_len);
    let end = row.len() - ICV_LEN;
    let (head, tag_in) = row.split_at_mut(end);
    let tag = Tag::clone_from_slice(tag_in);
    let (aad, rest) = head.split_at_mut(aad_len);
    let body = &mut rest[IV_LEN..];
    cipher
        .decrypt_in_place_detached(Nonce::from_slice(&nonce), aad, body, &tag)
        .is_ok()
}

/// Encrypt every row in place under its key: the IV must already be in place; the ICV is
/// written at the end of the row.
///
/// # Errors
/// `ShapeMismatch` if the rows cannot hold AAD, IV and ICV, or keys and rows differ in count.
pub fn seal_rows(
    keys: &[u8],
    rows: &mut [u8],
    row_len: usize,
    aad_len: usize,
    threads: usize,
) -> CoreResult<()> {
    check(keys, rows, row_len, aad_len)?;
    par::for_each_chunk(rows, row_len, threads, |first, chunk| {
        for (i, row) in chunk.chunks_exact_mut(row_len).enumerate() {
            let k = (first + i) * KEY_LEN;
            seal_one(&keys[k..k + KEY_LEN], row, aad_len);
        }
    });
    Ok(())
}

/// Authenticate and decrypt every row in place under its key; `ok[i]` says whether row `i`
/// authenticated (a row that did not is left as it was).
///
/// # Errors
/// As [`seal_rows`], and `ShapeMismatch` if `ok` is not one flag per row.
pub fn open_rows(
    keys: &[u8],
    rows: &mut [u8],
    row_len: usize,
    aad_len: usize,
    ok: &mut [bool],
    threads: usize,
) -> CoreResult<()> {
    let n = check(keys, rows, row_len, aad_len)?;
    if ok.len() != n {
        return Err(CoreError::ShapeMismatch(format!(
            "{n} rows but {} result flags",
            ok.len()
        )));
    }
    let mut pairs: Vec<(&mut [u8], &mut bool)> =
        rows.chunks_exact_mut(row_len).zip(ok.iter_mut()).collect();
    par::for_each_chunk(&mut pairs, 1, threads, |first, chunk| {
        for (i, (row, flag)) in chunk.iter_mut().enumerate() {
            let k = (first + i) * KEY_LEN;
            **flag = open_one(&keys[k..k + KEY_LEN], row, aad_len);
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    // NIST GCM test vector (gcmEncryptExtIV128, Count 0 with 16-octet PT and no AAD is test
    // case 2 of the GCM spec): K = 0^128, IV = 0^96, P = 0^128.
    #[test]
    fn known_vector_gcm_spec_case_2() {
        let mut key = vec![0u8; KEY_LEN];
        key[16..].copy_from_slice(&[0, 0, 0, 0]);
        let mut row = vec![0u8; IV_LEN + 16 + ICV_LEN];
        let row_len = row.len();
        seal_rows(&key, &mut row, row_len, 0, 1).unwrap();
        assert_eq!(
            &row[IV_LEN..IV_LEN + 16],
            unhex("0388dace60b6a392f328c2b971b2fe78").as_slice()
        );
        assert_eq!(
            &row[IV_LEN + 16..],
            unhex("ab6e47d42cec13bdf53a67b21257bddf").as_slice()
        );
        let mut ok = [false];
        open_rows(&key, &mut row, row_len, 0, &mut ok, 1).unwrap();
        assert!(ok[0]);
        assert_eq!(&row[IV_LEN..IV_LEN + 16], &[0u8; 16]);
    }

    #[test]
    fn round_trip_many_rows_and_tamper() {
        let n = 20_000;
        let row_len = 32 + IV_LEN + 5 + ICV_LEN;
        let keys: Vec<u8> = (0..n * KEY_LEN).map(|i| (i * 7 % 251) as u8).collect();
        let plain: Vec<u8> = (0..n * row_len).map(|i| (i % 253) as u8).collect();
        let mut rows = plain.clone();
        seal_rows(&keys, &mut rows, row_len, 32, 0).unwrap();
        assert_ne!(rows, plain);
        rows[row_len * 3 + 33] ^= 1; // an IV octet of row 3: wrong nonce
        rows[row_len * 5 + 2] ^= 1; // an AAD octet of row 5
        let mut ok = vec![false; n];
        open_rows(&keys, &mut rows, row_len, 32, &mut ok, 0).unwrap();
        assert_eq!(ok.iter().filter(|&&o| !o).count(), 2);
        assert!(!ok[3] && !ok[5]);
        for i in [0usize, 1, 4, n - 1] {
            let r = i * row_len;
            assert_eq!(
                &rows[r + 40..r + row_len - ICV_LEN],
                &plain[r + 40..r + row_len - ICV_LEN]
            );
        }
    }

    #[test]
    fn shapes_are_checked() {
        let mut rows = vec![0u8; 30];
        assert!(seal_rows(&[0u8; 20], &mut rows, 30, 10, 1).is_err());
        let mut rows = vec![0u8; 60];
        assert!(seal_rows(&[0u8; 20], &mut rows, 30, 0, 1).is_err());
        let mut ok = [false; 1];
        assert!(open_rows(&[0u8; 40], &mut rows, 30, 0, &mut ok, 1).is_err());
    }
}
