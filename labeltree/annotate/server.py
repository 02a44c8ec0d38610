"""The labelling web page and its JSON API (Starlette, served by uvicorn).

Every write is one SQLite transaction (db.decide / db.undo / db.claim_next), so the server can be
killed at any moment without losing an acknowledged decision, and any number of tabs can work at
once: each is shown a proposal reserved for it, and decisions are compare-and-set.
Images are addressed by proposal id only and resolved against the registered root, so no URL can
name a file; requests are validated with pydantic and refused with 4xx.
"""

from __future__ import annotations

import io
import threading
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from scipy import ndimage as ndi
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from labeltree.annotate import db
from labeltree.annotate.classes import EXTRA_CHOICES, sign_decisions
from labeltree.annotate.examples import DEFAULT_PER_CLASS, ExampleSet, context_window, load_examples
from labeltree.annotate.glyphs import glyph_svg, special_svg
from labeltree.annotate.propose import read_components
from labeltree.core.taxonomy import load_taxonomy
from labeltree.datasets.base import Sample, read_label
from labeltree.datasets.decode import read_rgb
from labeltree.errors import LabeltreeError

STATIC = Path(__file__).parent / "static"
MAX_BODY = 16 * 1024
FRAME_WIDTH = 1024
CROP_SIDE = 320
OUTLINE = (255, 0, 255)
LOOPBACK_HOSTS = ["127.0.0.1", "localhost", "::1", "[::1]"]

ClientId = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")]
Annotator = Annotated[str, Field(pattern=r"^[\w .@-]{1,64}$")]


class _Req(BaseModel):
    model_config = ConfigDict(extra="forbid")

    client: ClientId
    annotator: Annotator | None = None


SQLITE_MAX = 2**63 - 1  # ids above SQLite's integer range name no proposal: 404 / 422, never a 500


def _pid(request: Request) -> int:
    pid = request.path_params["pid"]
    if not 0 < pid <= SQLITE_MAX:
        raise HTTPException(404, f"no proposal {pid}")
    return pid


class NextReq(_Req):
    after: int = Field(default=0, ge=0, le=SQLITE_MAX, strict=True)


class UndoReq(_Req):
    pass


class DecideReq(_Req):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    proposal: int = Field(gt=0, le=SQLITE_MAX, strict=True)
    cls: str | int = Field(alias="class")
    previous: str | int | None = None

    @field_validator("cls", "previous", mode="before")
    @classmethod
    def _known_class(cls, v: object) -> object:
        return None if v is None else sign_decisions().parse(v)


async def _body(request: Request, model: type[BaseModel]) -> Any:
    """Parse a JSON body into `model`, refusing anything else with 4xx."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/json":
        # also keeps other web sites from posting here with a plain form (no CORS preflight)
        raise HTTPException(415, "send JSON with Content-Type: application/json")
    length = request.headers.get("content-length")
    if length is not None and (not length.isdigit() or int(length) > MAX_BODY):
        raise HTTPException(413, f"request body over {MAX_BODY} bytes")
    raw = bytearray()
    async for chunk in request.stream():  # the limit holds while reading: a chunked body has no length
        raw += chunk
        if len(raw) > MAX_BODY:
            raise HTTPException(413, f"request body over {MAX_BODY} bytes")
    try:
        return model.model_validate_json(raw)
    except ValidationError as e:
        bad_json = any(err["type"] == "json_invalid" for err in e.errors())
        detail = [{"loc": list(err["loc"]), "msg": err["msg"]} for err in e.errors()]
        raise HTTPException(400 if bad_json else 422, detail if not bad_json else "malformed JSON") from None


def crop_geometry(box: tuple[int, int, int, int], width: int, height: int
                  ) -> tuple[tuple[int, int, int, int], tuple[int, int]]:
    """The proposal crop's window in the frame (exclusive x1, y1) and its enlarged size (longer side CROP_SIDE)."""
    win = context_window(box, width, height)
    cw, ch = win[2] - win[0], win[3] - win[1]
    scale = CROP_SIDE / max(cw, ch)
    return win, (max(1, round(cw * scale)), max(1, round(ch * scale)))


