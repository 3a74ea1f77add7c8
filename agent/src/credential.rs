//! The agent's credential, issued by the collector (`spotcheck-collector agents add ID`): the
//! HMAC key it signs its batches and statuses with (and checks the collector's acks with), and
//! its broker password. Read from `agent.credential_file`, or from the file named by the
//! environment variable [`CREDENTIAL_ENV`], which wins. Never logged.
//!
//! ```toml
//! agent = "pool-agent-1"
//! generation = 1
//! key = "…64 hex digits…"
//! password = "…"
//! ```

use std::path::{Path, PathBuf};

use serde::Deserialize;
use spotcheck_protocol::mac::{self, AgentKey, Algorithm, KeyGeneration};
use spotcheck_protocol::{Ack, AgentId, AgentState, SignedError, Status};

use crate::config::{AgentConfig, ConfigError, Secret};

/// The environment variable naming the credential file; it overrides `agent.credential_file`.
pub const CREDENTIAL_ENV: &str = "SPOTCHECK_AGENT_CREDENTIAL_FILE";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CredentialFile {
    agent: AgentId,
    generation: u32,
    key: Secret,
    password: Secret,
}

/// An agent's credential.
#[derive(Debug, Clone)]
pub struct Credential {
    /// The HMAC key.
    pub key: AgentKey,
    /// The broker password (username: the agent id).
    pub password: Secret,
}

fn invalid(problem: String) -> ConfigError {
    ConfigError::Invalid {
        problems: vec![problem],
    }
}

impl Credential {
    /// Reads a credential file for `agent`.
    pub fn load(path: &Path, agent: &AgentId) -> Result<Credential, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            invalid(format!(
                "agent.credential_file: cannot read {}: {e}",
                path.display()
            ))
        })?;
        let file: CredentialFile = toml::from_str(&text).map_err(|e| {
            invalid(format!(
                "agent.credential_file {}: {}",
                path.display(),
                e.message()
            ))
        })?;
        if &file.agent != agent {
            return Err(invalid(format!(
                "agent.credential_file {} is agent {}'s credential, but this is agent {agent}",
                path.display(),
                file.agent
            )));
        }
        let key = AgentKey::from_hex(KeyGeneration(file.generation), &file.key.0).map_err(|e| {
            invalid(format!(
                "agent.credential_file {}: key: {e}",
                path.display()
            ))
        })?;
        Ok(Credential {
            key,
            password: file.password,
        })
    }

    /// Where the configuration says the credential is: [`CREDENTIAL_ENV`], else
    /// `agent.credential_file`.
    pub fn path(config: &AgentConfig) -> Option<PathBuf> {
        std::env::var_os(CREDENTIAL_ENV)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .or_else(|| config.agent.credential_file.clone())
    }

    /// The configured credential, if any.
    pub fn for_config(config: &AgentConfig) -> Result<Option<Credential>, ConfigError> {
        Credential::path(config)
            .map(|p| Credential::load(&p, &config.agent.id))
            .transpose()
    }
}

/// What the agent signs and checks with its key. Without a key (no credential configured)
/// nothing is signed and unsigned acks are believed: only for a collector that runs with
/// `ingest.require_agent_auth = false`.
///
/// It signs with one algorithm (`agent.mac`, keyed BLAKE3 unless configured otherwise) and
/// believes acks signed with its key by either: the collector answers in the algorithm of the
/// last message it verified from the agent, which is HMAC-SHA256 until it has seen one (after
/// its restart, say), and both need the key to forge (see [`spotcheck_protocol::mac`]).
#[derive(Debug, Clone)]
pub struct Signer {
    key: Option<AgentKey>,
    algorithm: Algorithm,
    /// When this process started, Unix ms: the `epoch` of its statuses.
    epoch: u64,
}

impl Signer {
    /// A signer with `key`, for a process started now.
    pub fn new(key: Option<AgentKey>) -> Signer {
        let epoch = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        Signer {
            key,
            algorithm: Algorithm::default(),
            epoch,
        }
    }

    /// The same signer, signing with `algorithm`.
    pub fn with_algorithm(self, algorithm: Algorithm) -> Signer {
        Signer { algorithm, ..self }
    }

    /// Whether a key is configured.
    pub fn has_key(&self) -> bool {
        self.key.is_some()
    }

