"""`nas serve`: a model directory behind an HTTP endpoint on Ray Serve.

    serve_model("export/", host="127.0.0.1", port=8000, replicas=2)   # blocks until Ctrl-C or SIGTERM

    curl --data-binary @cat.png 'http://127.0.0.1:8000/predict?top_k=3'
    # {"predictions": [{"image": null, "labels": [{"label": "cat", "probability": 0.93}, ...]}]}
    curl -F file=@cat.png -F file=@dog.jpg http://127.0.0.1:8000/predict
    # {"predictions": [{"image": "cat.png", "labels": [...]}, {"image": "dog.jpg", "labels": [...]}]}
    curl http://127.0.0.1:8000/health

One deployment of `replicas` replicas, each loading the model once (the model directory's files
travel through Ray's object store, so replicas on other nodes of a cluster need no shared disk).
Requests that arrive while a replica is predicting are batched into its next model call. A body
that is not an image is answered with HTTP 400 and {"error": "..."}, and the server goes on; one
over MAX_BODY_BYTES is answered 413 by Serve's proxy before it reaches a replica (nas.serve_proxy).
"""

import asyncio
import contextlib
import io
import logging
import signal
import socket
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import ray
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from ray import serve
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartParser

from nas.errors import InputError
from nas.model_dir import REQUIRED, open_model_dir
from nas.predict import Predictor, check_top_k
from nas.quiet import stderr_silenced
from nas.serve_proxy import CONTROLLER_OPTIONS, MAX_BODY_BYTES, declared_length, too_large

APP_NAME = "nas"
DEFAULT_TOP_K = 3
MAX_FILES = 256  # images in one multipart request
MAX_BATCH_REQUESTS = 32  # requests one model call may serve
SHUTDOWN_SECONDS = 5  # how long a replica may finish its requests when the server stops

api = FastAPI(title="nas", docs_url=None, redoc_url=None, openapi_url=None)


class BodyTooLarge(InputError):
    pass


# Serve pickles the deployment class where it is declared: what the class uses is defined above it.
async def _limited(request: Request):
    """The request's body as it arrives, ended with BodyTooLarge past MAX_BODY_BYTES: one limit
    whatever the transfer encoding (a chunked body has no Content-Length) and the content type.
    nas's proxy middleware refuses such a body first; this holds where Serve's proxies are not
    nas's (a Serve already running on a cluster)."""
    length = declared_length(request.headers)
    if length is not None and length > MAX_BODY_BYTES:
        raise BodyTooLarge(too_large(length))
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > MAX_BODY_BYTES:
            raise BodyTooLarge(too_large(None))
        yield chunk


async def _uploads(request: Request) -> list[tuple[str | None, bytes]]:
    """The images of a request as (file name or None, bytes): a multipart form's files, or the body."""
    if request.headers.get("content-type", "").lower().startswith("multipart/form-data"):
        parser = MultiPartParser(request.headers, _limited(request), max_files=MAX_FILES, max_fields=MAX_FILES)
        try:
            form = await parser.parse()
        except BodyTooLarge:
            raise
        except Exception as e:  # Starlette's MultiPartException, or python-multipart's own
            reason = getattr(e, "detail", None) or getattr(e, "message", None) or type(e).__name__
            raise InputError(f"request body: not a readable multipart form ({reason}), expected image files") from None
        try:
            files = [(v.filename or k, await v.read()) for k, v in form.multi_items() if isinstance(v, UploadFile)]
        finally:
            await form.close()
        if not files:
            raise InputError("request body: a multipart form without files, expected one or more image files")
        return files
    body = bytearray()
    async for chunk in _limited(request):
        body += chunk
    if not body:
        raise InputError("request body: empty, expected an image (raw bytes or a multipart upload)")
    return [(None, bytes(body))]


# A replica that cannot load the model fails the deployment at once: a bad model fails every time.
@serve.deployment(
    max_ongoing_requests=MAX_BATCH_REQUESTS,
    graceful_shutdown_timeout_s=SHUTDOWN_SECONDS,
    graceful_shutdown_wait_loop_s=0.5,
    max_constructor_retry_count=1,
)
@serve.ingress(api)
class Labeller:
    """One replica: the model directory's model, loaded once."""

    def __init__(self, files: list[ray.ObjectRef], name: str):
        from nas.quiet import import_tensorflow

        import_tensorflow()
        self._dir = tempfile.TemporaryDirectory(prefix="nas-serve-")
        for file, data in ray.get(files[0]).items():
            (Path(self._dir.name) / file).write_bytes(data)
        self.name = name
        try:
            self.predictor = Predictor(self._dir.name)
            self.predictor.warm_up()  # loaded and traced now: a replica is ready when it can answer quickly
        except InputError as e:  # named as the user named it, not as this replica's copy
            raise InputError(str(e).replace(self._dir.name, name)) from None

    @api.get("/health")
    async def health(self) -> dict[str, Any]:
        md = self.predictor.model_dir
        return {
            "status": "ok",
            "model": self.name,
            "classes": md.class_names,
            "image_size": list(md.image_size),
            "color_mode": md.color_mode,
            "replica": serve.get_replica_context().replica_id.unique_id,
        }

    @api.post("/")
    @api.post("/predict")
    async def predict(self, request: Request) -> JSONResponse:
        try:
            k = check_top_k(request.query_params.get("top_k", DEFAULT_TOP_K), "top_k")
            uploads = await _uploads(request)
            images = await asyncio.to_thread(
                lambda: [self.predictor.decode(data, name or "request body") for name, data in uploads]
            )
        except BodyTooLarge as e:
            return JSONResponse({"error": str(e)}, status_code=413)
        except InputError as e:
            return JSONResponse({"error": str(e)}, status_code=400)
        probabilities = await self._probabilities(np.stack(images))
        labels = self.predictor.model_dir.top_k(probabilities, k)
        names = [name for name, _ in uploads]
        return JSONResponse({"predictions": [{"image": name, "labels": top} for name, top in zip(names, labels)]})

    @serve.batch(max_batch_size=MAX_BATCH_REQUESTS, batch_wait_timeout_s=0)
    async def _probabilities(self, batches: list[np.ndarray]) -> list[np.ndarray]:
        # No waiting for a batch to fill: the requests that queued while the model was busy form
        # the next batch. The model runs in a thread so that requests keep arriving meanwhile.
        probabilities = await asyncio.to_thread(self.predictor.probabilities, np.concatenate(batches))
        return np.split(probabilities, np.cumsum([len(b) for b in batches])[:-1])


