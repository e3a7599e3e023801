use std::net::SocketAddr;

use chitchat::transport::{ChannelTransport, Transport, UdpTransport};

/// How gossip messages travel.
#[derive(Clone)]
pub enum Network {
    /// UDP datagrams, one per message: what nodes use.
    Udp,
    /// In-process channels, for tests.
    InMemory(InMemoryNetwork),
}

impl Network {
    pub(crate) fn transport(&self) -> &dyn Transport {
        match self {
            Network::Udp => &UdpTransport,
            Network::InMemory(network) => &network.transport,
        }
    }
}

/// An in-process network whose links can be cut and healed.
#[derive(Clone, Default)]
pub struct InMemoryNetwork {
    transport: ChannelTransport,
}

impl InMemoryNetwork {
    /// Cuts both directions of the link between two gossip addresses.
    pub async fn cut(&self, a: SocketAddr, b: SocketAddr) {
        self.transport.remove_link(a, b).await;
    }

    /// Restores the link between two gossip addresses.
    pub async fn heal(&self, a: SocketAddr, b: SocketAddr) {
        self.transport.add_link(a, b).await;
    }
}
