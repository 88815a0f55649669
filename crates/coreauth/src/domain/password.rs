//! Passwords: the `Password` type (checked length, redacted `Debug`) and `PasswordHashing`, which
//! runs argon2id on its own lower-priority threads (`crate::hash_pool`) behind two semaphores: one caps
//! how many hashes run at once (the cores), one caps how many may wait. A flood of logins therefore queues in bounded
//! memory and answers 503 when the queue is full, while the async workers stay free to validate
//! tokens for everyone else.

use std::cell::RefCell;
use std::sync::Arc;
use std::time::Duration;

use argon2::password_hash::phc::PasswordHash;
use argon2::{Algorithm, Argon2, Block, Params, PasswordHasher, Version};
use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;

use super::error::{DomainError, DomainResult};
use crate::hash_pool::HashPool;

/// A password as received: not empty, at most 1024 bytes (checked before any hashing, so a
/// megabyte password cannot buy a megabyte of argon2 work).
#[derive(Clone)]
pub struct Password(SecretString);

impl Password {
    pub const MAX_BYTES: usize = 1024;

    pub fn parse(input: String) -> DomainResult<Self> {
        if input.is_empty() {
            return Err(DomainError::invalid("password must not be empty"));
        }
        if input.len() > Self::MAX_BYTES {
            return Err(DomainError::invalid(format!(
                "password must be at most {} bytes",
                Self::MAX_BYTES
            )));
        }
        Ok(Self(SecretString::from(input)))
    }

    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }

    pub fn char_count(&self) -> usize {
        self.expose().chars().count()
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password([REDACTED])")
    }
}

/// argon2id cost and the limits of the hashing queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashCost {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

impl HashCost {
    /// OWASP's argon2id recommendation: m=19456 KiB, t=2, p=1.
    pub const RECOMMENDED: Self = Self {
        memory_kib: 19_456,
        iterations: 2,
        parallelism: 1,
    };

    fn params(self) -> DomainResult<Params> {
        Params::new(self.memory_kib, self.iterations, self.parallelism, None)
            .map_err(|e| DomainError::internal(format!("argon2 parameters: {e}")))
    }
}

#[derive(Debug, Clone, Copy)]
pub struct HashLimits {
    /// Hashes running at once; more would only make each slower.
    pub concurrent: usize,
    /// Hashes allowed to wait for a slot; past that, callers get `Overloaded`.
    pub queued: usize,
    /// How much lower than request handling hashing runs (Linux `nice`, 0–19; 0: the same).
    pub niceness: i32,
}

pub struct PasswordHashing {
    cost: HashCost,
    /// The threads hashes run on, one per concurrent hash.
    pool: HashPool,
    running: Arc<Semaphore>,
    waiting: Arc<Semaphore>,
    /// Verified against when the account does not exist or cannot log in, so that such attempts
    /// cost the same time as a wrong password for a real account.
    dummy_hash: String,
}

impl PasswordHashing {
    pub async fn new(cost: HashCost, limits: HashLimits) -> DomainResult<Self> {
        let params = cost.params()?;
        let dummy_hash = tokio::task::spawn_blocking(move || {
            let mut seed = [0u8; 32];
            getrandom::fill(&mut seed).map_err(DomainError::internal)?;
            hash_with(&params, &seed)
        })
        .await
        .map_err(DomainError::internal)??;
        Ok(Self {
            cost,
            pool: HashPool::new(limits.concurrent.max(1), limits.niceness)
                .map_err(DomainError::internal)?,
            running: Arc::new(Semaphore::new(limits.concurrent.max(1))),
            waiting: Arc::new(Semaphore::new(limits.queued.max(1))),
            dummy_hash,
        })
    }

    pub fn cost(&self) -> HashCost {
        self.cost
    }

    /// A PHC string (`$argon2id$v=19$m=…,t=…,p=…$salt$hash`) with a fresh random salt.
    pub async fn hash(&self, password: &Password) -> DomainResult<String> {
        let params = self.cost.params()?;
        let password = password.clone();
        self.run(move || hash_with(&params, password.expose().as_bytes()))
            .await?
    }

