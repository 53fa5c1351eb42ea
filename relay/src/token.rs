//! Room secrets, device keys and resume tokens.
//!
//! Two capabilities open a room (DESIGN.md, "Who may do what"):
//! - the **PC secret**, made by the PC page and never put in a link: it joins as `pc` or
//!   `device` and reads history;
//! - the **device key**, derived from it ([`device_key`]) and carried by the QR link: it joins
//!   as `device` only. The derivation is one-way, so the link never gives the PC secret away.
//!
//! A room keeps only the digest of its device key ([`secret_digest`] of the key): a device key
//! is checked against it directly, a PC secret by deriving its device key first. Joins compare
//! digests in constant time. History rows carry the digest of the PC secret, hex-encoded, as
//! their `tag`, so history is readable only with the PC secret.
//!
//! A resume token is self-contained and signed (HMAC-SHA-256 with a key kept in the store):
//! it names the room, the member id, the role, and a nonce that changes on every join, so a
//! token works once: the `welcome` of the resumed connection carries the next one. Because the
//! key survives restarts, a client that reconnects to a restarted relay within the grace
//! window gets its member id back even though the relay's memory was wiped.

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

/// What every device key starts with: a PC secret never does, so the relay can tell which of
/// the two it was given.
pub const DEVICE_KEY_PREFIX: &str = "dk.";
/// Bytes of digest a device key carries (128 bits), as unpadded base64url: 22 characters.
const DEVICE_KEY_BYTES: usize = 16;
/// The shortest PC secret accepted: 16 bytes (the PC page makes 32 hex digits).
pub const MIN_SECRET_LEN: usize = 16;

/// The device key of the room whose PC secret has the digest `pc_digest`:
/// `dk.` and 22 base64url characters. The relay derives it from the digest it already keeps
/// for history, so it can tell a PC its key without ever storing the secret.
pub fn device_key(pc_digest: &[u8; 32]) -> String {
    let mut h = Sha256::new();
    h.update(b"tether/device-key/v1\0");
    h.update(pc_digest);
    let d = h.finalize();
    let mut key = String::from(DEVICE_KEY_PREFIX);
    B64.encode_string(&d[..DEVICE_KEY_BYTES], &mut key);
    key
}

/// Whether `secret` has the shape of a device key (it may still be a wrong one).
pub fn is_device_key(secret: &str) -> bool {
    secret.strip_prefix(DEVICE_KEY_PREFIX).is_some_and(|k| {
        k.len() == 22 && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    })
}

/// What the secret given to join a room proves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Credential {
    /// The digest of the room's device key: given directly, or derived from the PC secret.
    pub key: [u8; 32],
    /// The digest of the PC secret, when that is what was given.
    pub pc: Option<[u8; 32]>,
}

impl Credential {
    /// Reads `secret` for `room`: a device key (`dk.…`), or a PC secret of
    /// [`MIN_SECRET_LEN`] to [`MAX_SECRET_LEN`](tether_protocol::limits::MAX_SECRET_LEN) bytes.
    pub fn of(room: &str, secret: &str) -> Result<Credential, &'static str> {
        if secret.starts_with(DEVICE_KEY_PREFIX) {
            if !is_device_key(secret) {
                return Err("not a device key: the QR link's secret= is dk. and 22 characters");
            }
            return Ok(Credential { key: secret_digest(room, secret), pc: None });
        }
        if secret.len() < MIN_SECRET_LEN || secret.len() > tether_protocol::limits::MAX_SECRET_LEN {
            return Err("a room's secret is 16 to 256 bytes (the PC page makes a random one)");
        }
        let pc = secret_digest(room, secret);
        Ok(Credential { key: secret_digest(room, &device_key(&pc)), pc: Some(pc) })
    }
}

/// Constant-time equality of two digests.
pub fn digests_match(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.ct_eq(b).into()
}

