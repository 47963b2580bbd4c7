//! The small messages that travel through the queues: doorbells (16 bytes) on the per-attachment
//! queues and hellos (24 bytes) on the accept queue. Bodies never travel here.

/// `mq_msgsize` of every doorbell queue, bytes.
pub const DOORBELL_MSG_BYTES: usize = 16;
/// `mq_msgsize` of the accept queue, bytes.
pub const HELLO_MSG_BYTES: usize = 24;

const DOORBELL_MAGIC: u32 = 0x4242_4B44; // "DKBB"
const HELLO_MAGIC: u32 = 0x4848_4B44; // "DKHH"
/// Version of the handshake; a hello of another version is refused.
pub const HELLO_VERSION: u16 = 1;

/// What a doorbell announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Doorbell {
    /// Frames wait in the ring (any number: one doorbell announces a whole batch).
    Data,
    /// chmpx has accepted the attachment (handshake reply).
    Accepted,
    /// chmpx refused the attachment; the reason code is in the segment header.
    Refused,
    /// chmpx is going away or has lost this attachment: re-attach.
    Reattach,
    /// The process detaches.
    Detach,
}

impl Doorbell {
    fn code(self) -> u8 {
        match self {
            Doorbell::Data => 1,
            Doorbell::Accepted => 2,
            Doorbell::Refused => 3,
            Doorbell::Reattach => 4,
            Doorbell::Detach => 5,
        }
    }

    /// Encodes the doorbell.
    pub fn encode(self) -> [u8; DOORBELL_MSG_BYTES] {
        let mut out = [0u8; DOORBELL_MSG_BYTES];
        out[..4].copy_from_slice(&DOORBELL_MAGIC.to_le_bytes());
        out[4] = self.code();
        out
    }

    /// Decodes a doorbell; `None` for anything else (logged and ignored by callers).
    pub fn decode(buf: &[u8]) -> Option<Doorbell> {
        if buf.len() != DOORBELL_MSG_BYTES || buf[..4] != DOORBELL_MAGIC.to_le_bytes() {
            return None;
        }
        if buf[5..].iter().any(|&b| b != 0) {
            return None;
        }
        Some(match buf[4] {
            1 => Doorbell::Data,
            2 => Doorbell::Accepted,
            3 => Doorbell::Refused,
            4 => Doorbell::Reattach,
            5 => Doorbell::Detach,
            _ => return None,
        })
    }
}

/// What an attached process does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// A dkc-server: receives requests routed by hash and answers them.
    Server,
    /// A client: sends requests and receives responses.
    Client,
}

impl Role {
    pub(crate) fn code(self) -> u8 {
        match self {
            Role::Server => 1,
            Role::Client => 2,
        }
    }

    pub(crate) fn from_code(code: u8) -> Option<Role> {
        match code {
            1 => Some(Role::Server),
            2 => Some(Role::Client),
            _ => None,
        }
    }
}

/// The attach request a process posts on the accept queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hello {
    pub role: Role,
    pub pid: u32,
    pub counter: u64,
}

/// Why a hello was not understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HelloError {
    #[error("hello of {0} bytes, expected {HELLO_MSG_BYTES}")]
    Length(usize),
    #[error("bad hello magic")]
    Magic,
    #[error("hello version {0}, this chmpx speaks {HELLO_VERSION}")]
    Version(u16),
    #[error("unknown role code {0}")]
    Role(u8),
    #[error("reserved hello bytes are not zero")]
    Reserved,
    #[error("pid 0 is not a process")]
    Pid,
}

impl Hello {
    /// Encodes the hello.
    pub fn encode(&self) -> [u8; HELLO_MSG_BYTES] {
        let mut out = [0u8; HELLO_MSG_BYTES];
        out[0..4].copy_from_slice(&HELLO_MAGIC.to_le_bytes());
        out[4..6].copy_from_slice(&HELLO_VERSION.to_le_bytes());
        out[6] = self.role.code();
        out[8..12].copy_from_slice(&self.pid.to_le_bytes());
        out[16..24].copy_from_slice(&self.counter.to_le_bytes());
        out
    }

    /// Decodes a hello, refusing anything malformed.
    pub fn decode(buf: &[u8]) -> Result<Hello, HelloError> {
        if buf.len() != HELLO_MSG_BYTES {
            return Err(HelloError::Length(buf.len()));
        }
        if buf[0..4] != HELLO_MAGIC.to_le_bytes() {
            return Err(HelloError::Magic);
        }
        let version = u16::from_le_bytes([buf[4], buf[5]]);
        if version != HELLO_VERSION {
            return Err(HelloError::Version(version));
        }
        let role = Role::from_code(buf[6]).ok_or(HelloError::Role(buf[6]))?;
        if buf[7] != 0 || buf[12..16].iter().any(|&b| b != 0) {
            return Err(HelloError::Reserved);
        }
        let pid = u32::from_le_bytes([buf[8], buf[9], buf[10], buf[11]]);
        if pid == 0 {
            return Err(HelloError::Pid);
        }
        let mut c = [0u8; 8];
        c.copy_from_slice(&buf[16..24]);
        Ok(Hello {
            role,
            pid,
            counter: u64::from_le_bytes(c),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doorbells_and_hellos_round_trip_and_garbage_is_refused() {
        for d in [
            Doorbell::Data,
            Doorbell::Accepted,
            Doorbell::Refused,
            Doorbell::Reattach,
            Doorbell::Detach,
        ] {
            assert_eq!(Doorbell::decode(&d.encode()), Some(d));
        }
        assert_eq!(Doorbell::decode(&[0u8; 16]), None);
        assert_eq!(Doorbell::decode(b"short"), None);
        let h = Hello {
            role: Role::Server,
            pid: 1234,
            counter: 99,
        };
        assert_eq!(Hello::decode(&h.encode()), Ok(h));
        assert_eq!(Hello::decode(&[0xAA; 24]), Err(HelloError::Magic));
        assert_eq!(Hello::decode(&[0; 3]), Err(HelloError::Length(3)));
        let mut bad = h.encode();
        bad[6] = 9;
        assert_eq!(Hello::decode(&bad), Err(HelloError::Role(9)));
    }
}