def serve_model(
    model_dir: str | Path,
    host: str = "127.0.0.1",
    port: int = 8000,
    replicas: int = 1,
    address: str | None = None,
    out=print,
) -> None:
    """Serves `model_dir` over HTTP until SIGINT or SIGTERM, then shuts Serve (and a local Ray) down."""
    from nas.cluster import check_reachable, connect, disconnect

    md = open_model_dir(model_dir)  # a bad directory is refused before Ray starts
    if address:
        check_reachable(address)
    else:
        check_port_free(host, port)
    started = time.monotonic()
    cluster = connect(address, dashboard=False)
    stop = _Stop()  # after connect: ray.init sets a SIGTERM handler of its own
    started_serve = False
    try:
        cpus = cluster.resources.get("CPU", 0)
        if replicas > cpus:
            raise InputError(
                f"replicas: {replicas} replicas take {replicas} CPUs, but the Ray cluster has "
                f"{cpus:g}; expected at most {int(cpus)}"
            )
        files = ray.put({name: (md.path / name).read_bytes() for name in REQUIRED})
        app = Labeller.options(num_replicas=replicas).bind([files], str(md.path))
        logging.getLogger("ray.serve").setLevel(logging.WARNING)  # not Serve's start-up chatter
        started_serve = True
        with stderr_silenced():  # Ray's C++ side logs to fd 2 as Serve starts its actors
            # Applied when this call starts Serve; a Serve already running on a cluster keeps its proxies.
            serve.start(http_options={"host": host, "port": port}, controller_options=CONTROLLER_OPTIONS)
            _run(app)
        url = f"http://{host if ':' not in host else f'[{host}]'}:{port}"
        out(
            f"Serving {md.path} ({len(md.class_names)} classes) on {replicas} replica(s) at {url}/predict "
            f"(POST an image; GET {url}/health), ready after {time.monotonic() - started:.0f} s. Ctrl-C stops.",
            flush=True,
        )
        stop.wait()
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM while starting, or a second one
        pass
    finally:
        # Ray reports the Serve actors it kills as failed tasks, on stdout
        with stderr_silenced(), contextlib.redirect_stdout(io.StringIO()):
            try:
                if started_serve:  # on a cluster, only this application goes: Serve may serve others there
                    serve.shutdown() if not address else serve.delete(APP_NAME)
            except (KeyboardInterrupt, Exception):  # another Ctrl-C, or a cluster gone: what is left is Ray's
                pass
            finally:
                for sig in (signal.SIGINT, signal.SIGTERM):
                    signal.signal(sig, signal.SIG_IGN)
                disconnect(cluster)


def check_port_free(host: str, port: int) -> None:
    """Serve's proxy would retry a taken port for ever: try to listen on it first."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise InputError(f"host: got {host!r}: {e.strerror}, expected an address of this machine") from None
    family, kind, proto, _, where = infos[0]
    with socket.socket(family, kind, proto) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
        try:
            s.bind(where)
        except OSError as e:
            raise InputError(
                f"port: cannot listen on {host}:{port} ({e.strerror}), expected a free port "
                "of an address of this machine"
            ) from None


def _run(app) -> None:
    try:
        serve.run(app, name=APP_NAME, route_prefix="/")
    except RuntimeError as e:  # a replica could not start: its traceback is in the deployment's status
        try:
            deployments = serve.status().applications[APP_NAME].deployments.values()
            message = "\n".join(d.message for d in deployments) + "\n" + str(e)
        except Exception:
            message = str(e)
        lines = [line.strip() for line in message.splitlines() if line.strip()]
        reason = next((line for line in reversed(lines) if "InputError: " in line), None)
        if reason:
            raise InputError(reason.split("InputError: ", 1)[1]) from None
        last = next((line for line in reversed(lines) if "Error" in line), lines[-1] if lines else type(e).__name__)
        raise InputError(f"the deployment did not start: {last}") from None


class _Stop:
    """SIGINT and SIGTERM: while serving, the first one ends `wait` (a clean stop, exit code 0);
    while starting, or a second time, they raise KeyboardInterrupt."""

    def __init__(self):
        self.serving = False
        self.requested = False
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._handle)

    def _handle(self, signum, frame) -> None:
        if not self.serving or self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def wait(self) -> None:
        self.serving = True
        while not self.requested:
            time.sleep(0.2)  # the handler runs in this thread, between sleeps