/// A digest as the lowercase hex `tag` stored with history rows.
pub fn tag(digest: &[u8; 32]) -> String {
    crate::util::hex(digest)
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
    /// Which of the member's joins issued it: only the latest one's token is taken.
    pub nonce: u64,
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

    /// A token for this member's join number `nonce`: `v2.<payload>.<mac>`, URL-safe.
    pub fn issue(&self, room: &str, member: &str, role: Role, nonce: u64) -> String {
        let payload = format!("{:x}\n{}\n{:x}\n{}\n{}", self.instance, role.as_str(), nonce, member, room);
        let payload = B64.encode(payload.as_bytes());
        let mut mac = self.mac();
        mac.update(payload.as_bytes());
        let sig = mac.finalize().into_bytes();
        format!("v2.{payload}.{}", B64.encode(&sig[..16]))
    }

    /// Checks a token's signature and reads it; `None` for anything forged or malformed, and
    /// for the nonce-less `v1` tokens of earlier relays (their holder joins afresh).
    pub fn verify(&self, token: &str) -> Option<Claims> {
        let rest = token.strip_prefix("v2.")?;
        let (payload, sig) = rest.split_once('.')?;
        let sig = B64.decode(sig).ok()?;
        if sig.len() != 16 {
            return None;
        }
        let mut mac = self.mac();
        mac.update(payload.as_bytes());
        mac.verify_truncated_left(&sig).ok()?;
        let text = String::from_utf8(B64.decode(payload).ok()?).ok()?;
        let mut parts = text.splitn(5, '\n');
        let instance = u64::from_str_radix(parts.next()?, 16).ok()?;
        let role = Role::parse(parts.next()?)?;
        let nonce = u64::from_str_radix(parts.next()?, 16).ok()?;
        let member = parts.next()?.to_owned();
        let room = parts.next()?.to_owned();
        Some(Claims { room, member, role, instance, nonce })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_round_trips_and_forgeries_fail() {
        let t = Tokens::new([7; 32], 0xabc);
        let tok = t.issue("新闻 room", "d-1234", Role::Device, 77);
        let c = t.verify(&tok).unwrap();
        assert_eq!(
            c,
            Claims {
                room: "新闻 room".into(),
                member: "d-1234".into(),
                role: Role::Device,
                instance: 0xabc,
                nonce: 77,
            }
        );
        // Each join's token differs, though room, member and role are the same.
        assert_ne!(tok, t.issue("新闻 room", "d-1234", Role::Device, 78));

        // Another key, a flipped character, a truncated signature: all refused.
        assert!(Tokens::new([8; 32], 0xabc).verify(&tok).is_none());
        let mut chars: Vec<char> = tok.chars().collect();
        let i = 5;
        chars[i] = if chars[i] == 'A' { 'B' } else { 'A' };
        assert!(t.verify(&chars.into_iter().collect::<String>()).is_none());
        assert!(t.verify(&tok[..tok.len() - 3]).is_none());
        assert!(t.verify("").is_none());
        assert!(t.verify("v1..").is_none());
        assert!(t.verify("v2..").is_none());
    }

    #[test]
    fn a_pc_secret_and_its_device_key_prove_the_same_room() {
        let secret = "0123456789abcdef0123456789abcdef";
        let pc = Credential::of("r", secret).unwrap();
        let dev = Credential::of("r", &device_key(&pc.pc.unwrap())).unwrap();
        assert!(digests_match(&pc.key, &dev.key));
        assert!(dev.pc.is_none(), "a device key proves no PC");
        // Too short, too long, malformed keys: refused with a reason.
        assert!(Credential::of("r", "s3cret").is_err());
        assert!(Credential::of("r", &"x".repeat(257)).is_err());
        assert!(Credential::of("r", "dk.nope").is_err());
        assert!(Credential::of("r", &"x".repeat(16)).is_ok());
    }

    #[test]
    fn a_device_key_is_derived_one_way_and_recognised() {
        let d = secret_digest("r", "0123456789abcdef0123456789abcdef");
        let k = device_key(&d);
        assert!(k.starts_with(DEVICE_KEY_PREFIX) && k.len() == 25, "{k}");
        assert!(is_device_key(&k));
        assert_eq!(k, device_key(&d), "the same secret always gives the same key");
        // Another room or another secret: another key.
        assert_ne!(k, device_key(&secret_digest("q", "0123456789abcdef0123456789abcdef")));
        assert_ne!(k, device_key(&secret_digest("r", "0123456789abcdef0123456789abcdeF")));
        // PC secrets, and things shaped almost like a key, are not keys.
        for s in [
            "0123456789abcdef0123456789abcdef",
            "dk.",
            "dk.short",
            &[&k, "x"].concat(),
            "dk.!!!!!!!!!!!!!!!!!!!!!!",
        ] {
            assert!(!is_device_key(s), "{s}");
        }
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
