"""What the tests, the fault suite and the benchmarks share to run Scribe for real.

- `servers`: the RabbitMQ and PostgreSQL servers to use (found or started), fresh vhosts
  and databases on them, and the fault suite's own RabbitMQ node and PostgreSQL cluster;
- `fixtures`: the pytest fixtures over `servers` (a vhost and a database per test);
- `stack`: the services as real processes (migrate, indexer, transcriber(s), ingest);
- `workers`: transcriber processes and an event tap for the transcriber's tests;
- `crashing_transcriber`: a real worker that dies on chosen files (the crash-loop test);
- `waiting`: `eventually`, polling a condition instead of sleeping a fixed time;
- `ports`: `free_port`.
"""
