"""Real multi-node Ray clusters on this machine: one `ray start --block` per node, each in its
own process group, so a test can SIGKILL one node (a real node failure) or stop them all
without touching anyone else's Ray."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

RAY = str(Path(sys.executable).with_name("ray"))
STARTS = 3  # tries at `ray start` per node


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Node:
    name: str
    process: subprocess.Popen
    log: Path

    def kill(self) -> None:
        """SIGKILL every process of this node: raylet, object store, its workers' parent."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)


@dataclass
class LocalCluster:
    """A head plus worker nodes on 127.0.0.1 with declared (fake) CPUs, GPUs and resources."""

    temp_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="orch-rt-")))
    port: int = field(default_factory=free_port)
    nodes: list[Node] = field(default_factory=list)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def client_env(self) -> dict[str, str]:
        """What a driver needs to connect: the token this cluster's nodes use, named
        explicitly (orch sends a token only to the cluster it is given for)."""
        return {"RAY_AUTH_TOKEN_PATH": str(Path.home() / ".ray" / "auth_token")}

    def add_node(
        self, name: str, *, cpus: float, gpus: int = 0, resources: dict | None = None
    ) -> Node:
        head = not self.nodes
        if head:  # every node runs with token auth; make sure a token exists (never printed)
            subprocess.run([RAY, "get-auth-token", "--generate"], capture_output=True, check=True)
        args = [
            RAY,
            "start",
            "--block",
            "--disable-usage-stats",
            "--node-ip-address",
            "127.0.0.1",
            "--num-cpus",
            str(int(cpus)),
            "--num-gpus",
            str(gpus),
            "--temp-dir",
            str(self.temp_dir),
            "--node-manager-port",
            str(free_port()),
            "--object-manager-port",
            str(free_port()),
            "--dashboard-agent-listen-port",
            str(free_port()),
            "--dashboard-agent-grpc-port",
            str(free_port()),
            "--runtime-env-agent-port",
            str(free_port()),
            "--metrics-export-port",
            str(free_port()),
            "--object-store-memory",
            str(200 * 1024 * 1024),
        ]
        # Below Linux's ephemeral range (32768+), where free_port() picks the other ports.
        base = 10000 + (free_port() % 100) * 200
        args += ["--min-worker-port", str(base), "--max-worker-port", str(base + 199)]
        if resources:
            args += ["--resources", json.dumps(resources)]
        if head:
            args += [
                "--head",
                "--port",
                str(self.port),
                "--include-dashboard",
                "false",
                "--ray-client-server-port",
                str(free_port()),
            ]
        else:
            args += ["--address", self.address]
        for _ in range(STARTS):
            node = self._launch(name, args)
            if self._started(node):
                return node
            # `ray start` gives a joining raylet a fixed 30 s to register with the GCS; on a
            # loaded CI box it sometimes misses that (RPC "Deadline Exceeded") and exits. That
            # is Ray's start-up, not what the tests check: start the node again.
            node.kill()
            self.nodes.remove(node)
        raise RuntimeError(f"ray node {name} did not start:\n{node.log.read_text()[-3000:]}")

    def _launch(self, name: str, args: list[str]) -> Node:
        log = self.temp_dir / f"{name}.log"
        process = subprocess.Popen(
            args,
            stdout=log.open("w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, "ORCH_TEST_NODE": name, "RAY_AUTH_MODE": "token"},
        )
        node = Node(name, process, log)
        self.nodes.append(node)
        return node

    @staticmethod
    def _started(node: Node) -> bool:
        """Wait until the node says it started (True) or its `ray start` exits (False)."""
        deadline = time.time() + 120
        while time.time() < deadline:
            if "Ray runtime started" in node.log.read_text():
                return True
            if node.process.poll() is not None:
                return False
            time.sleep(0.3)
        return False

    def shutdown(self) -> None:
        for node in reversed(self.nodes):
            try:
                os.killpg(node.process.pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
        deadline = time.monotonic() + 10  # one grace period for all nodes, then SIGKILL
        for node in self.nodes:
            try:
                node.process.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                node.kill()
        # Workers live in their own process groups: end the ones of this cluster's session.
        leftover = subprocess.run(
            ["pgrep", "-f", str(self.temp_dir)], capture_output=True, text=True
        ).stdout.split()
        for pid in leftover:
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), signal.SIGKILL)
