//! Shared test helpers: real server processes (autocache and redis-server) and a raw RESP
//! client that keeps the exact bytes of each reply.

#![allow(dead_code)]

pub mod cluster;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use resp::Frame;

/// A server process, killed when dropped.
pub struct ServerProcess {
    child: Child,
    pub port: u16,
    pub dir: PathBuf,
    /// The flags it was started with (after the port and data dir), to restart it.
    extra: Vec<String>,
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl ServerProcess {
    /// Opens a client connection.
    pub fn client(&self) -> RawClient {
        RawClient::connect(self.port)
    }

    /// Waits for the process to exit by itself, up to `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Kills the process with SIGKILL (no chance to flush anything) and waits for it to die.
    pub fn kill_hard(&mut self) {
        self.signal(libc::SIGKILL);
        let _ = self.child.wait();
    }

    /// Starts the server again on the same port and data directory (after `kill_hard`).
    pub fn restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child = spawn_autocache(self.port, &self.dir, &self.extra);
        wait_for_port(self.port, &mut self.child);
    }

    /// Sends a signal to the process.
    pub fn signal(&self, signal: i32) {
        unsafe {
            libc::kill(self.child.id() as i32, signal);
        }
    }
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A fresh directory under the system's temp dir, named after `name`.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "autocache-test-{name}-{}-{}",
        std::process::id(),
        free_port()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub fn wait_for_port(port: u16, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("server exited before listening: {status}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("server did not listen on port {port}");
}

/// The command that runs the autocache binary built for this test run as a server on `port`
/// with data in `dir`, logging warnings to the test's stderr (callers may change that).
pub fn autocache_command(port: u16, dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_autocache"));
    command
        .arg("server")
        .args(["--port", &port.to_string()])
        .arg("--data-dir")
        .arg(dir)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    command
}

fn spawn_autocache(port: u16, dir: &Path, extra: &[String]) -> Child {
    autocache_command(port, dir)
        .args(extra)
        .spawn()
        .expect("start autocache")
}

/// Starts the autocache binary built for this test run, with extra flags.
pub fn start_autocache_with(extra: &[&str]) -> ServerProcess {
    start_autocache_at(temp_dir("autocache"), extra)
}

/// Starts autocache with `dir` as its data directory (removed when the server is dropped).
pub fn start_autocache_at(dir: PathBuf, extra: &[&str]) -> ServerProcess {
    let port = free_port();
    let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
    let mut child = spawn_autocache(port, &dir, &extra);
    wait_for_port(port, &mut child);
    ServerProcess {
        child,
        port,
        dir,
        extra,
    }
}

/// Starts autocache with default settings.
pub fn start_autocache() -> ServerProcess {
    start_autocache_with(&[])
}

/// Starts a real redis-server (the Debian package), without persistence.
pub fn start_redis() -> ServerProcess {
    let port = free_port();
    let dir = temp_dir("redis");
    let mut child = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .arg("--dir")
        .arg(&dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect(
            "start redis-server (install the Debian package redis-server; scripts/setup.sh does)",
        );
    wait_for_port(port, &mut child);
    ServerProcess {
        child,
        port,
        dir,
        extra: Vec::new(),
    }
}

/// The `node` crate's directory, read at run time (cargo sets it for test processes): a test
/// binary cargo reuses from another checkout of the same sources must read this checkout.
pub fn manifest_dir() -> String {
    std::env::var("CARGO_MANIFEST_DIR").expect("run under cargo test or nextest")
}

/// Runs redis-cli against `port` with `args` (options first, then the command); returns its
/// trimmed output.
pub fn redis_cli(port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .expect("run redis-cli (scripts/setup.sh installs redis-tools)");
    assert!(out.status.success(), "redis-cli {args:?} failed");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Runs a Python client script from `tests/clients` against `port`; asserts it succeeded and
/// printed `marker`.
pub fn run_python_client(script: &str, port: u16, marker: &str) {
    let path = format!("{}/tests/clients/{script}", manifest_dir());
    let out = Command::new("python3")
        .arg(&path)
        .arg(port.to_string())
        .output()
        .expect("run python3 (scripts/setup.sh installs it and redis-py)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{script} failed:\nstdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(marker),
        "{script} did not print {marker:?}: {stdout}"
    );
}

/// A client that sends commands and returns each reply's exact bytes.
pub struct RawClient {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl RawClient {
    pub fn connect(port: u16) -> RawClient {
        let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream.set_nodelay(true).unwrap();
        RawClient {
            stream,
            buf: Vec::new(),
        }
    }

    /// Encodes a command as a multibulk request.
    pub fn encode(args: &[&[u8]]) -> Vec<u8> {
        let mut out = format!("*{}\r\n", args.len()).into_bytes();
        for arg in args {
            out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
            out.extend_from_slice(arg);
            out.extend_from_slice(b"\r\n");
        }
        out
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    /// Reads one reply, returning its bytes; None if the connection closed first.
    pub fn read_reply_bytes(&mut self) -> Option<Vec<u8>> {
        self.read_reply()
            .unwrap_or_else(|e| panic!("read failed: {e}"))
    }

    fn read_reply(&mut self) -> std::io::Result<Option<Vec<u8>>> {
        loop {
            if let Some((_, used)) = resp::value::parse(&self.buf).expect("server sent valid resp")
            {
                let reply: Vec<u8> = self.buf.drain(..used).collect();
                return Ok(Some(reply));
            }
            let mut chunk = [0u8; 65536];
            match self.stream.read(&mut chunk)? {
                0 => return Ok(None),
                n => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// Sends a command and returns its parsed reply; None if the connection failed (the
    /// server died) before the reply arrived.
    pub fn try_cmd(&mut self, args: &[&str]) -> Option<Frame> {
        let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        self.stream.write_all(&Self::encode(&args)).ok()?;
        let bytes = self.read_reply().ok()??;
        Some(resp::value::parse(&bytes).unwrap().unwrap().0)
    }

    /// Sends a command and returns its reply's bytes.
    pub fn raw(&mut self, args: &[&[u8]]) -> Vec<u8> {
        self.send_raw(&Self::encode(args));
        self.read_reply_bytes()
            .expect("connection closed before the reply")
    }

    /// Sends a command and returns its parsed reply.
    pub fn cmd(&mut self, args: &[&str]) -> Frame {
        let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        let bytes = self.raw(&args);
        resp::value::parse(&bytes).unwrap().unwrap().0
    }

    /// Returns true once the server closed the connection (reads EOF).
    pub fn is_closed(&mut self) -> bool {
        let mut byte = [0u8; 1];
        matches!(self.stream.read(&mut byte), Ok(0))
    }
}

/// A bulk string frame, for assertions.
pub fn bulk(text: &str) -> Frame {
    Frame::Bulk(Bytes::copy_from_slice(text.as_bytes()))
}

/// Renders reply bytes for a failure message.
pub fn show(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).replace("\r\n", "\\r\\n")
}
