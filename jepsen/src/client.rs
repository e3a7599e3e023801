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

/// Connections to the cluster's nodes. Every operation starts at the process's home node and
/// follows MOVED within the operation (a redirected command was not applied, so sending it on
/// is the same operation), as Jepsen binds each client to one node: a node that answers what
/// it should have redirected is then caught.
pub struct Client {
    home: SocketAddrV4,
    connections: HashMap<SocketAddrV4, redis::Connection>,
}

/// Redirections followed within one operation.
const MAX_REDIRECTS: usize = 3;

impl Client {
    pub fn new(home: SocketAddrV4) -> Client {
        Client {
            home,
            connections: HashMap::new(),
        }
    }

    /// The node operations start at.
    pub fn home(&self) -> SocketAddrV4 {
        self.home
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

    /// Sends one command to `at`, following MOVED (and updating `at`) when `follow`.
    pub fn send(&mut self, at: &mut SocketAddrV4, follow: bool, command: &redis::Cmd) -> Reply {
        self.send_with(at, follow, |connection| command.query(connection))
    }

    /// Sends a pipeline (a MULTI/EXEC transaction when atomic) to `at`, without following.
    pub fn send_pipeline(&mut self, at: SocketAddrV4, pipeline: &redis::Pipeline) -> Reply {
        self.send_with(&mut { at }, false, |connection| pipeline.query(connection))
    }

    fn send_with(
        &mut self,
        at: &mut SocketAddrV4,
        follow: bool,
        send: impl Fn(&mut redis::Connection) -> redis::RedisResult<redis::Value>,
    ) -> Reply {
        let mut hops = 0;
        loop {
            let node = *at;
            let connection = match self.connect(node) {
                Ok(connection) => connection,
                // Nothing was sent.
                Err(e) => return Reply::Fail(e),
            };
            let error = match send(connection) {
                Ok(value) => return Reply::Ok(value),
                Err(error) => error,
            };
            if let Some(addr) = error.redirect_node().and_then(|(a, _)| a.parse().ok()) {
                if follow && hops < MAX_REDIRECTS {
                    hops += 1;
                    *at = addr;
                    continue;
                }
            }
            if certainly_not_applied(&error) {
                return Reply::Fail(error.to_string());
            }
            // The connection's state is unknown: start afresh.
            self.connections.remove(&node);
            return Reply::Unknown(error.to_string());
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
