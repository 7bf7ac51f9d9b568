# One image for the server, the agents and the CLI (README "Team setup"; deploy/compose.yaml).
#   docker build -t carbonsched .
#   docker run --rm carbonsched plan examples/job.toml
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY scheduler scheduler
COPY providers providers
COPY policies policies
COPY data data
RUN pip wheel --no-cache-dir --wheel-dir /wheels '.[server,postgres,aws,gcp]'

FROM python:3.11-slim
RUN useradd --create-home --uid 10001 carbonsched
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links /wheels 'carbonsched[server,postgres,aws,gcp]' && rm -rf /wheels
COPY examples /opt/carbonsched/examples
USER carbonsched
WORKDIR /opt/carbonsched
ENV CARBONSCHED_HOME=/home/carbonsched/state PYTHONUNBUFFERED=1
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4)" || exit 1
ENTRYPOINT ["carbonsched"]
CMD ["server", "--host", "0.0.0.0", "--port", "8080"]
