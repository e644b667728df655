"""A small web app around a trained model: a page to drop a photo on, and a JSON API (FastAPI + uvicorn).

    foldertune serve runs/mobilenet_v2-finetune               # http://127.0.0.1:8000/ (a checkpoint: with Grad-CAM)
    foldertune serve runs/.../export/model.onnx --port 8080   # an ONNX export: no PyTorch needed

    app = create_app("runs/mobilenet_v2-finetune")            # the ASGI app, for any ASGI server

API: `POST /predict` (multipart, field `files`, one or more images; `?cam=true` adds Grad-CAM overlays for a
checkpoint), `GET /health`, `GET /classes`; the OpenAPI description is at /openapi.json (and /docs). The model is
loaded once, when the app is made. A request larger than `max_upload_mb` is refused with 413 and none of it is kept;
a file that is not an image, is damaged or is a decompression bomb gets 422 with the file named and the reason.
Each upload is read exactly as `foldertune predict` reads files (EXIF orientation, any mode to RGB, pixel limit).
"""

# no `from __future__ import annotations`: FastAPI reads the endpoints' annotations at run time

import base64
import io
import os
import secrets
import tempfile
import threading
from pathlib import Path

from PIL import Image

from foldertune.data.images import open_image
from foldertune.errors import UserError
from foldertune.inference.prediction import Prediction

DEFAULT_MAX_UPLOAD_MB = 10  # per request; photos from phones are 2-8 MB
MAX_FILES = 16  # images per request
DRAIN_FACTOR = 8  # a refused upload up to this many times the limit is read to its end (and dropped) before the 413
TOPK = 5
TOKEN_VARIABLE = "FOLDERTUNE_TOKEN"  # serve's --token when the flag is not given
OPEN_PATHS = ("/", "/health")  # with a token, the rest of the app wants it


class Model:
    """The classifier behind the app: a checkpoint (PyTorch, with Grad-CAM) or an ONNX export (ONNX Runtime)."""

    def __init__(self, source: str | os.PathLike) -> None:
        self.source = Path(source)
        self.lock = threading.Lock()  # one forward pass at a time: the PyTorch classifier hooks its network
        self.explainer = None
        if self.source.suffix.lower() == ".onnx":
            from foldertune.deploy.onnx_classifier import OnnxClassifier

            self.classifier = OnnxClassifier(self.source)
            self.kind = "onnx"
        else:
            from foldertune.inference.classifier import Classifier
            from foldertune.inference.gradcam import Explainer, cam_available

            self.classifier = Classifier.from_path(self.source)
            self.kind = "checkpoint"
            self.explainer = Explainer(self.classifier) if cam_available() else None
        self.classes: list[str] = list(self.classifier.classes)
        self.min_side = self.classifier.preprocessing.resize_size

    def predict(self, path: Path, *, cam: bool) -> tuple[Prediction, str | None]:
        """The prediction for one image file, and its Grad-CAM overlay as a data URL when asked and available."""
        with self.lock:
            prediction = self.classifier.predict_files([path], topk=TOPK, progress=False)[0]
            overlay = None
            if cam and self.explainer is not None and prediction.error is None:
                explanation = self.explainer.explain([open_image(path, min_side=self.min_side)])[0]
                overlay = _data_url(Image.fromarray(explanation.overlay))
        return prediction, overlay


