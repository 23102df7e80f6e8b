"""Node-to-node messages for jobs run by distcomp (standard library only).

    import distcomp_msg as dm
    dm.send((dm.node_id + 1) % dm.n_node, b"hello")     # bytes or str
    data = dm.recv((dm.node_id - 1) % dm.n_node)         # bytes
    src, data = dm.recv_any()
    dm.barrier()
    data = dm.broadcast(0, b"x" if dm.node_id == 0 else None)

Every failure raises distcomp_msg.MsgError with a one-line message. The module-level functions
share one connection to the local worker; make a Client per thread for threaded programs.

Socket protocol (PROTOCOL.md "Messages"): request = op u8, 0 0 0, peer u32, length u64 (big
endian), payload; reply = status u8 (0 ok, 1 error), 0 0 0, peer u32, length u64, payload (the
message, or the error text). Ops: 1 send, 2 recv, 3 recv_any, 4 barrier.
"""

import os
import socket
import struct

__all__ = ["MsgError", "Client", "node_id", "n_node", "n_nodes", "rank", "size",
           "send", "recv", "recv_any", "barrier", "broadcast"]

_HEADER = struct.Struct(">B3xIQ")
_MAX_MESSAGE = 1 << 30


class MsgError(Exception):
    """A messaging operation failed (no endpoint, a peer's job ended, a failed barrier)."""


def _env_int(*names):
    for name in names:
        value = os.environ.get(name, "")
        if value.isdigit():
            return int(value)
    return -1


class Client:
    """One connection to the job's endpoint at $DISTCOMP_MSG_SOCKET."""

    def __init__(self, path=None):
        self.node_id = _env_int("DISTCOMP_RANK", "DISTCOMP_NODE_ID")
        self.n_nodes = _env_int("DISTCOMP_SIZE", "DISTCOMP_N_NODES")
        path = path or os.environ.get("DISTCOMP_MSG_SOCKET", "")
        if not path or self.node_id < 0 or self.n_nodes <= 0:
            raise MsgError("distcomp messages: DISTCOMP_MSG_SOCKET is not set "
                           "(not run by a distcomp worker with messaging?)")
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            # "@name" is an abstract socket (what the worker uses): a NUL, then the name.
            self._sock.connect("\0" + path[1:] if path.startswith("@") else path)
        except OSError as e:
            self._sock.close()
            raise MsgError("distcomp messages: cannot connect to %s: %s" % (path, e.strerror)) from None

    def close(self):
        self._sock.close()

    def _check(self, node, what):
        if not isinstance(node, int) or not 0 <= node < self.n_nodes:
            raise MsgError("%s: no node %r (the run has %d nodes)" % (what, node, self.n_nodes))

    def _request(self, op, peer, payload=b""):
        header = _HEADER.pack(op, peer, len(payload))
        try:
            if len(payload) < 65536:
                self._sock.sendall(header + payload)  # one write: small messages are latency
            else:
                self._sock.sendall(header)  # no copy of a big payload
                self._sock.sendall(payload)
        except OSError as e:
            raise MsgError("distcomp messages: connection to the worker lost: %s" % e) from None

    def _read(self, n):
        buf = bytearray(n)
        view = memoryview(buf)
        got = 0
        while got < n:
            k = self._sock.recv_into(view[got:], n - got)
            if k == 0:
                raise MsgError("distcomp messages: connection to the worker lost (the worker "
                               "ended the job, or a message was cut short because its sender ended)")
            got += k
        return bytes(buf)

    def _reply(self, what):
        status, peer, length = _HEADER.unpack(self._read(_HEADER.size))
        if length > _MAX_MESSAGE:
            raise MsgError("%s: reply of impossible length" % what)
        payload = self._read(length) if length else b""
        if status != 0:
            raise MsgError(payload.decode("utf-8", "replace"))
        return peer, payload

    def send(self, dst, data):
        """Returns once the local worker accepted `data` (bytes or str) for node `dst`."""
        self._check(dst, "send")
        if isinstance(data, str):
            data = data.encode("utf-8")
        self._request(1, dst, bytes(data))
        self._reply("send")

    def recv(self, src):
        """The next message from node `src`, as bytes."""
        self._check(src, "recv")
        self._request(2, src)
        return self._reply("recv")[1]

    def recv_any(self):
        """(source, bytes) of the next message from any node."""
        self._request(3, 0)
        return self._reply("recv_any")

    def barrier(self):
        """Returns when every node entered the barrier; raises if one ended first."""
        self._request(4, 0)
        self._reply("barrier")

    def broadcast(self, root, data=None):
        """Root sends `data` to every other node; every node returns root's data (bytes)."""
        self._check(root, "broadcast")
        if self.node_id == root:
            if isinstance(data, str):
                data = data.encode("utf-8")
            data = bytes(data or b"")
            for node in range(self.n_nodes):
                if node != root:
                    self.send(node, data)
            return data
        return self.recv(root)


_client = None


def _default():
    global _client
    if _client is None:
        _client = Client()
    return _client


node_id = rank = _env_int("DISTCOMP_RANK", "DISTCOMP_NODE_ID")
n_node = n_nodes = size = _env_int("DISTCOMP_SIZE", "DISTCOMP_N_NODES")


def send(dst, data):
    _default().send(dst, data)


def recv(src):
    return _default().recv(src)


def recv_any():
    return _default().recv_any()


def barrier():
    _default().barrier()


def broadcast(root, data=None):
    return _default().broadcast(root, data)
