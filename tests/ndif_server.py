"""A small NDIF-protocol server on 127.0.0.1, so nnsight's own ``RemoteBackend`` can be tested
end to end.

The real NDIF service needs Ray, an object store and CUDA GPUs (docs/engineering.md); this server
speaks the same client-facing protocol as nnsight 0.8's ``nnsight/intervention/backends/remote.py``
and runs requests the way NDIF does — deserialize the request against the served model's
persistent objects, execute the traced block, send back only the values it saved:

- ``WS /subscribe``: the first message is ``{"session_id": ...}``; status updates follow as JSON
  text frames, and the COMPLETED update as a binary frame (``ResponseModel.pickle()`` with the
  result inside) when the result is small, or as JSON carrying a download url when it is not.
- ``POST /request``: form field ``data`` (the ``RequestModel`` JSON envelope) and file ``blob``
  (the serialized trace); answers RECEIVED with the job id.
- ``GET /response/{id}``: the latest status of a job, for non-blocking clients.
- ``GET /result/{id}``: the result blob (torch.save, zstd-compressed when the request was).

Models are loaded from local transformers directories and keyed by that path, the repo id a
client's ``TransformersModel(path)`` puts in its model key. Requests run one at a time in a worker
thread. While a request runs, ``mechintro`` cannot be imported: NDIF does not have it installed,
so a trace that needs it fails here as it would there.

Bind address is 127.0.0.1 only: the server executes the code clients send.

Run::

    python tests/ndif_server.py --port PORT --model DIR [--model DIR ...] [--inline-limit BYTES]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import linecache
import queue
import sys
import threading
import uuid

# anyio.abc must be imported before nnsight mounts `.save` on every object (docs/engineering.md).
import anyio.abc  # noqa: F401  (import order matters)
import uvicorn
from fastapi import FastAPI, HTTPException, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import Response


class _NoMechintro:
    """A meta-path finder that makes ``import mechintro`` fail while it is active."""

    active = False

    def find_spec(self, name, path=None, target=None):
        if self.active and name.split(".")[0] == "mechintro":
            raise ModuleNotFoundError(f"No module named '{name}' (not installed on this server)")
        return None


def load(directory: str):
    import torch
    from nnsight.modeling.transformers import TransformersModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    hf = AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32)
    hf.requires_grad_(False)
    hf.eval()
    return TransformersModel(
        hf, tokenizer=AutoTokenizer.from_pretrained(directory), task="text-generation"
    )


def make_app(models: dict, inline_limit: int = 1 << 20) -> FastAPI:
    """The FastAPI app serving ``models`` ({repo id or path: nnsight model})."""
    from nnsight.schema.request import RequestModel
    from nnsight.schema.response import ResponseModel, Status
    from nnsight.tracing.tracer import dec, inc

    app = FastAPI()
    sessions: dict[str, tuple[WebSocket, asyncio.AbstractEventLoop]] = {}
    statuses: dict[str, str] = {}  # job id -> latest ResponseModel JSON
    results: dict[str, bytes] = {}
    jobs: queue.Queue = queue.Queue()
    guard = _NoMechintro()
    sys.meta_path.insert(0, guard)

    def publish(request: RequestModel, response: ResponseModel, base_url: str) -> None:
        if (
            response.status == Status.COMPLETED
        ):  # kept for download; inlined on the socket when small
            results[response.id] = response.data
            by_url = ResponseModel(
                id=response.id,
                status=response.status,
                description=response.description,
                data=f"{base_url}result/{response.id}",
            )
            statuses[response.id] = by_url.model_dump_json()
            if len(response.data) > inline_limit:
                response = by_url
        else:
            statuses[response.id] = response.model_dump_json()
        subscriber = sessions.get(request.session_id)
        if subscriber is None:  # a non-blocking client polls GET /response/{id}
            return
        socket, loop = subscriber
        if isinstance(response.data, bytes):
            send = socket.send_bytes(response.pickle())
        else:
            send = socket.send_text(response.model_dump_json())
        asyncio.run_coroutine_threadsafe(send, loop).result(timeout=60)

    def run(request: RequestModel, blob: bytes):
        import torch

        key = request.model_key.partition(":")[2]
        try:
            repo_id = json.loads(key)["repo_id"]
        except (ValueError, KeyError, TypeError):
            raise LookupError(f"malformed model key {request.model_key!r}") from None
        if repo_id not in models:
            raise LookupError(f"model {repo_id!r} is not served here (serving {sorted(models)})")
        model = models[repo_id]
        lines = dict(linecache.cache)
        guard.active = True
        try:
            tracer = RequestModel.deserialize(
                blob, model._remoteable_persistent_objects(), compress=request.compress
            )
            frame = tracer.info.frame
            before = dict(frame.f_locals)
            inc()  # depth 1: the block's push keeps only the values it saved, as on NDIF
            try:
                tracer.execute(tracer.info.code)
                saved = {
                    k: v for k, v in frame.f_locals.items() if k not in before or before[k] is not v
                }
            finally:
                dec()
        finally:
            guard.active = False
            linecache.cache.clear()
            linecache.cache.update(lines)
        buffer = io.BytesIO()
        torch.save(saved, buffer)
        data = buffer.getvalue()
        if request.compress:
            import zstandard

            data = zstandard.ZstdCompressor(level=6).compress(data)
        return data

    def worker() -> None:
        while True:
            job_id, request, blob, base_url = jobs.get()
            publish(
                request,
                ResponseModel(id=job_id, status=Status.RUNNING, description="running"),
                base_url,
            )
            try:
                data = run(request, blob)
            except BaseException as error:
                response = ResponseModel(
                    id=job_id, status=Status.ERROR, description=f"{type(error).__name__}: {error}"
                )
            else:
                response = ResponseModel(
                    id=job_id, status=Status.COMPLETED, description="done", data=data
                )
            publish(request, response, base_url)

    threading.Thread(target=worker, daemon=True, name="ndif-worker").start()

    @app.websocket("/subscribe")
    async def subscribe(socket: WebSocket) -> None:
        await socket.accept()
        session_id = uuid.uuid4().hex
        sessions[session_id] = (socket, asyncio.get_running_loop())
        await socket.send_text(json.dumps({"session_id": session_id}))
        try:
            while True:
                await socket.receive_text()
        except WebSocketDisconnect:
            pass
        finally:
            sessions.pop(session_id, None)

    @app.post("/request")
    async def submit(http: Request) -> Response:
        form = await http.form(max_part_size=1 << 30)
        request = RequestModel.model_validate_json(form["data"])
        blob = await form["blob"].read()
        job_id = uuid.uuid4().hex
        received = ResponseModel(id=job_id, status=Status.RECEIVED, description="received")
        statuses[job_id] = received.model_dump_json()
        jobs.put((job_id, request, blob, str(http.base_url)))
        return Response(received.model_dump_json(), media_type="application/json")

    @app.get("/response/{job_id}")
    async def status(job_id: str) -> Response:
        if job_id not in statuses:
            raise HTTPException(404, "no such job")
        return Response(statuses[job_id], media_type="application/json")

    @app.get("/result/{job_id}")
    async def result(job_id: str) -> Response:
        if job_id not in results:
            raise HTTPException(404, "no such result")
        return Response(results[job_id], media_type="application/octet-stream")

    @app.get("/ping")
    async def ping() -> dict:
        return {"models": sorted(models)}

    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument(
        "--model", action="append", required=True, help="a local transformers directory"
    )
    parser.add_argument(
        "--inline-limit",
        type=int,
        default=1 << 20,
        help="larger results are downloaded, not inlined",
    )
    args = parser.parse_args(argv)
    app = make_app(
        {directory: load(directory) for directory in args.model}, inline_limit=args.inline_limit
    )
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", ws="websockets-sansio")


if __name__ == "__main__":
    main()
