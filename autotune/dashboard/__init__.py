"""The web dashboard of runs: ``autotune dashboard [RUN_DIR ... | --storage URL]``.

A small FastAPI app (:func:`autotune.dashboard.app.create_app`) serves a JSON API under ``/api``
(described by ``/api/openapi.json``) and a single static page that draws it with a vendored copy of
Apache ECharts, so it works offline.  The dashboard only reads: it opens the runs' databases the
same way ``autotune show`` does, and reads no file but ``trial.log`` inside the run folders it was
given.  :func:`autotune.dashboard.server.serve` is the command's entry point.
"""