class Annotation:
    """The app's state: the WORKDIR, its registered root, one SQLite connection per thread, and the GTSDB
    examples of each class when a GTSDB folder is given."""

    def __init__(self, workdir: str | Path, order: str = "image", gtsdb: str | Path | None = None,
                 examples_per_class: int = DEFAULT_PER_CLASS):
        if order not in db.ORDERS:
            raise LabeltreeError(f"order must be one of {', '.join(db.ORDERS)}, not {order!r}")
        self.order = order
        self.workdir = Path(workdir).resolve()
        con = db.connect(self.workdir)
        try:
            self.root = db.registered_root(con, self.workdir).resolve()
        finally:
            con.close()
        self.space = sign_decisions()
        self._local = threading.local()
        self.render_cache = lru_cache(maxsize=6)(self._load_image)
        self.examples: ExampleSet | None = (load_examples(gtsdb, self.workdir, examples_per_class)
                                            if gtsdb is not None else None)

    @property
    def con(self):
        con = getattr(self._local, "con", None)
        if con is None:
            con = self._local.con = db.connect(self.workdir)
        return con

    # -- files ----------------------------------------------------------------------------
    def safe_path(self, rel: str | None, base: Path) -> Path | None:
        """A file named in the database, only if it lies inside `base` (never elsewhere on disk)."""
        if not rel:
            return None
        p = (base / rel).resolve()
        if base not in p.parents:
            raise HTTPException(403, "file outside the registered root")
        return p

    def _load_image(self, proposal_image: tuple[str, str | None, str]) -> tuple[np.ndarray, np.ndarray]:
        label_rel, image_rel, comp_rel = proposal_image
        comps_path = self.safe_path(comp_rel, self.workdir)
        label_path = self.safe_path(label_rel, self.root)
        image_path = self.safe_path(image_rel, self.root)
        comps = read_components(comps_path)
        if image_path is not None and image_path.exists():
            rgb = read_rgb(image_path)
        else:  # no photo: show the label map in its taxonomy colours
            tax = load_taxonomy("cityscapes")
            label = read_label(Sample.of_label(label_path, tax), tax)
            rgb = tax.palette()[label]
        return rgb, comps

    def example_path(self, class_id: int, index: int) -> Path:
        """The cached picture `index` of a class, only from inside the examples folder."""
        ex = self.examples.by_class.get(class_id, []) if self.examples is not None else []
        if not 0 <= index < len(ex):
            raise HTTPException(404, f"no example {index} of class {class_id}")
        p = self.safe_path(ex[index].file, self.examples.folder.resolve())  # type: ignore[union-attr]
        if p is None or not p.is_file():
            raise HTTPException(404, f"example {index} of class {class_id} is gone; restart serve to re-crop")
        return p

    def examples_json(self, class_id: int) -> list[dict[str, Any]]:
        if self.examples is None:
            return []
        return [{"url": f"/api/examples/{class_id}/{i}.png?v={self.examples.version}", "frame": e.frame,
                 "size": list(e.size), "box": list(e.box_in_crop)}
                for i, e in enumerate(self.examples.by_class.get(class_id, []))]

    def render(self, row, kind: str) -> bytes:
        rgb, comps = self.render_cache((row["label"], row["image"], row["components"]))
        mask = comps == row["component"]
        x0, y0, x1, y1 = row["x0"], row["y0"], row["x1"], row["y1"]
        if kind == "frame":
            out = rgb.copy()
            edge = ndi.binary_dilation(mask & ~ndi.binary_erosion(mask), iterations=2)
            out[edge] = OUTLINE
            m = 12
            bx0, by0 = max(0, x0 - m), max(0, y0 - m)
            bx1, by1 = min(out.shape[1] - 1, x1 + m), min(out.shape[0] - 1, y1 + m)
            for t in range(3):
                out[max(0, by0 - t), bx0:bx1 + 1] = OUTLINE
                out[min(out.shape[0] - 1, by1 + t), bx0:bx1 + 1] = OUTLINE
                out[by0:by1 + 1, max(0, bx0 - t)] = OUTLINE
                out[by0:by1 + 1, min(out.shape[1] - 1, bx1 + t)] = OUTLINE
            im = Image.fromarray(out)
            if im.width > FRAME_WIDTH:
                im = im.resize((FRAME_WIDTH, round(im.height * FRAME_WIDTH / im.width)), Image.Resampling.BILINEAR)
            buf = io.BytesIO()
            im.save(buf, format="JPEG", quality=85)
            return buf.getvalue()
        # crop: the sign with half its size of context on each side (as the GTSDB examples), enlarged
        (cx0, cy0, cx1, cy1), size = crop_geometry((x0, y0, x1, y1), rgb.shape[1], rgb.shape[0])
        crop = Image.fromarray(rgb[cy0:cy1, cx0:cx1])
        big = np.asarray(crop.resize(size, Image.Resampling.LANCZOS)).copy()
        mbig = np.asarray(Image.fromarray(mask[cy0:cy1, cx0:cx1].astype(np.uint8) * 255).resize(
            size, Image.Resampling.NEAREST)) > 0
        edge = mbig & ~ndi.binary_erosion(mbig, iterations=2)
        big[edge] = OUTLINE
        buf = io.BytesIO()
        Image.fromarray(big).save(buf, format="PNG")
        return buf.getvalue()

    # -- JSON views -----------------------------------------------------------------------
    def proposal_json(self, pid: int) -> dict[str, Any]:
        row = db.proposal_row(self.con, pid)
        if row is None:
            raise HTTPException(404, f"no proposal {pid}")
        return {"id": row["id"], "split": row["split"], "key": row["key"], "city": row["city"],
                "component": row["component"], "bbox": [row["x0"], row["y0"], row["x1"], row["y1"]],
                "area": row["area"], "width": row["width"], "height": row["height"], "class": row["class"],
                "class_name": self.space.name(row["class"]),
                "suggestion": None if row["suggestion"] is None else {
                    "class": row["suggestion"], "name": self.space.name(row["suggestion"]),
                    "confidence": round(float(row["confidence"]), 4)},
                "frame": f"/api/proposal/{pid}/frame.jpg", "crop": f"/api/proposal/{pid}/crop.png",
                **self._crop_json(row)}

    @staticmethod
    def _crop_json(row) -> dict[str, Any]:
        """Size of crop.png and the sign's edges in it, so the page can show the examples at the same scale."""
        (cx0, cy0, cx1, cy1), (w, h) = crop_geometry((row["x0"], row["y0"], row["x1"], row["y1"]),
                                                     row["width"], row["height"])
        sx, sy = w / (cx1 - cx0), h / (cy1 - cy0)
        edges = [(row["x0"] - cx0) * sx, (row["y0"] - cy0) * sy, (row["x1"] + 1 - cx0) * sx, (row["y1"] + 1 - cy0) * sy]
        return {"crop_size": [w, h], "crop_box": [round(v, 2) for v in edges]}

    def progress_json(self) -> dict[str, Any]:
        splits = db.progress(self.con)
        return {"splits": splits, "done": sum(s["done"] for s in splits), "total": sum(s["total"] for s in splits)}

    def info_json(self) -> dict[str, Any]:
        classes = [{"key": str(c.id), "id": c.id, "name": c.name, "shape": c.shape, "category": c.category,
                    "color": list(c.color), "svg": glyph_svg(c.shape, c.color, str(c.id)),
                    "examples": self.examples_json(c.id)}
                   for c in self.space.sign_classes]
        extras = [{"key": k, "id": None, "name": name, "shape": None, "category": None, "color": None,
                   "svg": special_svg(k), "examples": []} for k, name in EXTRA_CHOICES.items()]
        return {"classes": classes + extras, "progress": self.progress_json(), "gtsdb": self._gtsdb()}

    def _gtsdb(self) -> str | None:
        return str(self.examples.source) if self.examples is not None else None

    def classes_json(self) -> dict[str, Any]:
        """Each GTSDB class with the URLs of its example pictures (none without --gtsdb)."""
        return {"gtsdb": self._gtsdb(), "per_class": self.examples.per_class if self.examples else 0,
                "classes": [{"id": c.id, "name": c.name, "shape": c.shape, "category": c.category,
                             "examples": [e["url"] for e in self.examples_json(c.id)]}
                            for c in self.space.sign_classes]}


