//! Onion ids: the only way to get an `OnionId` is `parse`, so the rest of the daemon
//! never handles an address that is not a checksummed v3 onion id.

use serde::{Deserialize, Deserializer, Serialize};
use sha3::{Digest, Sha3_256};
use std::fmt;

const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

/// A v3 onion id in canonical form: 56 lower-case base32 characters + ".onion".
#[derive(Clone, PartialEq, Eq, Hash, Debug, Serialize)]
#[serde(transparent)]
pub struct OnionId(String);

impl OnionId {
    /// Accepts upper case, surrounding blanks and a missing ".onion"; checks the
    /// version byte and the checksum, as Tor does.
    pub fn parse(s: &str) -> Result<OnionId, String> {
        let lower = s.trim().to_ascii_lowercase();
        let b32 = lower.strip_suffix(".onion").unwrap_or(&lower);
        let raw = decode(b32).ok_or("not an onion id: expected 56 base32 characters")?;
        let (key, rest) = raw.split_at(32);
        if rest[2] != 3 {
            return Err("not a v3 onion id".into());
        }
        if rest[..2] != checksum(key)[..] {
            return Err("onion id checksum is wrong (mistyped address?)".into());
        }
        Ok(OnionId(format!("{b32}.onion")))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// At most 26 ASCII characters: the 2017 client draws this in a 29-column panel.
    pub fn short(&self) -> String {
        format!("{}...onion", &self.0[..16])
    }
}

fn checksum(key: &[u8]) -> [u8; 2] {
    let digest = Sha3_256::new().chain_update(b".onion checksum").chain_update(key).chain_update([3u8]).finalize();
    [digest[0], digest[1]]
}

/// 56 base32 characters are exactly 35 bytes: 32 key, 2 checksum, 1 version.
fn decode(b32: &str) -> Option<Vec<u8>> {
    if b32.len() != 56 {
        return None;
    }
    let (mut bits, mut acc, mut out) = (0u32, 0u32, Vec::with_capacity(35));
    for c in b32.bytes() {
        // Only the `bits` low bits are still pending, never more than 12.
        acc = ((acc << 5) | ALPHABET.iter().position(|&a| a == c)? as u32) & 0xfff;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

impl<'de> Deserialize<'de> for OnionId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        OnionId::parse(&String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for OnionId {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(&self.0)
    }
}
