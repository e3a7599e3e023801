//! One harness process's connection to the cluster, and how a reply becomes an outcome.
//!
//! AutoCache's error replies say whether a command certainly had no effect (MOVED, ASK,
//! CLUSTERDOWN, TRYAGAIN, CROSSSLOT, WRONGTYPE, ...: `fail`) or whether its outcome is unknown
//! (UNCERTAIN: `info`). A lost connection or a timeout after the command was sent is unknown
//! too; a connection that could not be made sent nothing, so that is a `fail`.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::net::SocketAddrV4;
use std::time::Duration;

use crate::history::Value;

/// How long a reply may take: more than the server's own 10 s write timeout, after which it
/// answers UNCERTAIN itself.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(15);

/// What became of one command.
#[derive(Clone, Debug, PartialEq)]
pub enum Reply {
    Ok(redis::Value),
    /// Certainly not applied; why.
    Fail(String),
    /// May or may not have applied; why.
    Unknown(String),
}

/// Error codes after which the command certainly had no effect.
fn certainly_not_applied(error: &redis::RedisError) -> bool {
    match error.code() {
        Some("UNCERTAIN") => false,
        // Every other error reply is an answer from a node that did not apply the command.
        Some(_) => true,
        None => false,
    }
}

/// Connections to the cluster's nodes, routing each key to the node that last claimed it
/// (learnt from MOVED, as a cluster client does).
pub struct Client {
    /// Where keys with no known route go.
    first: SocketAddrV4,
    routes: HashMap<String, SocketAddrV4>,
    connections: HashMap<SocketAddrV4, redis::Connection>,
}

impl Client {
    pub fn new(first: SocketAddrV4) -> Client {
        Client {
            first,
            routes: HashMap::new(),
            connections: HashMap::new(),
        }
    }

    fn connect(&mut self, node: SocketAddrV4) -> Result<&mut redis::Connection, String> {
        if let Entry::Vacant(vacant) = self.connections.entry(node) {
            let client =
                redis::Client::open(format!("redis://{node}/")).map_err(|e| e.to_string())?;
            let connection = client
                .get_connection_with_timeout(Duration::from_secs(2))
                .map_err(|e| format!("connect to {node}: {e}"))?;
            connection
                .set_read_timeout(Some(REPLY_TIMEOUT))
                .map_err(|e| e.to_string())?;
            connection
                .set_write_timeout(Some(REPLY_TIMEOUT))
                .map_err(|e| e.to_string())?;
            vacant.insert(connection);
        }
        Ok(self.connections.get_mut(&node).expect("just connected"))
    }

    /// Sends one command about `key` and classifies the reply.
    pub fn send(&mut self, key: &str, command: &redis::Cmd) -> Reply {
        self.send_with(key, |connection| command.query(connection))
    }

    /// Sends a pipeline about `key` (a MULTI/EXEC transaction when atomic).
    pub fn send_pipeline(&mut self, key: &str, pipeline: &redis::Pipeline) -> Reply {
        self.send_with(key, |connection| pipeline.query(connection))
    }

    fn send_with(
        &mut self,
        key: &str,
        send: impl FnOnce(&mut redis::Connection) -> redis::RedisResult<redis::Value>,
    ) -> Reply {
        let node = self.routes.get(key).copied().unwrap_or(self.first);
        let connection = match self.connect(node) {
            Ok(connection) => connection,
            // Nothing was sent.
            Err(e) => {
                // Try another node next time: this one may be down.
                self.routes.remove(key);
                return Reply::Fail(e);
            }
        };
        match send(connection) {
            Ok(value) => Reply::Ok(value),
            Err(error) => {
                if let Some(addr) = error.redirect_node().and_then(|(a, _)| a.parse().ok()) {
                    self.routes.insert(key.to_string(), addr);
                }
                if certainly_not_applied(&error) {
                    Reply::Fail(error.to_string())
                } else {
                    // The connection's state is unknown: start afresh.
                    self.connections.remove(&node);
                    Reply::Unknown(error.to_string())
                }
            }
        }
    }
}

/// A bulk string or nil as an integer register value.
pub fn register_value(value: &redis::Value) -> Result<Value, String> {
    match value {
        redis::Value::Nil => Ok(Value::Nil),
        redis::Value::BulkString(bytes) => std::str::from_utf8(bytes)
            .ok()
            .and_then(|s| s.parse().ok())
            .map(Value::Int)
            .ok_or_else(|| format!("{value:?} is not an integer")),
        redis::Value::Int(i) => Ok(Value::Int(*i)),
        other => Err(format!("unexpected reply {other:?}")),
    }
}