def _state(request: Request) -> Annotation:
    return request.app.state.annotation


async def _index(_request: Request) -> Response:
    return FileResponse(STATIC / "index.html", media_type="text/html")


async def _info(request: Request) -> Response:
    return JSONResponse(await run_in_threadpool(_state(request).info_json))


async def _classes(request: Request) -> Response:
    return JSONResponse(_state(request).classes_json())


async def _example(request: Request) -> Response:
    path = _state(request).example_path(request.path_params["k"], request.path_params["i"])
    return FileResponse(path, media_type="image/png", headers={"Cache-Control": "private, max-age=3600"})


async def _progress(request: Request) -> Response:
    return JSONResponse(await run_in_threadpool(_state(request).progress_json))


async def _next(request: Request) -> Response:
    req: NextReq = await _body(request, NextReq)
    state = _state(request)

    def work() -> dict[str, Any]:
        pid = db.claim_next(state.con, req.client, req.after, order=state.order)
        return {"proposal": state.proposal_json(pid) if pid else None,
                "waiting": 0 if pid else db.held_by_others(state.con, req.client),
                "progress": state.progress_json()}

    return JSONResponse(await run_in_threadpool(work))


async def _decide(request: Request) -> Response:
    req: DecideReq = await _body(request, DecideReq)
    state = _state(request)

    def work() -> Response:
        try:
            res = db.decide(state.con, req.proposal, req.cls, req.previous, req.client, req.annotator)
        except KeyError:
            return JSONResponse({"error": f"no proposal {req.proposal}"}, status_code=404)
        except db.Conflict as c:
            return JSONResponse({"error": "changed by another annotator", "current": c.current,
                                 "current_name": state.space.name(c.current)}, status_code=409)
        return JSONResponse({"changed": res.changed, "old": res.old, "new": res.new,
                             "progress": state.progress_json()})

    return await run_in_threadpool(work)


