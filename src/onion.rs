//! Onion ids and keys (PROTOCOL.md §4). The only way to get an `OnionId` is `parse`, so
//! the rest of the daemon never handles an address that is not a checksummed v3 onion
//! id. A v3 id is an ed25519 public key: our messages are signed with the onion
//! service's secret key, and a peer's are verified against the id they claim.

use data_encoding::{BASE32_NOPAD, BASE64};
use ed25519_dalek::hazmat::{raw_sign, ExpandedSecretKey};
use ed25519_dalek::{Signature, VerifyingKey};
use serde::{de::Error, Deserialize, Deserializer, Serialize};
use sha3::{Digest, Sha3_256};
use std::{fmt::Display, fs, io::Read, os::unix::fs::MetadataExt, path::Path};
use zeroize::Zeroizing;

/// A v3 onion id in canonical form: 56 lower-case base32 characters + ".onion".
#[derive(Clone, PartialEq, Eq, Hash, Debug, Serialize)]
pub struct OnionId(String);

impl<'de> Deserialize<'de> for OnionId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<OnionId, D::Error> {
        OnionId::parse(&String::deserialize(d)?).map_err(D::Error::custom)
    }
}

impl OnionId {
    /// Accepts upper case, surrounding blanks and a missing ".onion"; checks the
    /// version byte and the checksum, as Tor does.
    pub fn parse(s: &str) -> Result<OnionId, String> {
        let lower = s.trim().to_ascii_lowercase();
        let b32 = lower.strip_suffix(".onion").unwrap_or(&lower);
        let raw = decode(b32).ok_or("not an onion id: expected 56 base32 characters")?;
        if raw[32..] != trailer(&raw[..32]) {
            return Err("onion id checksum is wrong, or not version 3 (mistyped address?)".into());
        }
        Ok(OnionId(format!("{b32}.onion")))
    }

    /// The ed25519 public key the id is made of.
    pub fn key(&self) -> [u8; 32] {
        let raw = decode(&self.0[..56]).expect("an OnionId holds 56 base32 characters");
        raw[..32].try_into().expect("35 bytes hold a 32-byte key")
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// At most 26 ASCII characters: the 2017 client draws this in a 29-column panel.
    pub fn short(&self) -> String {
        format!("{}...onion", &self.0[..16])
    }
}

/// What follows the key in a v3 id: a 2-byte checksum, and the version, 3.
fn trailer(key: &[u8]) -> [u8; 3] {
    let digest = Sha3_256::digest([b".onion checksum", key, &[3]].concat());
    [digest[0], digest[1], 3]
}

/// 35 bytes (32 key, 2 checksum, 1 version) take exactly 56 base32 characters.
fn decode(b32: &str) -> Option<Vec<u8>> {
    let raw = BASE32_NOPAD.decode(b32.to_ascii_uppercase().as_bytes()).ok()?;
    (raw.len() == 35).then_some(raw)
}

/// Tor's file `hs_ed25519_secret_key`: this header, then the 64-byte expanded key.
const SECRET_HEADER: &[u8; 32] = b"== ed25519v1-secret: type0 ==\0\0\0";

/// This node: its onion id and the onion service's secret key.
pub struct Identity {
    pub id: OnionId,
    secret: ExpandedSecretKey,
}

impl Identity {
    /// This node's onion id, from Tor's `hostname` file, and the key Tor wrote beside
    /// it; refused unless the key is private to this user, as Tor writes it, and its
    /// public key is the id.
    pub fn load(hostname: &Path) -> Result<Identity, String> {
        let shown = hostname.display();
        let text = fs::read_to_string(hostname);
        let hint = "is tor running? see --hostname";
        let text = text.map_err(|e| format!("cannot read {shown}: {e} ({hint})"))?;
        let id = OnionId::parse(&text).map_err(|e| format!("{shown}: {e}"))?;
        let path = hostname.with_file_name("hs_ed25519_secret_key");
        let fail = |why: &dyn Display| format!("{}: {why}", path.display());
        let file = fs::File::open(&path).map_err(|e| fail(&e))?;
        let meta = file.metadata().map_err(|e| fail(&e))?;
        if meta.mode() & 0o077 != 0 {
            return Err(fail(&"other users can read it: chmod 600 it, as Tor does"));
        }
        // The copy read from the file is wiped when dropped, as `secret` is.
        let mut bytes = Zeroizing::new(Vec::new());
        file.take(97).read_to_end(&mut bytes).map_err(|e| fail(&e))?;
        let key = bytes.strip_prefix(SECRET_HEADER).and_then(|k| <&[u8; 64]>::try_from(k).ok());
        let secret = key.map(ExpandedSecretKey::from_bytes);
        let secret = secret.ok_or_else(|| fail(&"not a Tor ed25519 secret key"))?;
        if VerifyingKey::from(&secret).to_bytes() != id.key() {
            return Err(fail(&format!("this is not the key of {} (wrong folder?)", id.as_str())));
        }
        Ok(Identity { id, secret })
    }

    /// Base64 of the signature of this message to `to` (PROTOCOL.md §4).
    pub fn sign(&self, to: &OnionId, ts: u64, mid: &str, msg: &str) -> String {
        let signed = signed(to, &self.id, ts, mid, msg);
        // The public key is computed from the secret one, never read from elsewhere:
        // signing with one that does not match can leak the secret key.
        let public = VerifyingKey::from(&self.secret);
        let sig = raw_sign::<sha2::Sha512>(&self.secret, &signed, &public);
        BASE64.encode(&sig.to_bytes())
    }
}

fn signed(to: &OnionId, from: &OnionId, ts: u64, mid: &str, msg: &str) -> Vec<u8> {
    let (to, from) = (to.as_str(), from.as_str());
    format!("torchat-v1\0{to}\0{from}\0{ts}\0{mid}\0{msg}").into_bytes()
}

/// `sig` is `from`'s signature of this message to `to`. Strict: a key of small order or
/// with a torsion component, and a non-canonical signature, are refused.
pub fn verify(
    to: &OnionId, from: &OnionId, ts: u64, mid: &str, msg: &str, sig: &Signature,
) -> Result<(), &'static str> {
    let key = VerifyingKey::from_bytes(&from.key());
    let key = key.map_err(|_| "the sender's id is not an ed25519 key")?;
    if key.is_weak() || !key.to_edwards().is_torsion_free() {
        return Err("the sender's id is a weak key");
    }
    let signed = signed(to, from, ts, mid, msg);
    key.verify_strict(&signed, sig).map_err(|_| "the signature does not verify")
}
