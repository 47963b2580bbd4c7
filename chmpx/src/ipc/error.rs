//! Errors of the IPC wrappers, and the rule for POSIX object names.

use super::limits::MqLimit;

/// NAME_MAX: the longest object name after the leading slash, bytes.
pub const OBJECT_NAME_LEN_MAX: usize = 255;

/// What went wrong creating or using a queue or a segment.
#[derive(Debug, thiserror::Error)]
pub enum IpcError {
    /// A kernel limit stopped the creation of a queue; the text says which and how to raise it.
    #[error("cannot create message queue {name}: {limit}")]
    Limit { name: String, limit: MqLimit },
    /// The name breaks the POSIX rules (one leading slash, no other slash, at most NAME_MAX).
    #[error("invalid IPC object name {name:?}: {reason}")]
    InvalidName { name: String, reason: &'static str },
    /// The object to open does not exist.
    #[error("{name} does not exist")]
    NotFound { name: String },
    /// `O_EXCL` creation found an object of that name.
    #[error("{name} already exists (left by another process?)")]
    Exists { name: String },
    /// A segment is smaller than its header says or than the caller needs.
    #[error("shared memory {name} is {actual} bytes, expected at least {expected}")]
    TooSmall {
        name: String,
        actual: u64,
        expected: u64,
    },
    /// Any other system-call failure.
    #[error("{op} on {name} failed: {source}")]
    Os {
        op: &'static str,
        name: String,
        source: std::io::Error,
    },
}

impl IpcError {
    /// Builds an [`IpcError::Os`] (or `NotFound`/`Exists`) from the current `errno`.
    pub(crate) fn last_os(op: &'static str, name: &str) -> Self {
        let source = std::io::Error::last_os_error();
        match source.raw_os_error() {
            Some(libc::ENOENT) => IpcError::NotFound {
                name: name.to_string(),
            },
            Some(libc::EEXIST) => IpcError::Exists {
                name: name.to_string(),
            },
            _ => IpcError::Os {
                op,
                name: name.to_string(),
                source,
            },
        }
    }
}

/// Checks a shm/mq name: exactly one leading slash, no other slash, no NUL, 1..=NAME_MAX bytes.
pub fn validate_object_name(name: &str) -> Result<(), IpcError> {
    let bad = |reason| {
        Err(IpcError::InvalidName {
            name: name.to_string(),
            reason,
        })
    };
    let Some(rest) = name.strip_prefix('/') else {
        return bad("must start with '/'");
    };
    if rest.is_empty() {
        return bad("empty after the leading '/'");
    }
    if rest.len() > OBJECT_NAME_LEN_MAX {
        return bad("longer than NAME_MAX (255) bytes");
    }
    if rest.contains('/') {
        return bad("contains a second '/'");
    }
    if rest.contains('\0') {
        return bad("contains a NUL byte");
    }
    if rest == "." || rest == ".." {
        return bad("is '.' or '..'");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_names_follow_posix_rules() {
        assert!(validate_object_name("/dkc.a.8021.accept").is_ok());
        for bad in [
            "dkc",
            "/",
            "/a/b",
            "/a\0b",
            "/..",
            &format!("/{}", "x".repeat(256)),
        ] {
            assert!(validate_object_name(bad).is_err(), "{bad:?} accepted");
        }
        assert!(validate_object_name(&format!("/{}", "x".repeat(255))).is_ok());
    }
}
