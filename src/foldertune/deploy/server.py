"""A small web app around a trained model: a page to drop a photo on, and a JSON API (FastAPI + uvicorn).

    foldertune serve runs/mobilenet_v2-finetune               # http://127.0.0.1:8000/ (a checkpoint: with Grad-CAM)
    foldertune serve runs/.../export/model.onnx --port 8080   # an ONNX export: no PyTorch needed

    app = create_app("runs/mobilenet_v2-finetune")            # the ASGI app, for any ASGI server

API: `POST /predict` (multipart, field `files`, one or more images; `?cam=true` adds Grad-CAM overlays for a
checkpoint), `GET /health`, `GET /classes`; the OpenAPI description is at /openapi.json (and /docs). The model is
loaded once, when the app is made. A request larger than `max_upload_mb` is refused with 413 and none of it is kept;
a file that is not an image, is damaged or is a decompression bomb gets 422 with the file named and the reason.
Each upload is read exactly as `foldertune predict` reads files (EXIF orientation, any mode to RGB, pixel limit).

The page says what the model is (backbone, mode, training data, validation accuracy, classes with their training
images) and shows the Grad-CAM overlay over the whole photo, at its aspect, beside it; it lays out without overlaps
from 390 px (a phone) to desktop widths. Its calls to the server all go through one small `request` function.
"""

# no `from __future__ import annotations`: FastAPI reads the endpoints' annotations at run time

import base64
import errno
import io
import os
import secrets
import socket
import tempfile
import threading
import warnings
from pathlib import Path

from PIL import Image

from foldertune.data.images import open_image
from foldertune.errors import UserError
from foldertune.inference.prediction import Prediction, check_predict_options

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
            self.about = _export_facts(self.classifier.metadata)
        else:
            from foldertune.inference.classifier import Classifier
            from foldertune.inference.gradcam import Explainer, cam_available

            self.classifier = Classifier.from_path(self.source)
            self.kind = "checkpoint"
            self.explainer = Explainer(self.classifier) if cam_available() else None
            self.about = [(name, value) for name, value in self.classifier.describe() if name != "classes"]
        self.classes: list[str] = list(self.classifier.classes)
        self.min_side = self.classifier.preprocessing.resize_size
        self.training_images = _training_images(self.source) if self.kind == "checkpoint" else {}

    def predict(self, path: Path, *, cam: bool, min_confidence: float | None = None) -> tuple[Prediction, str | None]:
        """The prediction for one image file, and its Grad-CAM overlay as a data URL when asked and available."""
        with self.lock:
            prediction = self.classifier.predict_files([path], topk=TOPK, progress=False,
                                                       min_confidence=min_confidence)[0]  # fmt: skip
            overlay = None
            if cam and self.explainer is not None and prediction.error is None:
                from foldertune.inference.gradcam import overlay_on_photo

                photo = open_image(path, min_side=self.min_side)
                explanation = self.explainer.explain([photo])[0]
                overlay = _data_url(overlay_on_photo(photo, explanation, self.classifier.preprocessing))
        return prediction, overlay


def create_app(
    source: str | os.PathLike,
    *,
    max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB,
    token: str | None = None,
    min_confidence: float | None = None,
):
    """The FastAPI app serving `source` (a run folder, a .pt checkpoint or an exported .onnx); with `token`, every
    route but the page and /health wants `Authorization: Bearer TOKEN`; below `min_confidence` the answer's label is
    'unknown'."""
    _check_options(max_upload_mb=max_upload_mb, token=token, min_confidence=min_confidence)
    try:
        from fastapi import FastAPI, File, HTTPException, Query, Request, UploadFile
        from fastapi.responses import HTMLResponse, JSONResponse
    except ImportError:
        raise UserError("serve needs FastAPI and uvicorn: pip install 'foldertune[serve]'.") from None

    model = Model(source)
    check_predict_options(topk=TOPK, min_confidence=min_confidence, classes=model.classes, flags=True)
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
        section = _model_section(model, min_confidence)
        page = PAGE.replace("{{TITLE}}", title).replace("{{MODEL}}", section)
        return page.replace("{{CAM}}", "true" if model.explainer else "false")

    @app.get("/health", summary="Whether the model is loaded")
    def health() -> dict:
        return {"status": "ok", "model": str(model.source), "kind": model.kind, "classes": len(model.classes),
                "gradcam": model.explainer is not None, "min_confidence": min_confidence}  # fmt: skip

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
            if total > limit:  # sent in chunks: there was no Content-Length to refuse it by
                raise HTTPException(
                    413, f"the upload is over {max_upload_mb:g} MB; the limit is {max_upload_mb:g} MB per request"
                )
            name = upload.filename or "upload"
            with tempfile.TemporaryDirectory() as folder:
                path = Path(folder) / ("image" + Path(name).suffix.lower()[:8])
                path.write_bytes(data)
                prediction, overlay = model.predict(path, cam=cam, min_confidence=min_confidence)
            if prediction.error:
                raise HTTPException(422, f"'{name}' cannot be used: {prediction.error}")
            results.append({
                "path": name, "label": prediction.label, "probability": prediction.probability,
                "top_label": prediction.top_label, "unknown_score": prediction.unknown_score,
                "topk": [{"label": label, "probability": p} for label, p in prediction.topk],
                **({"gradcam": overlay} if overlay else {}),
            })  # fmt: skip
        return {"predictions": results}

    return app


