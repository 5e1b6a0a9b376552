"""Scribe ingest: the HTTP front door. Where things are:

Wiring
    app.py          the FastAPI app (`create_app`, `build_app`): routers, error handlers
    container.py    the composition root: every object built once (`open_container`, `wire`)
    deps.py         what a route may ask for (`Settings`, `Tenant`, `Uploads`, `Queries`, ...)
    main.py         the `scribe-ingest` command (serve, hash-key)
    server.py       uvicorn's configuration, and the protocol that bounds request heads
    settings.py     `SCRIBE_INGEST_*`

HTTP layer (parse input, call a use case or the read port, shape the answer)
    submissions.py  POST /v1/transcriptions
    lifecycle.py    POST /v1/transcriptions/{id}/cancel, DELETE /v1/transcriptions/{id}
    reads.py        jobs, listing, transcript exports, search
    openai_compat.py  OpenAI's audio API: /v1/audio/transcriptions, /translations, /v1/models
    health.py       /healthz, /readyz        metrics.py  /metrics and the counters
    errors.py       the one map from failure class to HTTP status and headers
    openapi.py      examples and error catalogues shown at /docs
    docs.py         /docs and /redoc from local assets (fastapi-offline), nothing fetched elsewhere
    links.py        the one shape of a job's `links`
    multipart.py    the streaming form parser    cursors.py  signed paging cursors
    bodies.py       a request body bounded in time (stalled, crawling, vanished clients)

Use cases and their ports
    failures.py     every failure class, with its stable code
    uploads.py      `UploadService`: probe, store, publish `audio.uploaded.v1`
    job_requests.py `JobLifecycle`: cancel and delete requests; erase ingest's files of a
                    deleted job (consumer of `transcription.deleted.v1`)
    probe.py        is it audio, and how long (PyAV)       options.py  transcription options
    limits.py       per-tenant upload slots                auth.py     API keys and tenants
    media.py        the media store (port + filesystem adapter)
    idempotency.py  `Idempotency-Key` records (port + filesystem adapter)
    broker.py       the publisher adapter (RabbitMQ, confirms)   asyncapi.py  its AsyncAPI
    queries.py      `JobReader`, the read side's port over the read-only role
    search.py       the full-text search statement          exports.py  txt / SRT / WebVTT
    read_models.py  the read API's response bodies
"""
