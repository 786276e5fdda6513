"""`atlas serve --outdir D [--host 127.0.0.1] [--port 8000]`: a local, read-only web explorer of an atlas.

Starlette + Jinja2 served by uvicorn; every query runs in DuckDB on the server over the atlas's own files,
opened read-only, so it can run beside the workflow. 3Dmol.js (vendored under static/, see static/README.md)
draws the structures in the browser: nothing is fetched from the network. Routes: atlas.serve.app.
"""

from __future__ import annotations

import argparse
import sys

from atlas.query import AtlasError, add_outdir_argument, resolve_outdir


def serve_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="atlas serve", description="a local read-only web explorer of the atlas"
    )
    add_outdir_argument(parser)
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: this machine only)"
    )
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument(
        "--cache-dir",
        help="where the copy of the index that results pages read is kept (default: atlas-serve-UID in the "
        "system's temporary folder)",
    )
    args = parser.parse_args(argv)
    import uvicorn

    from atlas.serve.app import create_app

    outdir = resolve_outdir(args.outdir)
    try:
        app = create_app(outdir, args.cache_dir)
    except (AtlasError, OSError) as error:
        print(f"atlas serve: error: {error}", file=sys.stderr)
        return 1
    print(f"atlas serve: {outdir} at http://{args.host}:{args.port}/ (Ctrl-C stops)", file=sys.stderr)
    uvicorn.run(app, host=args.host, port=args.port, log_level="info")
    return 0