def serve(
    source: str | os.PathLike,
    *,
    host: str,
    port: int,
    max_upload_mb: float,
    token: str | None = None,
    min_confidence: float | None = None,
    log=print,
) -> None:
    """Load the model, then serve until Ctrl-C; with `token` (else $FOLDERTUNE_TOKEN) only requests that carry it."""
    token = token if token is not None else os.environ.get(TOKEN_VARIABLE) or None
    _check_options(port=port, max_upload_mb=max_upload_mb, token=token, min_confidence=min_confidence)
    try:
        import uvicorn
    except ImportError:
        raise UserError("serve needs FastAPI and uvicorn: pip install 'foldertune[serve]'.") from None
    check_address(host, port)
    app = create_app(source, max_upload_mb=max_upload_mb, token=token, min_confidence=min_confidence)
    shown = f"[{host}]" if ":" in host else host
    log(f"serving {source} on http://{shown}:{port}/  (API: /predict, /health, /classes; OpenAPI: /openapi.json)")
    if token is not None:
        log(f"every route but / and /health needs 'Authorization: Bearer TOKEN'; open the page as "
            f"http://{shown}:{port}/#token=TOKEN")  # fmt: skip
    elif host not in ("127.0.0.1", "localhost", "::1"):
        warnings.warn(f"--host {host} makes the app reachable from other machines; it has no authentication: add "
                      f"--token SECRET (or set {TOKEN_VARIABLE}) to require 'Authorization: Bearer SECRET'.",
                      stacklevel=2)  # fmt: skip
    uvicorn.run(app, host=host, port=port, log_level="warning")


def check_address(host: str, port: int) -> None:
    """Refuse, before the model loads, an address the server could not listen on: a port in use, a host that is
    not this machine's, a port below 1024 without the right to it."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    except socket.gaierror:
        raise UserError(
            f"--host '{host}' is not a known address; use 127.0.0.1 (this machine) or 0.0.0.0 (all)."
        ) from None
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does: a closed server's port is free
        try:
            probe.bind((host, port))
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                raise UserError(
                    f"port {port} on {host} is in use (another server?); pick a free one with --port, e.g. "
                    f"--port {_free_port(host, family)}."
                ) from None
            if error.errno == errno.EACCES:
                raise UserError(
                    f"--port {port} needs administrator rights (ports below 1024); use --port 8000."
                ) from None
            raise UserError(f"cannot listen on {host}:{port} ({error.strerror}); check --host and --port.") from None


def _free_port(host: str, family: int) -> int:
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def _check_options(
    *, max_upload_mb: float, port: int | None = None, token: str | None = None, min_confidence: float | None = None
) -> None:
    check_predict_options(topk=TOPK, min_confidence=min_confidence, flags=True)
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


def _export_facts(metadata: dict) -> list[tuple[str, str]]:
    """An ONNX export's account of itself, from its metadata, in the rows Classifier.describe() gives."""
    training = metadata.get("training") or {}
    mode = f", {training['mode']} mode" if training.get("mode") else ""
    accuracy = training.get("val_accuracy")
    scored = f", validation accuracy {accuracy:.3f}" if accuracy is not None else ""
    crop = metadata["preprocessing"]["crop_size"]
    return [
        ("backbone", f"{metadata.get('backbone', '?')}{mode}"),
        ("trained on", str(training.get("data") or "not recorded in this export")),
        ("checkpoint", f"epoch {metadata.get('epoch', '?')}{scored}, exported to ONNX"),
        ("input", f"{crop}x{crop} px"),
    ]


