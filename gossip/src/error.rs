/// Why starting or driving gossip failed.
#[derive(Debug, thiserror::Error)]
pub enum GossipError {
    #[error("gossip could not start on {addr}: {reason}")]
    Start {
        addr: std::net::SocketAddr,
        reason: String,
    },
    #[error("gossip did not stop cleanly: {0}")]
    Shutdown(String),
}
