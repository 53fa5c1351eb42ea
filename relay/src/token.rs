//! Room secrets and resume tokens.
//!
//! A room keeps only a digest of its secret ([`secret_digest`]); joins compare digests in
//! constant time. History rows carry the same digest, hex-encoded, as their `tag`, so the
//! history of a room is readable only with the secret it was recorded under.
//!
//! A resume token is self-contained and signed (HMAC-SHA-256 with a key kept in the store):
//! it names the room, the member id and the role. Because the key survives restarts, a
//! client that reconnects to a restarted relay within the grace window gets its member id
//! back even though the relay's memory was wiped.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tether_protocol::Role;

type HmacSha256 = Hmac<Sha256>;

/// The SHA-256 of a room's secret, bound to the room name.
pub fn secret_digest(room: &str, secret: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"tether/room-secret/v1\0");
    h.update(room.as_bytes());
    h.update(b"\0");
    h.update(secret.as_bytes());
    h.finalize().into()
}

/// Constant-time equality of two digests.
pub fn digests_match(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.ct_eq(b).into()
}

/// A digest as the lowercase hex `tag` stored with history rows.
pub fn tag(digest: &[u8; 32]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// What a valid resume token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    /// The room it was issued in.
    pub room: String,
    /// The member id it restores.
    pub member: String,
    /// The role it was issued for.
    pub role: Role,
    /// The relay process that issued it (see [`Tokens::instance`]).
    pub instance: u64,
}

/// Issues and checks resume tokens.
pub struct Tokens {
    key: [u8; 32],
    instance: u64,
}

impl Tokens {
    /// `key` signs tokens (persisted by the store); `instance` names this process.
    pub fn new(key: [u8; 32], instance: u64) -> Self {
        Tokens { key, instance }
    }

    /// The id of this relay process, random per start.
    pub fn instance(&self) -> u64 {
        self.instance
    }

    fn mac(&self) -> HmacSha256 {
        <HmacSha256 as Mac>::new_from_slice(&self.key).expect("HMAC takes any key length")
    }

    /// A token for this member: `v1.<payload>.<mac>`, URL-safe.
    pub fn issue(&self, room: &str, member: &str, role: Role) -> String {
        let payload = format!("{:x}\n{}\n{}\n{}", self.instance, role.as_str(), member, room);
        let payload = B64.encode(payload.as_bytes());
        let mut mac = self.mac();
        mac.update(payload.as_bytes());
        let sig = mac.finalize().into_bytes();
        format!("v1.{payload}.{}", B64.encode(&sig[..16]))
    }

    /// Checks a token's signature and reads it; `None` for anything forged or malformed.
    pub fn verify(&self, token: &str) -> Option<Claims> {
        let rest = token.strip_prefix("v1.")?;
        let (payload, sig) = rest.split_once('.')?;
        let sig = B64.decode(sig).ok()?;
        let mut mac = self.mac();
        mac.update(payload.as_bytes());
        mac.verify_truncated_left(&sig).ok()?;
        if sig.len() != 16 {
            return None;
        }
        let text = String::from_utf8(B64.decode(payload).ok()?).ok()?;
        let mut parts = text.splitn(4, '\n');
        let instance = u64::from_str_radix(parts.next()?, 16).ok()?;
        let role = Role::parse(parts.next()?)?;
        let member = parts.next()?.to_owned();
        let room = parts.next()?.to_owned();
        Some(Claims { room, member, role, instance })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_round_trips_and_forgeries_fail() {
        let t = Tokens::new([7; 32], 0xabc);
        let tok = t.issue("新闻 room", "d-1234", Role::Device);
        let c = t.verify(&tok).unwrap();
        assert_eq!(
            c,
            Claims {
                room: "新闻 room".into(), member: "d-1234".into(), role: Role::Device, instance: 0xabc
            }
        );

        // Another key, a flipped character, a truncated signature: all refused.
        assert!(Tokens::new([8; 32], 0xabc).verify(&tok).is_none());
        let mut chars: Vec<char> = tok.chars().collect();
        let i = 5;
        chars[i] = if chars[i] == 'A' { 'B' } else { 'A' };
        assert!(t.verify(&chars.into_iter().collect::<String>()).is_none());
        assert!(t.verify(&tok[..tok.len() - 3]).is_none());
        assert!(t.verify("").is_none());
        assert!(t.verify("v1..").is_none());
    }

    #[test]
    fn digests_bind_room_and_secret() {
        let a = secret_digest("r", "s");
        assert!(digests_match(&a, &secret_digest("r", "s")));
        assert!(!digests_match(&a, &secret_digest("r", "t")));
        assert!(!digests_match(&a, &secret_digest("q", "s")));
        // No ambiguity between ("ab","c") and ("a","bc").
        assert!(!digests_match(&secret_digest("ab", "c"), &secret_digest("a", "bc")));
        assert_eq!(tag(&a).len(), 64);
    }
}
