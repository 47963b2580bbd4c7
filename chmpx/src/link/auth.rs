//! Challenge-response with the optional shared secret. Pure except for nonce generation.
//!
//! Each side sends a fresh random nonce; each answers with
//! `HMAC-SHA256(secret, domain || role || cluster || dialer_id || acceptor_id || dialer_nonce ||
//! acceptor_nonce)`. The role byte differs for the two answers, so one side's proof cannot be
//! reflected back as the other's; both nonces are in it, so an old proof cannot be replayed.
//! Without a secret the proofs are empty. Proofs are compared in constant time.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use super::limits::NONCE_BYTES;

const PROOF_DOMAIN: &[u8] = b"dkc-chmpx-link-auth-v1";

/// Which side's proof is computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Dialer = 1,
    Acceptor = 2,
}

/// Everything both proofs of one handshake are bound to.
#[derive(Debug, Clone, Copy)]
pub struct Transcript<'a> {
    pub cluster: &'a str,
    pub dialer_id: &'a str,
    pub acceptor_id: &'a str,
    pub dialer_nonce: &'a [u8],
    pub acceptor_nonce: &'a [u8],
}

/// A fresh random nonce from the OS.
pub fn new_nonce() -> Result<Vec<u8>, getrandom::Error> {
    let mut nonce = vec![0u8; NONCE_BYTES];
    getrandom::fill(&mut nonce)?;
    Ok(nonce)
}

fn mac_for(secret: &[u8], role: Role, t: &Transcript<'_>) -> Hmac<Sha256> {
    // HMAC takes keys of any length, so this cannot fail.
    let mut mac =
        <Hmac<Sha256> as KeyInit>::new_from_slice(secret).expect("HMAC accepts any key length");
    mac.update(PROOF_DOMAIN);
    mac.update(&[role as u8]);
    for part in [
        t.cluster.as_bytes(),
        t.dialer_id.as_bytes(),
        t.acceptor_id.as_bytes(),
        t.dialer_nonce,
        t.acceptor_nonce,
    ] {
        // Length-prefix each part so that moving bytes between parts changes the MAC.
        mac.update(&(part.len() as u32).to_be_bytes());
        mac.update(part);
    }
    mac
}

/// The proof `role` sends; empty when there is no secret.
pub fn proof(secret: Option<&[u8]>, role: Role, t: &Transcript<'_>) -> Vec<u8> {
    match secret {
        None => Vec::new(),
        Some(s) => mac_for(s, role, t).finalize().into_bytes().to_vec(),
    }
}

/// Checks the proof received from `role`. Without a local secret only an empty proof is
/// accepted (a peer that sends one is configured differently, which the operator must fix).
pub fn verify(secret: Option<&[u8]>, role: Role, t: &Transcript<'_>, received: &[u8]) -> bool {
    match secret {
        None => received.is_empty(),
        Some(s) => mac_for(s, role, t).verify_slice(received).is_ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transcript<'a>(dn: &'a [u8], an: &'a [u8]) -> Transcript<'a> {
        Transcript {
            cluster: "c",
            dialer_id: "a:1",
            acceptor_id: "b:1",
            dialer_nonce: dn,
            acceptor_nonce: an,
        }
    }

    #[test]
    fn a_proof_verifies_only_with_the_same_secret_role_and_nonces() {
        let (dn, an) = (new_nonce().unwrap(), new_nonce().unwrap());
        assert_ne!(dn, an);
        let t = transcript(&dn, &an);
        let p = proof(Some(b"s3cret"), Role::Dialer, &t);
        assert_eq!(p.len(), 32);
        assert!(verify(Some(b"s3cret"), Role::Dialer, &t, &p));
        assert!(!verify(Some(b"other"), Role::Dialer, &t, &p));
        assert!(
            !verify(Some(b"s3cret"), Role::Acceptor, &t, &p),
            "reflection must fail"
        );
        let other = new_nonce().unwrap();
        assert!(!verify(
            Some(b"s3cret"),
            Role::Dialer,
            &transcript(&dn, &other),
            &p
        ));
        assert!(!verify(Some(b"s3cret"), Role::Dialer, &t, &[]));
        assert!(!verify(Some(b"s3cret"), Role::Dialer, &t, &p[..31]));
    }

    #[test]
    fn without_a_secret_only_empty_proofs_pass() {
        let t = transcript(b"x", b"y");
        assert!(proof(None, Role::Acceptor, &t).is_empty());
        assert!(verify(None, Role::Acceptor, &t, &[]));
        assert!(!verify(None, Role::Acceptor, &t, &[0; 32]));
    }
}