async def _undo(request: Request) -> Response:
    req: UndoReq = await _body(request, UndoReq)
    state = _state(request)

    def work() -> dict[str, Any]:
        res = db.undo(state.con, req.client, req.annotator)
        return {"proposal": state.proposal_json(res.proposal_id) if res else None,
                "reverted": {"old": res.old, "new": res.new} if res else None,
                "progress": state.progress_json()}

    return JSONResponse(await run_in_threadpool(work))


async def _proposal(request: Request) -> Response:
    return JSONResponse(await run_in_threadpool(_state(request).proposal_json, _pid(request)))


def _picture(kind: str, media: str):
    """A handler rendering one proposal's `kind` picture ('frame' or 'crop')."""
    async def view(request: Request) -> Response:
        pid, state = _pid(request), _state(request)

        def work() -> bytes:
            row = db.proposal_row(state.con, pid)
            if row is None:
                raise HTTPException(404, f"no proposal {pid}")
            return state.render(row, kind)

        return Response(await run_in_threadpool(work), media_type=media,
                        headers={"Cache-Control": "private, max-age=3600"})
    return view


async def _http_error(_request: Request, exc: HTTPException) -> Response:
    return JSONResponse({"error": exc.detail}, status_code=exc.status_code)


async def _bad_input(_request: Request, exc: LabeltreeError) -> Response:
    return JSONResponse({"error": str(exc)}, status_code=500)


ROUTES = [
    Route("/", _index),
    Route("/api/info", _info),
    Route("/api/classes", _classes),
    Route("/api/examples/{k:int}/{i:int}.png", _example),
    Route("/api/progress", _progress),
    Route("/api/next", _next, methods=["POST"]),
    Route("/api/decide", _decide, methods=["POST"]),
    Route("/api/undo", _undo, methods=["POST"]),
    Route("/api/proposal/{pid:int}", _proposal),
    Route("/api/proposal/{pid:int}/frame.jpg", _picture("frame", "image/jpeg")),
    Route("/api/proposal/{pid:int}/crop.png", _picture("crop", "image/png")),
    Mount("/static", StaticFiles(directory=STATIC), name="static"),
]


def create_app(workdir: str | Path, allowed_hosts: list[str] | None = None, order: str = "image",
               gtsdb: str | Path | None = None, examples_per_class: int = DEFAULT_PER_CLASS) -> Starlette:
    """The ASGI app for WORKDIR (its state in `app.state.annotation`, read by the handlers above).
    `allowed_hosts` guards against DNS rebinding when bound to loopback; `order` "confidence" shows the
    proposals with the most confident suggestion first; `gtsdb` (a GTSDB folder) gives each class button
    example pictures cropped from its frames."""
    state = Annotation(workdir, order, gtsdb, examples_per_class)
    middleware = [Middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts)] if allowed_hosts else []
    app = Starlette(routes=ROUTES, middleware=middleware,
                    exception_handlers={HTTPException: _http_error, LabeltreeError: _bad_input})
    app.state.annotation = state
    return app


def allowed_hosts_for(host: str) -> list[str] | None:
    """Host headers to accept: only loopback names when bound to loopback (DNS rebinding guard)."""
    return LOOPBACK_HOSTS if host in ("127.0.0.1", "localhost", "::1") else None


def serve(workdir: str | Path, host: str = "127.0.0.1", port: int = 8765, log_level: str = "warning",
          order: str = "image", gtsdb: str | Path | None = None, examples_per_class: int = DEFAULT_PER_CLASS,
          app: Starlette | None = None) -> None:
    """Run the page with uvicorn until interrupted (`app`: one already made by create_app)."""
    import uvicorn

    if app is None:
        app = create_app(workdir, allowed_hosts=allowed_hosts_for(host), order=order, gtsdb=gtsdb,
                         examples_per_class=examples_per_class)
    check_bind(host, port)
    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=False)


def check_bind(host: str, port: int) -> None:
    """Fail with one line (exit 2) when HOST:PORT cannot be bound, before uvicorn prints its own exit 3."""
    import socket

    if not 1 <= port <= 65535:
        raise LabeltreeError(f"--port {port}: a port is 1..65535")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as e:
        raise LabeltreeError(f"--host {host}: cannot resolve it ({e})") from None
    fam, _, _, _, addr = infos[0]
    with socket.socket(fam, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does: a TIME_WAIT port is free
        try:
            sock.bind(addr)
        except OSError as e:
            raise LabeltreeError(f"cannot listen on {host}:{port} ({e.strerror or e}); is another serve running? "
                                 "choose another --port") from None
