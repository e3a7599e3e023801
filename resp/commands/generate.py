#!/usr/bin/env python3
"""Copies COMMAND INFO and COMMAND DOCS of the supported commands from a real redis-server.

Usage: generate.py [--check]

Starts a throwaway redis-server (the Debian package), asks it in RESP3 for every command listed in
supported.txt, keeps only the supported subcommands, sorts subcommands by name (Redis lists them in
hash order, which changes between runs) and writes info.resp and docs.resp, which the resp crate
embeds. With --check it writes nothing and fails if the files are out of date.
"""
import os
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def read_supported():
    names = []
    with open(os.path.join(HERE, "supported.txt")) as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith("#"):
                names.append(line)
    return names


class Reader:
    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def _fill(self):
        chunk = self.sock.recv(1 << 16)
        if not chunk:
            raise EOFError("redis-server closed the connection")
        self.buf += chunk

    def line(self):
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def exact(self, n):
        while len(self.buf) < n + 2:
            self._fill()
        data, self.buf = self.buf[:n], self.buf[n + 2:]
        return data

    def value(self):
        line = self.line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return ("simple", rest)
        if kind == b"-":
            raise RuntimeError(rest.decode())
        if kind == b":":
            return ("int", int(rest))
        if kind == b"_":
            return ("null",)
        if kind == b"$":
            return ("bulk", self.exact(int(rest)))
        if kind == b"=":
            return ("verbatim", self.exact(int(rest)))
        if kind in (b"*", b"~"):
            items = [self.value() for _ in range(int(rest))]
            return ("array" if kind == b"*" else "set", items)
        if kind == b"%":
            return ("map", [(self.value(), self.value()) for _ in range(int(rest))])
        raise RuntimeError("unexpected reply type %r" % kind)


def encode(value):
    kind = value[0]
    if kind == "simple":
        return b"+" + value[1] + b"\r\n"
    if kind == "int":
        return b":%d\r\n" % value[1]
    if kind == "null":
        return b"_\r\n"
    if kind == "bulk":
        return b"$%d\r\n%s\r\n" % (len(value[1]), value[1])
    if kind == "verbatim":
        return b"=%d\r\n%s\r\n" % (len(value[1]), value[1])
    if kind in ("array", "set"):
        marker = b"*" if kind == "array" else b"~"
        return marker + b"%d\r\n" % len(value[1]) + b"".join(encode(v) for v in value[1])
    if kind == "map":
        return b"%%%d\r\n" % len(value[1]) + b"".join(encode(k) + encode(v) for k, v in value[1])
    raise RuntimeError(kind)


def command(sock, reader, *args):
    payload = b"*%d\r\n" % len(args)
    for arg in args:
        arg = arg.encode() if isinstance(arg, str) else arg
        payload += b"$%d\r\n%s\r\n" % (len(arg), arg)
    sock.sendall(payload)
    return reader.value()


def simple_set(*items):
    return ("set", [("simple", i.encode()) for i in items])


def bulk(text):
    return ("bulk", text.encode())


# CLIENT SETINFO arrived in Redis 7.2; clients (redis-py, go-redis, node-redis) send it on every
# connection, so AutoCache answers it. Its metadata below is Redis 7.2's.
SETINFO_INFO = ("array", [
    bulk("client|setinfo"), ("int", -4),
    simple_set("noscript", "loading", "stale"),
    ("int", 0), ("int", 0), ("int", 0),
    simple_set("@slow", "@connection"),
    ("set", []), ("array", []), ("array", []),
])
SETINFO_DOCS = ("map", [
    (bulk("summary"), bulk("Set client or connection specific info.")),
    (bulk("since"), bulk("7.2.0")),
    (bulk("group"), bulk("connection")),
    (bulk("complexity"), bulk("O(1)")),
    (bulk("arguments"), ("array", [("map", [
        (bulk("name"), bulk("attr")),
        (bulk("type"), bulk("oneof")),
        (bulk("arguments"), ("array", [
            ("map", [(bulk("name"), bulk("libname")), (bulk("type"), bulk("string")),
                     (bulk("token"), bulk("LIB-NAME"))]),
            ("map", [(bulk("name"), bulk("libver")), (bulk("type"), bulk("string")),
                     (bulk("token"), bulk("LIB-VER"))]),
        ])),
    ])])),
])


def generate(sock, reader):
    supported = read_supported()
    containers = {}
    for name in supported:
        top, _, sub = name.partition("|")
        containers.setdefault(top, set())
        if sub:
            containers[top].add(name)
    command(sock, reader, "HELLO", "3")
    infos, docs = [], []
    for top in sorted(containers):
        subs = containers[top]
        info = command(sock, reader, "COMMAND", "INFO", top)[1][0]
        fields = list(info[1])
        if subs:
            kept = [s for s in fields[9][1] if s[1][0][1].decode() in subs]
            if "client|setinfo" in subs:
                kept.append(SETINFO_INFO)
            kept.sort(key=lambda s: s[1][0][1])
            fields[9] = ("array", kept)
        infos.append(("array", fields))

        doc_name, doc = command(sock, reader, "COMMAND", "DOCS", top)[1][0]
        doc_fields = list(doc[1])
        for i, (k, v) in enumerate(doc_fields):
            if k[1] == b"subcommands":
                kept = [(n, d) for n, d in v[1] if n[1].decode() in subs]
                if "client|setinfo" in subs:
                    kept.append((bulk("client|setinfo"), SETINFO_DOCS))
                kept.sort(key=lambda nd: nd[0][1])
                doc_fields[i] = (k, ("map", kept))
        docs.append((doc_name, ("map", doc_fields)))
    return encode(("array", infos)), encode(("map", docs))


def main():
    check = "--check" in sys.argv
    with tempfile.TemporaryDirectory() as tmp:
        port_sock = socket.socket()
        port_sock.bind(("127.0.0.1", 0))
        port = port_sock.getsockname()[1]
        port_sock.close()
        server = subprocess.Popen(
            ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", tmp],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            for _ in range(100):
                try:
                    sock = socket.create_connection(("127.0.0.1", port))
                    break
                except OSError:
                    time.sleep(0.05)
            else:
                raise RuntimeError("redis-server did not start")
            info, docs = generate(sock, Reader(sock))
        finally:
            server.terminate()
            server.wait()
    outputs = {"info.resp": info, "docs.resp": docs}
    stale = []
    for name, data in outputs.items():
        path = os.path.join(HERE, name)
        if check:
            with open(path, "rb") as f:
                if f.read() != data:
                    stale.append(name)
        else:
            with open(path, "wb") as f:
                f.write(data)
    if stale:
        print("out of date: %s (run resp/commands/generate.py)" % ", ".join(stale))
        sys.exit(1)


if __name__ == "__main__":
    main()