def create_app(source: str | os.PathLike, *, max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB, token: str | None = None):
    """The FastAPI app serving `source` (a run folder, a .pt checkpoint or an exported .onnx); with `token`, every
    route but the page and /health wants `Authorization: Bearer TOKEN`."""
    _check_options(max_upload_mb=max_upload_mb, token=token)
    try:
        from fastapi import FastAPI, File, HTTPException, Query, Request, UploadFile
        from fastapi.responses import HTMLResponse, JSONResponse
    except ImportError:
        raise UserError("serve needs FastAPI and uvicorn: pip install 'foldertune[serve]'.") from None

    model = Model(source)
    limit = int(max_upload_mb * 1024 * 1024)
    app = FastAPI(
        title="foldertune",
        summary=f"Image classifier: {len(model.classes)} classes, from {model.source.name}",
        version="1",
    )

    @app.middleware("http")
    async def require_token(request: Request, call_next):
        # the page itself is static (it sends the token from its address's #token=... fragment); /health is for probes
        if token is None or request.url.path in OPEN_PATHS:
            return await call_next(request)
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not secrets.compare_digest(given.strip().encode(), token.encode()):
            return JSONResponse({"detail": "this server needs the header 'Authorization: Bearer TOKEN' (foldertune "
                                 "serve --token); open the page as /#token=TOKEN"}, status_code=401,
                                headers={"WWW-Authenticate": "Bearer"})  # fmt: skip
        return await call_next(request)

    @app.middleware("http")
    async def refuse_large_uploads(request: Request, call_next):
        length = request.headers.get("content-length")
        if request.method == "POST" and length and length.isdigit() and int(length) > limit:
            size = int(length) / 2**20
            detail = f"the upload is {size:.1f} MB; the limit is {max_upload_mb:g} MB per request"
            if int(length) <= DRAIN_FACTOR * limit:
                # read and drop the body (nothing is kept): a client still sending when the server closes the
                # connection gets a reset instead of this answer
                async for _ in request.stream():
                    pass
            return JSONResponse({"detail": detail}, status_code=413, headers={"Connection": "close"})
        return await call_next(request)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page() -> str:
        title = _escape(model.source.name if model.kind == "onnx" else _run_name(model.source))
        return PAGE.replace("{{TITLE}}", title).replace("{{CAM}}", "true" if model.explainer else "false")

    @app.get("/health", summary="Whether the model is loaded")
    def health() -> dict:
        return {"status": "ok", "model": str(model.source), "kind": model.kind, "classes": len(model.classes),
                "gradcam": model.explainer is not None}  # fmt: skip

    @app.get("/classes", summary="The class names, in the model's order")
    def classes() -> dict:
        return {"classes": model.classes}

    @app.post("/predict", summary="Top-5 classes of each uploaded image (and Grad-CAM overlays with cam=true)")
    def predict(
        files: list[UploadFile] = File(..., description="one or more image files"),  # noqa: B008 (FastAPI's idiom)
        cam: bool = Query(False, description="add a Grad-CAM overlay per image (checkpoints only)"),
    ) -> dict:
        if len(files) > MAX_FILES:
            raise HTTPException(413, f"{len(files)} files in one request; the limit is {MAX_FILES}")
        results = []
        total = 0
        for upload in files:
            data = upload.file.read(limit + 1)
            total += len(data)
            if total > limit:
                raise HTTPException(413, f"the upload is over {max_upload_mb:g} MB; the limit is per request")
            name = upload.filename or "upload"
            with tempfile.TemporaryDirectory() as folder:
                path = Path(folder) / ("image" + Path(name).suffix.lower()[:8])
                path.write_bytes(data)
                prediction, overlay = model.predict(path, cam=cam)
            if prediction.error:
                raise HTTPException(422, f"'{name}' cannot be used: {prediction.error}")
            results.append({
                "path": name, "label": prediction.label, "probability": prediction.probability,
                "topk": [{"label": label, "probability": p} for label, p in prediction.topk],
                **({"gradcam": overlay} if overlay else {}),
            })  # fmt: skip
        return {"predictions": results}

    return app


def serve(
    source: str | os.PathLike, *, host: str, port: int, max_upload_mb: float, token: str | None = None, log=print
) -> None:
    """Load the model, then serve until Ctrl-C; with `token` (else $FOLDERTUNE_TOKEN) only requests that carry it."""
    token = token if token is not None else os.environ.get(TOKEN_VARIABLE) or None
    _check_options(port=port, max_upload_mb=max_upload_mb, token=token)
    try:
        import uvicorn
    except ImportError:
        raise UserError("serve needs FastAPI and uvicorn: pip install 'foldertune[serve]'.") from None
    app = create_app(source, max_upload_mb=max_upload_mb, token=token)
    shown = f"[{host}]" if ":" in host else host
    log(f"serving {source} on http://{shown}:{port}/  (API: /predict, /health, /classes; OpenAPI: /openapi.json)")
    if token is not None:
        log(f"every route but / and /health needs 'Authorization: Bearer TOKEN'; open the page as "
            f"http://{shown}:{port}/#token=TOKEN")  # fmt: skip
    elif host not in ("127.0.0.1", "localhost", "::1"):
        log(f"note: --host {host} makes the app reachable from other machines; it has no authentication: add "
            f"--token SECRET (or set {TOKEN_VARIABLE}) to require 'Authorization: Bearer SECRET'.")  # fmt: skip
    uvicorn.run(app, host=host, port=port, log_level="warning")


