"""Loaded by every Python process the tests start (PYTHONPATH): blocks network connections, so a
test fails if any code path other than --download or timm's in1k weights tries to go online."""

import socket

_connect, _connect_ex = socket.socket.connect, socket.socket.connect_ex


def _guard(sock, address):
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        raise OSError(f"network access blocked by the test suite (tried to reach {address!r})")


def _blocked_connect(self, address):
    _guard(self, address)
    return _connect(self, address)


def _blocked_connect_ex(self, address):
    _guard(self, address)
    return _connect_ex(self, address)


socket.socket.connect = _blocked_connect
socket.socket.connect_ex = _blocked_connect_ex
