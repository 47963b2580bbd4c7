//! [`Kv`] over the `dkc_client::client` driver (the blocking `Client`), so the scenarios run
//! through the code users run. Its typed errors are split into "certainly not applied" and
//! "outcome unknown" for the history checker.

use dkc_client::client::{Client, ClientError, Expiry, StoreOptions};
use dkc_client::proto::Item;

use crate::kv::{CasOutcome, Kv, KvError};

/// The driver, as a [`Kv`].
pub struct DriverKv(pub Client);

fn classify(e: ClientError) -> KvError {
    match e {
        // Refused before anything was sent or applied.
        ClientError::TooLarge { .. }
        | ClientError::NotNumeric { .. }
        | ClientError::Config(_)
        | ClientError::InvalidArgument(_) => KvError::Failed(e.to_string()),
        // Timeouts, unavailability (possibly after a retry), damaged answers, server errors:
        // the write may have happened.
        other => KvError::Unknown(other.to_string()),
    }
}

impl Kv for DriverKv {
    fn get(&self, key: &[u8]) -> Result<Option<Item>, KvError> {
        self.0.get(key).map_err(classify)
    }

    fn set(&self, key: &[u8], value: &[u8], expire_at: u64) -> Result<u64, KvError> {
        let opts = if expire_at == 0 {
            StoreOptions::new()
        } else {
            StoreOptions::new().expiry(Expiry::At(expire_at))
        };
        self.0.set(key, value, opts).map_err(classify)
    }

    fn cas(&self, key: &[u8], value: &[u8], token: u64) -> Result<CasOutcome, KvError> {
        match self.0.cas(key, value, token, StoreOptions::new()) {
            Ok(v) => Ok(CasOutcome::Stored(v)),
            Err(ClientError::CasMismatch { .. }) => Ok(CasOutcome::Exists),
            Err(ClientError::NotFound { .. }) => Ok(CasOutcome::NotFound),
            Err(e) => Err(classify(e)),
        }
    }

    fn delete(&self, key: &[u8]) -> Result<bool, KvError> {
        match self.0.delete(key) {
            Ok(()) => Ok(true),
            Err(ClientError::NotFound { .. }) => Ok(false),
            Err(e) => Err(classify(e)),
        }
    }
}