def _training_images(source: Path) -> dict[str, int]:
    """Training images per class, from the run folder's config.json when the checkpoint lies in one."""
    from foldertune.runs.folder import locate_checkpoint

    _, run = locate_checkpoint(source)
    if not run.is_run():
        return {}
    return {row["class"]: int(row["train"]) for row in run.config().get("data", {}).get("counts", [])}


def _model_section(model: Model, min_confidence: float | None) -> str:
    """The page's account of the model: what it is, what it was trained on, when it answers 'unknown', and its
    classes."""
    about = [*model.about, ("unknown below", _threshold_fact(model, min_confidence))]
    facts = "".join(f"<dt>{_escape(name)}</dt><dd>{_escape(value)}</dd>" for name, value in about)
    counts = model.training_images
    items = "".join(
        f"<li>{_escape(name)}" + (f' <span class="muted">{counts[name]}</span>' if name in counts else "") + "</li>"
        for name in model.classes
    )
    note = ' <span class="muted">(training images)</span>' if counts else ""
    return f'<dl>{facts}</dl><h3>{len(model.classes)} classes{note}</h3><ul id="classes">{items}</ul>'


def _threshold_fact(model: Model, min_confidence: float | None) -> str:
    """The threshold in use, and the one the validation images suggest (applied only when given: --min-confidence)."""
    if model.kind == "onnx":
        recommended = model.classifier.metadata.get("recommended_min_confidence")
    else:
        from foldertune.deploy import recommended_min_confidence
        from foldertune.runs.folder import locate_checkpoint

        recommended = recommended_min_confidence(locate_checkpoint(model.source)[1])
    used = "never (no --min-confidence)" if min_confidence is None else f"{min_confidence:g}"
    if recommended:
        used += f"; {recommended['value']:g} reached {recommended['validation_precision']:.0%} accuracy on validation"
    return used


def _run_name(source: Path) -> str:
    return source.name if source.is_dir() else f"{source.parent.name}/{source.name}"


