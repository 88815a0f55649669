//! What can go wrong in the store, in terms the layers above can act on without knowing SQL.
//! The domain maps each variant to its own error (`DomainError: From<StoreError>`).

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A row the change depends on is missing (the org of a new membership, …).
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The change would break a uniqueness or integrity rule the store keeps.
    #[error("{0}")]
    Conflict(String),
    /// Text the database cannot hold (a NUL on PostgreSQL).
    #[error("{0}")]
    Unstorable(&'static str),
    /// The database cannot be reached, or is restarting: worth trying again.
    #[error("the database is unavailable")]
    Unavailable,
    /// Anything else; the text is for the log only.
    #[error("database: {0}")]
    Internal(String),
}

impl StoreError {
    pub fn internal(error: impl std::fmt::Display) -> Self {
        Self::Internal(error.to_string())
    }
}

pub type StoreResult<T> = Result<T, StoreError>;
