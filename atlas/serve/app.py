"""The explorer's routes (Starlette): HTML pages and the same data as JSON under /api/.

URLs (stable: people share them, scripts call them):
    /                               search and results (query parameters: see atlas.serve.store)
    /drops                          what each drop added ("new in this drop")
    /structure/{id}                 one prediction: 3D view coloured by pLDDT, pLDDT plot, PAE, sequence hit,
                                    best structural hit, cluster, metadata
    /download/cif/{id}, /download/pdb/{id}   the structure as mmCIF or PDB
    /api/search?q=...               one page of results as JSON (same parameters as /)
    /api/structure/{id}             one prediction as JSON (metrics, per-residue pLDDT, novelty, structural,
                                    cluster, header)
    /api/pae/{id}                   the stored PAE: L x L bytes (0.5 A steps, row-major); 404 when not stored
    /api/drops                      the drops summary as JSON
    /static/...                     the packaged assets (3Dmol.js, CSS, scripts)
An id that is ambiguous across drops takes `?drop=NAME`. Errors are 4xx with a message (JSON under /api/,
a page elsewhere); an unexpected failure is a bare 500 (no traceback is ever sent).
"""

from __future__ import annotations

import math
from pathlib import Path
from urllib.parse import quote, urlencode

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from atlas.export import safe_name
from atlas.query import _json_value
from atlas.serve.store import Atlas, BadRequest, NotFound, parse_search
from atlas.structure import render_mmcif, render_pdb
from atlas.tables import PAE_STEP

HERE = Path(__file__).resolve().parent
PLDDT_BANDS = ((90, "#0053d6"), (70, "#65cbf3"), (50, "#ffdb13"), (0, "#ff7d45"))  # AlphaFold DB colours


def plddt_colour(value: float | None) -> str:
    for low, colour in PLDDT_BANDS:
        if value is not None and value >= low:
            return colour
    return "#999999"


def plddt_svg_points(values: list[float], width: int = 640, height: int = 140) -> str:
    """The per-residue pLDDT as an SVG polyline's points (x across the sequence, y 0-100)."""
    if not values:
        return ""
    step = width / max(1, len(values) - 1)
    return " ".join(f"{i * step:.1f},{height - height * v / 100:.1f}" for i, v in enumerate(values))


def structure_url(identifier: str, drop: str | None = None, prefix: str = "/structure/") -> str:
    url = prefix + quote(identifier, safe="")
    return url + ("?" + urlencode({"drop": drop}) if drop else "")


def _error(request: Request, status: int, message: str) -> Response:
    if request.url.path.startswith("/api/"):
        return JSONResponse({"error": message, "status": status}, status_code=status)
    templates = request.app.state.templates
    return templates.TemplateResponse(
        request, "error.html", {"status": status, "message": message}, status_code=status
    )


def _drop_parameter(request: Request) -> str | None:
    unknown = set(request.query_params) - {"drop"}
    if unknown:
        raise BadRequest(f"unknown parameter {sorted(unknown)[0][:40]!r}; a structure takes only drop")
    return request.query_params.get("drop") or None


def _structure(request: Request) -> dict:
    return request.app.state.atlas.structure(request.path_params["id"], _drop_parameter(request))


def _display(value):
    if isinstance(value, float):
        return "" if not math.isfinite(value) else f"{value:.3g}" if abs(value) < 1e-2 else f"{value:.2f}"
    return "" if value is None else value


def _structure_json(data: dict) -> dict:
    prediction = data["prediction"]
    hidden = ("structure", "pae", "plddt")
    return {
        "id": prediction["id"],
        "requested_id": data["place"].get("alias", prediction["id"]),
        "in_atlas": data["place"]["atlas"] is not None,
        "prediction": {name: _json_value(value) for name, value in prediction.items() if name not in hidden},
        "plddt": _json_value(prediction.get("plddt")),
        "pae_stored": prediction.get("pae") is not None,
        "novelty": _json_value(data["novelty"]),
        "structural": _json_value(data["structural"]),
        "cluster": _json_value(
            {name: data["place"]["atlas"].get(name) for name in ("cluster", "cluster_representative")}
            if data["place"]["atlas"]
            else None
        ),
        "header": _json_value(data["header"]),
        "downloads": {
            kind: structure_url(prediction["id"], prediction["drop"], f"/download/{kind}/")
            for kind in ("cif", "pdb")
        },
    }


# ------------------------------------------------------------------------------------------------ pages


