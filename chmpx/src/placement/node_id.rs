//! [`NodeId`]: the stable identity of a server node.

use std::fmt;
use std::sync::Arc;

/// A server node's identity, "host:ctlport" as written in the config
/// (e.g. "127.0.0.1:8021"). Its bytes are hashed into the placement weights,
/// so it must be spelled the same on every node: it comes from the shared
/// config file, never from a local lookup.
///
/// Cheap to clone (a shared string); ordered by its text.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId(Arc<str>);

impl NodeId {
    /// A node id from any text (normally "host:ctlport").
    pub fn new(text: &str) -> Self {
        NodeId(Arc::from(text))
    }

    /// The id of the node at `host` with control port `ctlport`.
    pub fn from_host_port(host: &str, ctlport: u16) -> Self {
        NodeId::new(&format!("{host}:{ctlport}"))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({})", &self.0)
    }
}

impl From<&str> for NodeId {
    fn from(text: &str) -> Self {
        NodeId::new(text)
    }
}

impl serde::Serialize for NodeId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for NodeId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Ok(NodeId(Arc::from(text)))
    }
}
