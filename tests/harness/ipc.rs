//! Removal of the POSIX queues and shared-memory segments of one cluster (GROUP): chmpx's
//! testkit owns the one copy (a SIGKILLed chmpx cannot clean up after itself).

pub use chmpx::testkit::ipc::remove_ipc_objects;
