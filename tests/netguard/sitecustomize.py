"""Network guard, imported at start-up by every Python process the tests launch.

Tests put this folder on PYTHONPATH with CLUSTERQA_NETGUARD=1 so that servers and
CLI runs started in subprocesses are guarded too. Any connection to a non-loopback
address raises at once, so a hidden download fails loudly instead of hanging.
"""

import os

if os.environ.get("CLUSTERQA_NETGUARD") == "1":
    import ipaddress
    import socket

    class NetworkBlocked(OSError):
        pass

    def _is_loopback(host) -> bool:
        if host is None:
            return True
        if isinstance(host, bytes):
            host = host.decode()
        host = str(host).strip("[]")
        if host in ("localhost", ""):
            return True
        try:
            return ipaddress.ip_address(host.split("%")[0]).is_loopback
        except ValueError:
            return False  # a host name other than localhost

    def _check(address):
        if isinstance(address, tuple) and address:
            if not _is_loopback(address[0]):
                raise NetworkBlocked(f"network access blocked by the test guard: {address!r}")

    _connect = socket.socket.connect
    _connect_ex = socket.socket.connect_ex
    _sendto = socket.socket.sendto
    _getaddrinfo = socket.getaddrinfo

    def connect(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6):
            _check(address)
        return _connect(self, address)

    def connect_ex(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6):
            _check(address)
        return _connect_ex(self, address)

    def sendto(self, data, *args):
        if self.family in (socket.AF_INET, socket.AF_INET6):
            _check(args[-1])
        return _sendto(self, data, *args)

    def getaddrinfo(host, *args, **kwargs):
        if not _is_loopback(host):
            raise NetworkBlocked(f"name resolution blocked by the test guard: {host!r}")
        return _getaddrinfo(host, *args, **kwargs)

    socket.socket.connect = connect
    socket.socket.connect_ex = connect_ex
    socket.socket.sendto = sendto
    socket.getaddrinfo = getaddrinfo
