"""The README's code blocks, read and run as a user would (tests/test_readme.py).

Every ```sh and ```python block in README.md is preceded by a marker comment:

- ``<!-- doctest: NAME -->``: run by the suite in scenario NAME (blocks of one scenario run in
  README order in one folder, so a server a block starts is there for the next block);
- ``<!-- doctest: skip: REASON -->``: not runnable here, for the reason given (an AWS account,
  a Docker engine, the suite itself).

A shell block runs line by line (backslash continuations joined) through bash, as typed into
a terminal: a command that serves (``clipwatch serve``, ``review``, ``broker``, ``worker``,
``bridge``, or a line ending in ``&``) is started in the background and waited for (its
``--port`` answering); every other command must exit 0. Placeholders a reader would fill in
(a bucket, a folder of segments, a port) are substituted by the scenario, and so are sizes that
would make a recipe run for an hour (``--clips-per-class 250`` → a handful); the commands,
flags and their order are the README's own.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
MARKER = re.compile(r"<!--\s*doctest:\s*(.+?)\s*-->")
SERVING = re.compile(r"^(\S*/)?clipwatch (serve|review|broker|worker|bridge)(\s|$)")


@dataclass(frozen=True)
class Block:
    lang: str
    code: str
    line: int  # where the block starts in README.md
    marker: str | None

    @property
    def scenario(self) -> str | None:
        return None if self.marker is None or self.marker.startswith("skip") else self.marker

    @property
    def skip_reason(self) -> str | None:
        if self.marker and self.marker.startswith("skip"):
            return self.marker.partition(":")[2].strip()
        return None


def readme_blocks(text: str | None = None) -> list[Block]:
    lines = (README.read_text() if text is None else text).splitlines()
    blocks, i = [], 0
    while i < len(lines):
        fence = re.match(r"^```(\w*)\s*$", lines[i])
        if not fence:
            i += 1
            continue
        start = i
        j = i + 1
        while j < len(lines) and not lines[j].startswith("```"):
            j += 1
        previous = next((lines[k] for k in range(start - 1, -1, -1) if lines[k].strip()), "")
        marker = MARKER.search(previous)
        blocks.append(Block(fence.group(1), "\n".join(lines[start + 1:j]), start + 1,
                            marker.group(1) if marker else None))
        i = j + 1
    return blocks


def commands(code: str) -> list[str]:
    """Shell lines with continuations joined; blank and comment-only lines dropped."""
    out, pending = [], ""
    for raw in code.splitlines():
        line = pending + raw
        if line.rstrip().endswith("\\"):
            pending = line.rstrip()[:-1] + " "
            continue
        pending = ""
        if line.strip() and not line.strip().startswith("#"):
            out.append(line.strip())
    return out


def _without_comment(command: str) -> str:
    """The command without a trailing `# …` comment (a # inside quotes or a word is kept)."""
    quote = None
    for i, ch in enumerate(command):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or command[i - 1].isspace()):
            return command[:i].rstrip()
    return command


@dataclass
class Run:
    """One scenario's terminal: a working folder, the environment, the servers it started."""
    cwd: Path
    env: dict
    substitutions: list[tuple[str, str]] = field(default_factory=list)
    timeout_s: float = 600.0
    one_server: bool = False  # each serving line is an alternative to the one before (same port)
    servers: list[subprocess.Popen] = field(default_factory=list)
    outputs: list[tuple[str, str]] = field(default_factory=list)  # (command, stdout)

    def fill(self, code: str) -> str:
        for old, new in self.substitutions:
            code = code.replace(old, new)
        return code

    def block(self, block: Block) -> None:
        code = self.fill(block.code)
        if block.lang == "python":
            self._check(subprocess.run([sys.executable, "-c", code], cwd=self.cwd, env=self.env,
                                       capture_output=True, text=True, timeout=self.timeout_s),
                        f"README.md:{block.line} (python block)", code)
            return
        for command in commands(code):
            command = _without_comment(command).rstrip()
            if command.endswith("&") or SERVING.match(command):
                self._serve(command.rstrip("&").strip(), block)
            else:
                self._check(subprocess.run(["bash", "-o", "pipefail", "-c", command], cwd=self.cwd, env=self.env,
                                           capture_output=True, text=True, timeout=self.timeout_s),
                            f"README.md:{block.line}", command)

    def _check(self, proc: subprocess.CompletedProcess, where: str, command: str) -> None:
        assert proc.returncode == 0, (f"{where}: `{command}` exited {proc.returncode}\n"
                                      f"stdout: {proc.stdout[-2000:]}\nstderr: {proc.stderr[-3000:]}")
        self.outputs.append((command, proc.stdout))

    def _serve(self, command: str, block: Block) -> None:
        if self.one_server:
            self.stop()
        log = self.cwd / f"server-{len(self.servers)}.log"
        proc = subprocess.Popen(["bash", "-c", f"exec {command}"], cwd=self.cwd, env=self.env,
                                stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True)
        self.servers.append(proc)
        port = re.search(r"--port[ =](\d+)", command)
        started = time.monotonic()
        deadline = started + self.timeout_s
        while True:
            assert proc.poll() is None, (f"README.md:{block.line}: `{command}` exited {proc.returncode}\n"
                                         f"{log.read_text()[-3000:]}")
            if port is None:  # a worker or bridge: serving once it has run a moment without failing
                if time.monotonic() > started + 3:
                    return
            else:
                try:
                    socket.create_connection(("127.0.0.1", int(port.group(1))), timeout=0.5).close()
                    return
                except OSError:
                    pass
            assert time.monotonic() < deadline, f"README.md:{block.line}: `{command}` did not serve in time"
            time.sleep(0.2)

    def output_of(self, fragment: str) -> str:
        return next(out for command, out in reversed(self.outputs) if fragment in command)

    def stop(self) -> None:
        for proc in self.servers:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.servers:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)
