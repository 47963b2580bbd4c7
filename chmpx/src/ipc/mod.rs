//! Low-level local IPC wrappers for the attach transport: POSIX message queues that close on
//! drop ([`mq::MessageQueue`]), shared-memory segments that unmap (and optionally unlink) on drop
//! ([`shm::SharedMemory`]), the single-producer/single-consumer byte ring that lives inside a
//! segment ([`ring`]), and the kernel limits that decide what can be created ([`limits`]).
//!
//! This module knows nothing of messages, routes or attachments: it moves bytes and wraps
//! syscalls. It must never depend on `attach`, `config`, `placement` or `link`.

mod error;
pub mod limits;
pub mod mq;
pub mod ring;
pub mod shm;

pub use error::{validate_object_name, IpcError, OBJECT_NAME_LEN_MAX};
