"""``carbonsched server``: the planner and the job store for a team, over HTTP.

A request's path through the files::

    security.py   BodyLimit (413 before a byte is parsed), then auth: Bearer token -> run/tokens.py
                  (401 unknown, 403 scope), per-token RateLimiter (429 + Retry-After)
    app.py        the routes: parse the body with the same readers as the CLI (spec/job.py,
                  spec/batch_file.py), call the library (planning/, run/submit.py, measure/),
                  answer with the same documents as the CLI's --json (Plan.to_dict,
                  run/views.py, forecast_to_dict, the report's disclosure)
    metrics.py    Prometheus text at /metrics: requests, plan latency, jobs by state, launch
                  attempts by outcome (failovers are the capacity ones)
    client.py     the other side: the CLI's HTTP client when CARBONSCHED_SERVER is set

FastAPI and uvicorn come with ``carbonsched[server]`` and are imported only by ``carbonsched
server``. Every job belongs to the team of the token that submitted it; a token never sees another
team's jobs (their ids answer 404, as an unknown id does).
"""