    /// `payload` (a batch, `after` already set) with its MAC.
    pub fn batch(&self, payload: &[u8]) -> Vec<u8> {
        match &self.key {
            Some(k) => mac::sign_with(self.algorithm, k, payload),
            None => payload.to_vec(),
        }
    }

    /// The status payload number `counter` of this process.
    pub fn status(&self, agent: &AgentId, state: AgentState, counter: u64) -> Vec<u8> {
        let s = Status::numbered(agent.clone(), state, self.epoch, counter);
        match &self.key {
            Some(k) => s.encode_signed_with(self.algorithm, k),
            None => s.encode(),
        }
    }

    /// The ack in `payload`, if the collector provably sent it.
    pub fn ack(&self, payload: &[u8]) -> Result<Ack, SignedError> {
        match &self.key {
            Some(k) => Ack::decode_signed(k, payload),
            None if mac::is_signed(payload) => Ok(Ack::decode(&mac::unsigned_body(payload)?)?),
            None => Ok(Ack::decode(payload)?),
        }
    }
}

#[cfg(test)]
mod tests {
    use spotcheck_protocol::Seq;

    use super::*;

    fn key(fill: u8) -> AgentKey {
        AgentKey::new(KeyGeneration(1), [fill; 32]).unwrap()
    }

    #[test]
    fn a_keyed_signer_believes_only_acks_signed_with_its_key() {
        let agent = AgentId::new("a1").unwrap();
        let signer = Signer::new(Some(key(1)));
        let ack = Ack::new(agent.clone(), [Seq(0), Seq(u64::MAX)]);
        assert_eq!(signer.ack(&ack.encode_signed(&key(1))).unwrap(), ack);
        assert!(signer.ack(&ack.encode()).is_err(), "unsigned");
        assert!(
            signer.ack(&ack.encode_signed(&key(2))).is_err(),
            "another key"
        );
        // Without a key (authentication off at the collector) unsigned acks are believed.
        assert_eq!(Signer::new(None).ack(&ack.encode()).unwrap(), ack);
    }

    #[test]
    fn the_signer_signs_with_its_algorithm_and_believes_acks_in_either() {
        let agent = AgentId::new("a1").unwrap();
        let ack = Ack::new(agent.clone(), [Seq(3)]);
        for alg in [Algorithm::Blake3, Algorithm::HmacSha256] {
            let signer = Signer::new(Some(key(1))).with_algorithm(alg);
            let batch = signer.batch(br#"{"v":1,"agent":"a1","seq":3,"readings":[]}"#);
            assert_eq!(mac::algorithm_of(&batch), Some(alg));
            let status = signer.status(&agent, AgentState::Online, 2);
            assert_eq!(mac::algorithm_of(&status), Some(alg));
            for answer in [Algorithm::Blake3, Algorithm::HmacSha256] {
                let wire = ack.encode_signed_with(answer, &key(1));
                assert_eq!(signer.ack(&wire).unwrap(), ack, "{alg} agent, {answer} ack");
                assert!(signer
                    .ack(&ack.encode_signed_with(answer, &key(2)))
                    .is_err());
            }
        }
        // Keyed BLAKE3 unless configured otherwise.
        let default = Signer::new(Some(key(1))).batch(br#"{"a":1}"#);
        assert_eq!(mac::algorithm_of(&default), Some(Algorithm::Blake3));
    }

    #[test]
    fn statuses_are_signed_and_numbered() {
        let agent = AgentId::new("a1").unwrap();
        let signer = Signer::new(Some(key(1)));
        let wire = signer.status(&agent, AgentState::Offline, 5);
        let s = Status::decode_signed(&key(1), &wire).unwrap();
        assert_eq!((s.state, s.counter), (AgentState::Offline, 5));
        assert!(s.epoch > 0);
    }

    #[test]
    fn a_credential_file_of_another_agent_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c");
        let text = format!(
            "agent = \"a2\"\ngeneration = 1\nkey = \"{}\"\npassword = \"p\"\n",
            "ab".repeat(32)
        );
        std::fs::write(&path, text).unwrap();
        let err = Credential::load(&path, &AgentId::new("a1").unwrap()).unwrap_err();
        assert!(err.to_string().contains("a2"), "{err}");
        let ok = Credential::load(&path, &AgentId::new("a2").unwrap()).unwrap();
        assert_eq!(ok.key.to_hex(), "ab".repeat(32));
        assert!(
            !format!("{ok:?}").contains("abab"),
            "the key is never printed"
        );
    }
}