    /// Checks `password` against `hash`; with no hash (unknown or disabled account) it checks
    /// against a dummy hash and answers false, taking the same time.
    pub async fn verify(&self, password: &Password, hash: Option<&str>) -> DomainResult<bool> {
        let (hash, real) = match hash {
            Some(h) => (h.to_owned(), true),
            None => (self.dummy_hash.clone(), false),
        };
        let password = password.clone();
        let matched = self
            .run(move || verify_hash(password.expose().as_bytes(), &hash))
            .await?;
        Ok(real && matched)
    }

    /// True when `hash` was made with other (older, weaker) parameters than the current ones.
    pub fn needs_rehash(&self, hash: &str) -> bool {
        let Ok(parsed) = argon2::password_hash::phc::PasswordHash::new(hash) else {
            return true;
        };
        if parsed.algorithm.as_str() != Algorithm::Argon2id.as_str() {
            return true;
        }
        match Params::try_from(&parsed) {
            Ok(p) => {
                p.m_cost() != self.cost.memory_kib
                    || p.t_cost() != self.cost.iterations
                    || p.p_cost() != self.cost.parallelism
            }
            Err(_) => true,
        }
    }

    async fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce() -> T + Send + 'static,
    ) -> DomainResult<T> {
        let busy = || DomainError::Overloaded {
            retry_after: Duration::from_secs(1),
        };
        let _queued = self
            .waiting
            .clone()
            .try_acquire_owned()
            .map_err(|_| busy())?;
        let _running = self
            .running
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| busy())?;
        self.pool.run(job).await.map_err(DomainError::internal)
    }
}

thread_local! {
    /// argon2's working memory (19 MiB at the recommended cost), kept by each hashing thread
    /// from one verification to the next. `PasswordVerifier::verify_password` allocates it
    /// zeroed for every hash, and at this size that is a fresh mapping each time: the kernel
    /// then faults in and clears every 4 KiB page, which the benchmark measured at about a
    /// sixth of a login's CPU time. argon2 overwrites every block before reading it, so the
    /// memory needs no clearing between uses; what it holds is derived from the password
    /// through BLAKE2b and is no easier to invert than the stored hash itself.
    static MEMORY: RefCell<Vec<Block>> = const { RefCell::new(Vec::new()) };
}

/// True when `password` matches the PHC string `phc` (any argon2 variant, version and cost it
/// names), compared in constant time. What `PasswordVerifier` does, on this thread's reused
/// memory. Public for the benchmark, which measures the machine's hashing limit with it.
pub fn verify_hash(password: &[u8], phc: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(phc) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (&parsed.salt, &parsed.hash) else {
        return false;
    };
    let Ok(algorithm) = Algorithm::try_from(parsed.algorithm.as_str()) else {
        return false;
    };
    let version = match parsed.version.map(Version::try_from).transpose() {
        Ok(version) => version.unwrap_or_default(),
        Err(_) => return false,
    };
    let Ok(params) = Params::try_from(&parsed) else {
        return false;
    };
    let blocks = params.block_count();
    let argon2 = Argon2::new(algorithm, version, params);
    let mut computed = [0u8; 64];
    let Some(out) = computed.get_mut(..expected.len()) else {
        return false;
    };
    let hashed = MEMORY.with_borrow_mut(|memory| {
        if memory.len() < blocks {
            memory.resize(blocks, Block::new());
        }
        memory.get_mut(..blocks).is_some_and(|memory| {
            argon2
                .hash_password_into_with_memory(password, salt, out, memory)
                .is_ok()
        })
    });
    hashed && bool::from(out.ct_eq(expected.as_bytes()))
}

