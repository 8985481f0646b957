//! The key that signs audit checkpoints (Ed25519). Generated into the data
//! dir on first start (`audit_signing_key`, 32 random bytes in hex, readable
//! by the owner only) like the JWT secret, or read from a configured file.
//! Every instance serving one database must use the same key.

use std::fmt;
use std::path::Path;

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::domain::audit::Checkpoint;

#[derive(Clone)]
pub struct AuditSigner {
    key: SigningKey,
    key_id: String,
}

impl fmt::Debug for AuditSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AuditSigner(key_id {})", self.key_id)
    }
}

/// The key id of a public key: the first 16 hex digits of its SHA-256.
pub fn key_id(public: &VerifyingKey) -> String {
    hex::encode(Sha256::digest(public.as_bytes()))[..16].to_owned()
}

impl AuditSigner {
    pub fn from_seed(seed: [u8; 32]) -> Self {
        let key = SigningKey::from_bytes(&seed);
        let key_id = key_id(&key.verifying_key());
        Self { key, key_id }
    }

    /// A key that lives only as long as this process (tests, tools).
    pub fn ephemeral() -> Self {
        Self::from_seed(rand::random())
    }

    /// The configured key file, or `<data dir>/audit_signing_key`, generated
    /// when absent.
    pub fn load(data_dir: &Path, configured: Option<&Path>) -> std::io::Result<Self> {
        let path = match configured {
            Some(path) => path.to_owned(),
            None => {
                let path = data_dir.join("audit_signing_key");
                if !path.exists() {
                    std::fs::create_dir_all(data_dir)?;
                    crate::config::create_secret_file(&path, &hex::encode(rand::random::<[u8; 32]>()))?;
                }
                path
            }
        };
        let text = std::fs::read_to_string(&path)?;
        let bad = || {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{} must hold a 32-byte Ed25519 seed in hex", path.display()),
            )
        };
        let seed: [u8; 32] = hex::decode(text.trim())
            .map_err(|_| bad())?
            .try_into()
            .map_err(|_| bad())?;
        Ok(Self::from_seed(seed))
    }

    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The 32-byte public key, in hex.
    pub fn public_key_hex(&self) -> String {
        hex::encode(self.key.verifying_key().as_bytes())
    }

    pub fn sign(&self, organization_id: Uuid, seq: i64, hash: &str, signed_at: i64) -> Checkpoint {
        let mut checkpoint = Checkpoint {
            organization_id,
            seq,
            hash: hash.to_owned(),
            signed_at,
            key_id: self.key_id.clone(),
            signature: String::new(),
        };
        checkpoint.signature = hex::encode(self.key.sign(&checkpoint.message()).to_bytes());
        checkpoint
    }

    /// Did this key sign the checkpoint?
    pub fn verify(&self, checkpoint: &Checkpoint) -> bool {
        checkpoint.key_id == self.key_id && verify_with(&self.key.verifying_key(), checkpoint)
    }
}

/// Parses a hex public key (as `orgd audit verify --public-key` takes it).
pub fn public_key_from_hex(raw: &str) -> Option<VerifyingKey> {
    let bytes: [u8; 32] = hex::decode(raw.trim()).ok()?.try_into().ok()?;
    VerifyingKey::from_bytes(&bytes).ok()
}

/// Checks a checkpoint's signature with a public key.
pub fn verify_with(public: &VerifyingKey, checkpoint: &Checkpoint) -> bool {
    let Some(bytes) = hex::decode(&checkpoint.signature)
        .ok()
        .and_then(|b| <[u8; 64]>::try_from(b).ok())
    else {
        return false;
    };
    public
        .verify(&checkpoint.message(), &Signature::from_bytes(&bytes))
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoints_verify_only_unchanged_and_with_the_signing_key() {
        let signer = AuditSigner::ephemeral();
        let cp = signer.sign(Uuid::now_v7(), 7, "abc", 1);
        assert!(signer.verify(&cp));
        let mut moved = cp.clone();
        moved.seq = 8;
        assert!(!signer.verify(&moved));
        let mut rehashed = cp.clone();
        rehashed.hash = "abd".into();
        assert!(!signer.verify(&rehashed));
        assert!(!AuditSigner::ephemeral().verify(&cp), "another key");
        let public = public_key_from_hex(&signer.public_key_hex()).expect("public key");
        assert!(verify_with(&public, &cp));
    }

    #[test]
    fn the_key_is_generated_once_into_the_data_dir() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = AuditSigner::load(dir.path(), None).expect("generated");
        let again = AuditSigner::load(dir.path(), None).expect("read back");
        assert_eq!(first.public_key_hex(), again.public_key_hex());
        std::fs::write(dir.path().join("audit_signing_key"), "nothex").expect("write");
        assert!(AuditSigner::load(dir.path(), None).is_err());
    }
}
