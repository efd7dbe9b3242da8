"""A real AWS endpoint for the tests: moto_server (moto[server]) behind a thin HTTP front.

moto_server runs as its own process and answers S3, SageMaker and CloudWatch Logs over HTTP; clients
reach it through AWS_ENDPOINT_URL, exactly as they would reach AWS. The front forwards every request
to it unchanged, with two additions moto cannot give:
- StopTrainingJob: moto has no such operation. The front answers it as SageMaker does (an empty JSON
  object, or ValidationException when the job does not exist, which it asks moto) and records it.
- Faults on demand (fail()): a 5xx with an HTML body, throttling, an expired token, as AWS sends them.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from ports import free_port

REGION = "us-west-2"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing"}
STOP_TARGET = "SageMaker.StopTrainingJob"


@dataclass
class Fault:
    """Answer `times` matching requests with this status, body and content type instead of forwarding."""

    match: str
    """Substring of the X-Amz-Target header (JSON APIs) or of the path (S3), e.g. 'DescribeTrainingJob'."""
    status: int
    body: bytes
    content_type: str = "text/html"
    times: int = 1_000_000
    headers: dict = field(default_factory=dict)


class MotoEndpoint:
    """moto_server plus the front; url is what AWS_ENDPOINT_URL gets."""

    def __init__(self):
        self.moto_port = free_port()
        moto_server = Path(sys.executable).parent / "moto_server"
        self.process = subprocess.Popen([str(moto_server), "-H", "127.0.0.1", "-p", str(self.moto_port)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.faults: list[Fault] = []
        self.stopped: list[str] = []
        self.requests: list[str] = []
        endpoint = self

        class Front(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def _body(self) -> bytes:
                """The request body, sent with a Content-Length or chunked (aiobotocore/s3fs uploads)."""
                if "chunked" not in self.headers.get("Transfer-Encoding", "").lower():
                    length = int(self.headers.get("Content-Length") or 0)
                    return self.rfile.read(length) if length else b""
                chunks = []
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                            pass  # trailers
                        return b"".join(chunks)
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()

            def _handle(self):
                body = self._body()
                target = self.headers.get("X-Amz-Target", "")
                endpoint.requests.append(target or f"{self.command} {self.path}")
                for fault in endpoint.faults:
                    if fault.times > 0 and (fault.match in target or (not target and fault.match in self.path)):
                        fault.times -= 1
                        return self._answer(fault.status, fault.body, fault.content_type, fault.headers)
                if target == STOP_TARGET:
                    return self._stop(body)
                headers = {k: v for k, v in self.headers.items() if k.lower() != "transfer-encoding"}
                headers["Content-Length"] = str(len(body))
                status, headers, answer = endpoint.forward(self.command, self.path, headers, body)
                self._answer(status, answer, None, headers)

            def _stop(self, body: bytes):
                name = json.loads(body or b"{}").get("TrainingJobName", "")
                status, _, answer = endpoint.forward("POST", "/", {
                    "X-Amz-Target": "SageMaker.DescribeTrainingJob", "Content-Type": "application/x-amz-json-1.1",
                    "Authorization": self.headers.get("Authorization", "")}, json.dumps({"TrainingJobName": name})
                    .encode())
                if status != 200:
                    return self._answer(400, json.dumps({"__type": "ValidationException",
                                                         "message": "Requested resource not found."}).encode(),
                                        "application/x-amz-json-1.1", {})
                endpoint.stopped.append(name)
                return self._answer(200, b"{}", "application/x-amz-json-1.1", {})

            def _answer(self, status, body, content_type, headers):
                self.send_response(status)
                sent = {k.lower() for k in headers}
                for key, value in headers.items():
                    if key.lower() not in ("transfer-encoding", "content-length", "connection"):
                        self.send_header(key, value)
                if content_type and "content-type" not in sent:
                    self.send_header("Content-Type", content_type)
                upstream = {k.lower(): v for k, v in headers.items()}.get("content-length")
                # a HEAD answer has no body but the object's length (S3 HeadObject: clients read the size there)
                self.send_header("Content-Length", upstream if self.command == "HEAD" and upstream else str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Front)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._wait_ready()

    def forward(self, method: str, path: str, headers: dict, body: bytes) -> tuple[int, dict, bytes]:
        connection = http.client.HTTPConnection("127.0.0.1", self.moto_port, timeout=60)
        # moto reads the Host header to tell S3 virtual-host requests from path-style ones: keep it.
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        answer = response.read()
        connection.close()
        return response.status, dict(response.getheaders()), answer

    def _wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError("moto_server exited at start")
            try:
                with socket.create_connection(("127.0.0.1", self.moto_port), timeout=1):
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("moto_server did not start")

    def env(self) -> dict[str, str]:
        """Variables that point boto3 (and the S3 CRT client) at this endpoint with test credentials."""
        return {**CREDENTIALS, "AWS_ENDPOINT_URL": self.url, "AWS_DEFAULT_REGION": REGION,
                "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull}

    def fail(self, match: str, status: int, body: str, content_type: str = "text/html", times: int = 1_000_000):
        self.faults.append(Fault(match, status, body.encode(), content_type, times))

    def reset(self) -> None:
        """Forget faults and recorded calls, and empty moto (its reset API)."""
        self.faults.clear()
        self.stopped.clear()
        self.requests.clear()
        self.forward("POST", "/moto-api/reset", {}, b"")

    def close(self) -> None:
        self.server.shutdown()
        self.process.terminate()
        self.process.wait(timeout=30)
