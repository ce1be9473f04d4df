"""Starting a component: its port must be free, else the readiness check would hear another process."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest

from tools.local.stack import LocalStack, Ports, StartError


def test_a_component_whose_port_another_process_listens_on_is_not_started(tmp_path: Path) -> None:
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        stack = LocalStack(tmp_path, tmp_path, Ports(port, port, port))
        with pytest.raises(StartError, match=rf"gateway: 127.0.0.1:{port} is in use .*LOCAL_PORTS"):
            stack._spawn("gateway", [sys.executable, "-c", "pass"], {}, f"http://127.0.0.1:{port}")
    assert stack.components() == []


def test_a_port_just_released_by_a_server_can_be_used_again(tmp_path: Path) -> None:
    """A stopped component leaves its port's closed connections in TIME_WAIT; the next one binds it."""
    with socket.socket() as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        client = socket.create_connection(("127.0.0.1", port))
        conn, _ = server.accept()
        conn.close()  # the server closes first: its end goes to TIME_WAIT
        client.close()
    stack = LocalStack(tmp_path, tmp_path, Ports(port, port, port))
    component = stack._spawn("gateway", [sys.executable, "-c", "pass"], {}, f"http://127.0.0.1:{port}")
    component.popen.wait(10)
