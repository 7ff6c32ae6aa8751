import socket
import subprocess
import sys

import pytest


def test_non_loopback_connection_is_blocked():
    with pytest.raises(OSError, match="blocked by the test guard"):
        socket.create_connection(("93.184.216.34", 80), timeout=2)


def test_hostname_resolution_is_blocked():
    with pytest.raises(OSError, match="blocked by the test guard"):
        socket.getaddrinfo("huggingface.co", 443)


def test_loopback_is_allowed():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    client = socket.create_connection(server.getsockname(), timeout=2)
    client.close()
    server.close()


def test_subprocesses_are_guarded_too():
    code = "import socket; socket.create_connection(('1.1.1.1', 53), timeout=2)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "blocked by the test guard" in result.stderr
