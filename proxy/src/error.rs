//! The proxy's error types. A backend failure becomes a RESP error reply for the one request that
//! hit it (`BackendError::reply_text`); only startup errors end the process.

/// Why a request sent to a backend got no reply.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BackendError {
    #[error("could not connect to backend {addr}: {reason}")]
    Connect { addr: String, reason: String },
    #[error("connection to backend {addr} lost")]
    ConnectionLost { addr: String },
    #[error("backend {addr} did not reply in time")]
    Timeout { addr: String },
    #[error("backend {addr} sent a malformed reply")]
    Protocol { addr: String },
    /// The topology took the backend's slots away (a failover) while the request was queued or
    /// in flight: it may or may not have run there, so it is not retried elsewhere.
    #[error("backend {addr} lost its slots with this request in flight; it may not have run")]
    Demoted { addr: String },
}

impl BackendError {
    /// The error reply a client gets (prefix included, no `-`).
    pub fn reply_text(&self) -> String {
        format!("ERR {self}")
    }
}

/// Errors that stop the proxy from starting or running.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("invalid control plane URL {url:?}: {reason}")]
    ControlPlaneUrl { url: String, reason: String },
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error("aclfile: {0}")]
    AclFile(#[from] crate::acl::AclFileError),
}
