//! The Redis Cluster surface of one node: exact CLUSTER replies, and unchanged cluster clients
//! (redis-cli -c, redis-py's RedisCluster). redis-benchmark --cluster refuses a cluster of one
//! master ("Invalid cluster: 1 node(s)"); it is run against multi-node clusters.

mod common;

use common::{bulk, redis_cli, run_python_client, show, start_autocache, RawClient};
use resp::Frame;

fn myid(client: &mut RawClient) -> String {
    match client.cmd(&["CLUSTER", "MYID"]) {
        Frame::Bulk(id) => String::from_utf8(id.to_vec()).unwrap(),
        other => panic!("CLUSTER MYID answered {other:?}"),
    }
}

#[test]
fn cluster_commands_reply_as_redis_cluster_does() {
    let mut server = start_autocache();
    let port = server.port;
    let mut c = server.client();
    let id = myid(&mut c);
    assert_eq!(id.len(), 40);
    assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(c.cmd(&["CLUSTER", "KEYSLOT", "foo"]), Frame::Integer(12182));
    assert_eq!(
        c.cmd(&["CLUSTER", "KEYSLOT", "{a}x"]),
        Frame::Integer(15495)
    );
    c.cmd(&["SET", "foo", "1"]);
    assert_eq!(
        c.cmd(&["CLUSTER", "COUNTKEYSINSLOT", "12182"]),
        Frame::Integer(1)
    );
    assert_eq!(
        c.cmd(&["CLUSTER", "GETKEYSINSLOT", "12182", "10"]),
        Frame::Array(vec![bulk("foo")])
    );
    assert_eq!(
        c.cmd(&["CLUSTER", "COUNTKEYSINSLOT", "16384"]),
        Frame::error("ERR Invalid slot")
    );
    assert_eq!(
        c.cmd(&["CLUSTER", "GETKEYSINSLOT", "1", "-1"]),
        Frame::error("ERR Invalid slot or number of keys")
    );
    assert_eq!(
        c.cmd(&["CLUSTER", "COUNTKEYSINSLOT", "abc"]),
        Frame::error("ERR value is not an integer or out of range")
    );
    for command in ["READONLY", "READWRITE", "ASKING"] {
        assert_eq!(c.cmd(&[command]), Frame::ok());
    }
    let node = format!("*4\r\n$9\r\n127.0.0.1\r\n:{port}\r\n$40\r\n{id}\r\n*0\r\n");
    assert_eq!(
        show(&c.raw(&[b"CLUSTER", b"SLOTS"])),
        show(format!("*1\r\n*3\r\n:0\r\n:16383\r\n{node}").as_bytes())
    );
    let shard_node = format!(
        "*14\r\n$2\r\nid\r\n$40\r\n{id}\r\n$4\r\nport\r\n:{port}\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n\
         $8\r\nendpoint\r\n$9\r\n127.0.0.1\r\n$4\r\nrole\r\n$6\r\nmaster\r\n\
         $18\r\nreplication-offset\r\n:0\r\n$6\r\nhealth\r\n$6\r\nonline\r\n"
    );
    assert_eq!(
        show(&c.raw(&[b"CLUSTER", b"SHARDS"])),
        show(
            format!("*1\r\n*4\r\n$5\r\nslots\r\n*2\r\n:0\r\n:16383\r\n$5\r\nnodes\r\n*1\r\n{shard_node}")
                .as_bytes()
        )
    );
    let line = format!(
        "{id} 127.0.0.1:{port}@{} myself,master - 0 0 0 connected 0-16383\n",
        port as u32 + 10000
    );
    assert_eq!(c.cmd(&["CLUSTER", "NODES"]), bulk(&line));
    let Frame::Bulk(info) = c.cmd(&["CLUSTER", "INFO"]) else {
        panic!("CLUSTER INFO is not a bulk string")
    };
    let info = String::from_utf8(info.to_vec()).unwrap();
    assert!(
        info.starts_with("cluster_state:ok\r\ncluster_slots_assigned:16384\r\n"),
        "{info}"
    );
    assert_eq!(info.len(), 312, "{info:?}");
    // RESP3 renders the metadata map and shard maps as maps.
    c.cmd(&["HELLO", "3"]);
    let slots3 = c.raw(&[b"CLUSTER", b"SLOTS"]);
    assert!(show(&slots3).ends_with("%0\\r\\n"), "{}", show(&slots3));

    // The node keeps its name across restarts.
    server.kill_hard();
    server.restart();
    assert_eq!(myid(&mut server.client()), id);
}

#[test]
fn redis_cli_in_cluster_mode() {
    let server = start_autocache();
    let run = |args: &[&str]| redis_cli(server.port, &[&["-c"], args].concat());
    assert_eq!(run(&["SET", "{user}:a", "1"]), "OK");
    assert_eq!(run(&["INCR", "{user}:a"]), "2");
    assert_eq!(run(&["GET", "{user}:a"]), "2");
    assert!(run(&["CLUSTER", "INFO"]).contains("cluster_state:ok"));
}

#[test]
fn redis_py_cluster_client() {
    let server = start_autocache();
    run_python_client("redis_py_cluster.py", server.port, "RedisCluster: ok");
}