def _check_options(*, max_upload_mb: float, port: int | None = None, token: str | None = None) -> None:
    if token is not None and (not token or any(c.isspace() or not c.isprintable() for c in token)):
        raise UserError("--token must be a non-empty string without spaces (for example: openssl rand -hex 16).")
    if port is not None and (isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536):
        raise UserError(f"--port must be between 1 and 65535; got {port}.")
    if not max_upload_mb > 0:
        raise UserError(f"--max-upload-mb must be positive; got {max_upload_mb}.")


def _data_url(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _run_name(source: Path) -> str:
    return source.name if source.is_dir() else f"{source.parent.name}/{source.name}"


def _escape(text: str) -> str:
    from html import escape

    return escape(text)


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>foldertune: {{TITLE}}</title><link rel="icon" href="data:,">
<style>
 body { font: 16px system-ui, "Noto Sans CJK SC", "Microsoft YaHei", sans-serif; max-width: 760px; margin: 2em auto;
        padding: 0 1em; color: #222; }
 #drop { border: 2px dashed #888; border-radius: 10px; padding: 2.5em 1em; text-align: center; cursor: pointer; }
 #drop.over { background: #eef5ff; border-color: #36c; }
 .row { display: grid; grid-template-columns: 12em 1fr 4.5em; gap: .6em; align-items: center; margin: .35em 0; }
 .track { background: #eee; border-radius: 4px; height: 1.1em; }
 .fill { background: #36c; border-radius: 4px; height: 100%; }
 .prob { text-align: right; font-variant-numeric: tabular-nums; }
 #pictures { display: flex; gap: 1em; flex-wrap: wrap; margin-top: 1em; }
 #pictures img { max-width: 340px; max-height: 340px; border-radius: 6px; }
 #error { color: #b00; }
 .muted { color: #777; font-size: .9em; }
</style></head>
<body>
<h1>{{TITLE}}</h1>
<label id="drop" for="file">Drop a photo here, or click to pick one
 <input id="file" type="file" accept="image/*" hidden></label>
<p id="status" class="muted"></p>
<p id="error"></p>
<h2 id="top1"></h2>
<div id="result"></div>
<div id="pictures"><img id="preview" alt="" hidden><img id="cam" alt="Grad-CAM: where the network looked" hidden></div>
<p class="muted">API: POST /predict, GET /classes, GET /health; <a href="/openapi.json">OpenAPI</a></p>
<script>
const CAM = {{CAM}};
const TOKEN = new URLSearchParams(location.hash.slice(1)).get("token");  // serve --token: the page's #token=...
const drop = document.getElementById("drop"), input = document.getElementById("file");
const show = (id, text) => { document.getElementById(id).textContent = text; };
drop.addEventListener("dragover", e => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", e => { e.preventDefault(); drop.classList.remove("over");
  if (e.dataTransfer.files.length) predict(e.dataTransfer.files[0]); });
input.addEventListener("change", () => { if (input.files.length) predict(input.files[0]); });
async function predict(file) {
  show("error", ""); show("top1", ""); show("status", "predicting " + file.name + " ...");
  document.getElementById("result").replaceChildren();
  const preview = document.getElementById("preview"), cam = document.getElementById("cam");
  preview.src = URL.createObjectURL(file); preview.hidden = false; cam.hidden = true;
  const form = new FormData(); form.append("files", file);
  try {
    const response = await fetch("/predict" + (CAM ? "?cam=true" : ""), { method: "POST", body: form,
      headers: TOKEN ? { Authorization: "Bearer " + TOKEN } : {} });
    const body = await response.json();
    if (!response.ok) { show("status", ""); show("error", body.detail || response.statusText); return; }
    const p = body.predictions[0];
    show("top1", p.label + " (" + (100 * p.probability).toFixed(1) + "%)");
    for (const item of p.topk) {
      const row = document.createElement("div"); row.className = "row";
      const name = document.createElement("span"); name.className = "label"; name.textContent = item.label;
      const track = document.createElement("div"); track.className = "track";
      const fill = document.createElement("div"); fill.className = "fill";
      fill.style.width = (100 * item.probability).toFixed(1) + "%"; track.appendChild(fill);
      const prob = document.createElement("span"); prob.className = "prob";
      prob.textContent = (100 * item.probability).toFixed(1) + "%";
      row.append(name, track, prob); document.getElementById("result").appendChild(row);
    }
    if (p.gradcam) { cam.src = p.gradcam; cam.hidden = false; }
    show("status", file.name);
  } catch (error) { show("status", ""); show("error", "the server did not answer: " + error); }
}
</script>
</body></html>
"""