def index_page(request: Request) -> Response:
    atlas = request.app.state.atlas
    search = parse_search(list(request.query_params.multi_items()))
    result = atlas.search(search)
    return request.app.state.templates.TemplateResponse(
        request,
        "index.html",
        {"result": result, "search": search, "drops": atlas.drops, "columns": atlas.columns["atlas"]},
    )


def drops_page(request: Request) -> Response:
    atlas = request.app.state.atlas
    return request.app.state.templates.TemplateResponse(
        request, "drops.html", {"drops": atlas.drop_summary()}
    )


def structure_page(request: Request) -> Response:
    data = _structure(request)
    prediction = data["prediction"]
    plddt = list(prediction.get("plddt") or [])
    return request.app.state.templates.TemplateResponse(
        request,
        "structure.html",
        {
            "data": data,
            "p": prediction,
            "plddt_points": plddt_svg_points(plddt),
            "pae_url": structure_url(prediction["id"], prediction["drop"], "/api/pae/")
            if prediction.get("pae") is not None
            else None,
            "cif_url": structure_url(prediction["id"], prediction["drop"], "/download/cif/"),
            "pdb_url": structure_url(prediction["id"], prediction["drop"], "/download/pdb/"),
        },
    )


def download(request: Request) -> Response:
    kind = request.path_params["kind"]
    if kind not in ("cif", "pdb"):
        raise NotFound(f"no download of kind {kind[:20]!r}: cif or pdb")
    prediction = _structure(request)["prediction"]
    if prediction.get("structure") is None:
        raise NotFound(
            f"{prediction['id']!r} has no structure ({prediction['status']}: {prediction['error']})"
        )
    text = render_mmcif(prediction) if kind == "cif" else render_pdb(prediction)
    name = f"{safe_name(prediction['id'])}.{kind}"
    return Response(
        text,
        media_type="chemical/x-mmcif" if kind == "cif" else "chemical/x-pdb",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


# -------------------------------------------------------------------------------------------------- api


def api_search(request: Request) -> Response:
    search = parse_search(list(request.query_params.multi_items()))
    result = request.app.state.atlas.search(search)
    rows = [{name: _json_value(value) for name, value in row.items()} for row in result["rows"]]
    for row in rows:
        row["url"] = structure_url(row["id"], row["drop"])
    return JSONResponse(
        {
            "total": result["total"],
            "page": search.page,
            "per_page": search.per_page,
            "pages": result["pages"],
            "sort": search.sort,
            "order": search.order,
            "rows": rows,
        }
    )


def api_structure(request: Request) -> Response:
    return JSONResponse(_structure_json(_structure(request)))


def api_pae(request: Request) -> Response:
    prediction = _structure(request)["prediction"]
    if prediction.get("pae") is None:
        raise NotFound(f"no PAE stored for {prediction['id']!r} (fold with store_pae: true)")
    return Response(
        bytes(prediction["pae"]),
        media_type="application/octet-stream",
        headers={"X-PAE-Length": str(prediction["length"]), "X-PAE-Step": str(PAE_STEP)},
    )


def api_drops(request: Request) -> Response:
    return JSONResponse({"drops": request.app.state.atlas.drop_summary()})


# ---------------------------------------------------------------------------------------------- the app


async def bad_request(request: Request, error: BadRequest) -> Response:
    return _error(request, 400, str(error))


async def not_found(request: Request, error: NotFound) -> Response:
    return _error(request, 404, str(error))


async def http_error(request: Request, error: HTTPException) -> Response:
    return _error(request, error.status_code, str(error.detail))


def create_app(outdir: str | Path, cache_dir: str | Path | None = None) -> Starlette:
    """The explorer of OUTDIR's atlas (raises atlas.query.AtlasError when it has none); the copy of the index
    that results pages read goes in CACHE_DIR (default: atlas-serve-UID in the system's temporary folder)."""
    atlas = Atlas(outdir, cache_dir)
    routes = [
        Route("/", index_page),
        Route("/drops", drops_page),
        Route("/structure/{id:path}", structure_page),
        Route("/download/{kind}/{id:path}", download),
        Route("/api/search", api_search),
        Route("/api/structure/{id:path}", api_structure),
        Route("/api/pae/{id:path}", api_pae),
        Route("/api/drops", api_drops),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    app = Starlette(
        routes=routes,
        exception_handlers={BadRequest: bad_request, NotFound: not_found, HTTPException: http_error},
    )
    templates = Jinja2Templates(directory=HERE / "templates")
    templates.env.globals.update(
        structure_url=structure_url, plddt_colour=plddt_colour, display=_display, urlencode=urlencode
    )
    app.state.atlas = atlas
    app.state.templates = templates
    return app