def _escape(text: str) -> str:
    from html import escape

    return escape(text)


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>foldertune: {{TITLE}}</title><link rel="icon" href="data:,">
<style>
 * { box-sizing: border-box; }
 [hidden] { display: none !important; }
 body { font: 16px/1.4 system-ui, "Noto Sans CJK SC", "Microsoft YaHei", sans-serif; color: #222; margin: 0;
        padding: 1em clamp(.75em, 3vw, 2em); }
 header, main, footer { max-width: 1200px; margin: 0 auto; }
 h1 { font-size: 1.5em; margin: 0 0 .6em; overflow-wrap: anywhere; }
 h2 { font-size: 1.2em; margin: 0 0 .4em; overflow-wrap: anywhere; }
 h3 { font-size: 1em; margin: .8em 0 .4em; }
 main { display: grid; grid-template-columns: minmax(0, 1fr); gap: 1.2em; }
 @media (min-width: 900px) { main { grid-template-columns: minmax(0, 1fr) 18em; } #model { grid-column: 2;
   grid-row: 1 / span 3; align-self: start; } }
 #drop { display: block; border: 2px dashed #888; border-radius: 10px; padding: 2em 1em; text-align: center;
         cursor: pointer; }
 #drop.over { background: #eef5ff; border-color: #36c; }
 #status, #error { margin: .5em 0 0; min-height: 1.4em; overflow-wrap: anywhere; }
 .row { display: grid; grid-template-columns: minmax(4em, 12em) minmax(3em, 1fr) 4em; gap: .6em; align-items: center;
        margin: .35em 0; }
 .label { overflow-wrap: anywhere; }
 .track { background: #eee; border-radius: 4px; height: 1.1em; }
 .fill { background: #36c; border-radius: 4px; height: 100%; }
 .prob { text-align: right; font-variant-numeric: tabular-nums; }
 #pictures { display: flex; flex-wrap: wrap; gap: 1em; }
 #pictures figure { flex: 1 1 150px; max-width: 420px; margin: 0; }  /* two side by side from 340 px on */
 #pictures img { display: block; width: 100%; height: auto; border-radius: 6px; }
 figcaption { font-size: .85em; color: #777; margin-top: .3em; }
 #model { background: #f6f7f9; border-radius: 10px; padding: 1em; }
 #model dl { display: grid; grid-template-columns: auto minmax(0, 1fr); gap: .2em .8em; margin: 0; font-size: .9em; }
 #model dt { color: #777; } #model dd { margin: 0; overflow-wrap: anywhere; }
 #classes { list-style: none; padding: 0; margin: 0; display: flex; flex-wrap: wrap; gap: .3em; max-height: 14em;
            overflow: auto; font-size: .9em; }
 #classes li { background: #fff; border: 1px solid #dde; border-radius: 1em; padding: .05em .6em; }
 #error { color: #b00; }
 .muted { color: #777; font-size: .9em; }
 footer { margin-top: 1.5em; }
</style></head>
<body>
<header><h1>{{TITLE}}</h1></header>
<main>
 <section id="upload">
  <label id="drop" for="file">Drop a photo here, or click to pick one
   <input id="file" type="file" accept="image/*" hidden></label>
  <p id="status" class="muted"></p>
  <p id="error"></p>
 </section>
 <section id="answer" hidden><h2 id="top1"></h2><div id="result"></div></section>
 <section id="pictures" hidden>
  <figure id="photo"><img id="preview" alt="the photo"><figcaption>the photo</figcaption></figure>
  <figure id="heat" hidden><img id="cam" alt="Grad-CAM: where the network looked"><figcaption>Grad-CAM: where the
   network looked (the part outside the centre crop it saw is dimmed)</figcaption></figure>
 </section>
 <aside id="model"><h2>The model</h2>{{MODEL}}</aside>
</main>
<footer class="muted">API: POST /predict, GET /classes, GET /health; <a href="/openapi.json">OpenAPI</a></footer>
<script>
const CAM = {{CAM}};
const TOKEN = new URLSearchParams(location.hash.slice(1)).get("token");  // serve --token: the page's #token=...
// every call to the server goes through here
async function request(path, options) {
  let response;
  const headers = TOKEN ? { Authorization: "Bearer " + TOKEN } : {};
  try { response = await fetch(path, { ...options, headers }); }
  catch (error) { throw new Error("the server did not answer: " + error.message); }
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.detail || response.status + " " + response.statusText);
  return body;
}
const $ = id => document.getElementById(id);
const show = (id, text) => { $(id).textContent = text; };
const drop = $("drop"), input = $("file");
drop.addEventListener("dragover", e => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", e => { e.preventDefault(); drop.classList.remove("over");
  if (e.dataTransfer.files.length) predict(e.dataTransfer.files[0]); });
input.addEventListener("change", () => { if (input.files.length) predict(input.files[0]); });
function bar(item) {
  const row = document.createElement("div"); row.className = "row";
  const name = document.createElement("span"); name.className = "label"; name.textContent = item.label;
  const track = document.createElement("div"); track.className = "track";
  const fill = document.createElement("div"); fill.className = "fill";
  fill.style.width = (100 * item.probability).toFixed(1) + "%"; track.appendChild(fill);
  const prob = document.createElement("span"); prob.className = "prob";
  prob.textContent = (100 * item.probability).toFixed(1) + "%";
  row.append(name, track, prob);
  return row;
}
async function predict(file) {
  show("error", ""); show("top1", ""); show("status", "predicting " + file.name + " ...");
  $("result").replaceChildren(); $("answer").hidden = true; $("heat").hidden = true;
  $("preview").src = URL.createObjectURL(file); $("pictures").hidden = false;
  const form = new FormData(); form.append("files", file);
  try {
    const p = (await request("/predict" + (CAM ? "?cam=true" : ""), { method: "POST", body: form })).predictions[0];
    const percent = (100 * p.probability).toFixed(1) + "%";
    show("top1", p.label === p.top_label ? p.label + " (" + percent + ")"
      : p.label + " (best guess " + p.top_label + ", " + percent + ", is below the threshold)");
    $("result").append(...p.topk.map(bar)); $("answer").hidden = false;
    if (p.gradcam) { $("cam").src = p.gradcam; $("heat").hidden = false; }
    show("status", file.name);
  } catch (error) { show("status", file.name); show("error", error.message); }
}
</script>
</body></html>
"""