fn hash_with(params: &Params, password: &[u8]) -> DomainResult<String> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
        .hash_password(password)
        .map(|h| h.to_string())
        .map_err(|e| DomainError::internal(format!("argon2: {e}")))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const CHEAP: HashCost = HashCost {
        memory_kib: 64,
        iterations: 1,
        parallelism: 1,
    };
    const LIMITS: HashLimits = HashLimits {
        concurrent: 2,
        queued: 8,
        niceness: 0,
    };

    fn pw(s: &str) -> Password {
        Password::parse(s.to_owned()).unwrap()
    }

    #[test]
    fn password_length_is_checked_in_bytes_before_hashing() {
        assert!(Password::parse(String::new()).is_err());
        assert!(Password::parse("é".repeat(512)).is_ok()); // 1024 bytes
        assert!(Password::parse("é".repeat(513)).is_err());
        assert!(Password::parse("a".repeat(1025)).is_err());
    }

    #[test]
    fn debug_never_shows_the_password() {
        assert_eq!(format!("{:?}", pw("canary-secret")), "Password([REDACTED])");
    }

    #[tokio::test]
    async fn hashes_verify_and_carry_their_parameters() {
        let hashing = PasswordHashing::new(CHEAP, LIMITS).await.unwrap();
        let hash = hashing.hash(&pw("correct horse")).await.unwrap();
        assert!(hash.starts_with("$argon2id$v=19$m=64,t=1,p=1$"), "{hash}");
        assert!(
            hashing
                .verify(&pw("correct horse"), Some(&hash))
                .await
                .unwrap()
        );
        assert!(
            !hashing
                .verify(&pw("wrong horse"), Some(&hash))
                .await
                .unwrap()
        );
        assert!(!hashing.verify(&pw("correct horse"), None).await.unwrap());
        assert!(!hashing.needs_rehash(&hash));
        let again = hashing.hash(&pw("correct horse")).await.unwrap();
        assert_ne!(hash, again, "every hash has its own salt");
    }

    #[test]
    fn reused_memory_verifies_like_the_crate_at_any_cost() {
        use argon2::PasswordVerifier;
        // A larger cost first, then a smaller one: the thread's memory is reused, not resized
        // down, and must still give the right answers.
        for (m, t, p) in [(256, 2, 2), (64, 1, 1), (128, 3, 1)] {
            let params = Params::new(m, t, p, None).unwrap();
            let hash = hash_with(&params, b"correct horse").unwrap();
            for (password, expected) in [(&b"correct horse"[..], true), (b"wrong horse", false)] {
                let crate_says = Argon2::default()
                    .verify_password(password, hash.as_str())
                    .is_ok();
                assert_eq!(crate_says, expected);
                assert_eq!(verify_hash(password, &hash), expected, "m={m} t={t} p={p}");
            }
        }
        let argon2i = Argon2::new(
            Algorithm::Argon2i,
            Version::V0x10,
            Params::new(64, 1, 1, None).unwrap(),
        )
        .hash_password(b"pw")
        .unwrap()
        .to_string();
        assert!(verify_hash(b"pw", &argon2i));
        for garbage in [
            "",
            "$argon2id$",
            "$bcrypt$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$aGFzaA",
            "x$y$z",
        ] {
            assert!(!verify_hash(b"pw", garbage), "{garbage}");
        }
    }

    #[tokio::test]
    async fn weaker_hashes_want_an_upgrade() {
        let old = PasswordHashing::new(CHEAP, LIMITS).await.unwrap();
        let hash = old.hash(&pw("pw")).await.unwrap();
        let current = PasswordHashing::new(
            HashCost {
                memory_kib: 128,
                ..CHEAP
            },
            LIMITS,
        )
        .await
        .unwrap();
        assert!(current.needs_rehash(&hash));
        assert!(current.needs_rehash("$2b$10$notargon"));
    }

    #[tokio::test]
    async fn a_full_queue_answers_overloaded() {
        let hashing = PasswordHashing::new(
            CHEAP,
            HashLimits {
                concurrent: 1,
                queued: 1,
                niceness: 0,
            },
        )
        .await
        .unwrap();
        let _held = hashing.waiting.clone().try_acquire_owned().unwrap();
        let err = hashing.hash(&pw("x")).await.unwrap_err();
        assert_eq!(err.code(), "overloaded");
    }
}
