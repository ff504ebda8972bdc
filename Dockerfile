# flashsale in a container: the CLI, a worker, a producer or the dashboard (docker-compose.yml).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY flashsale ./flashsale
COPY producers ./producers
COPY streams ./streams
COPY benchmarks ./benchmarks
RUN pip install --no-cache-dir . && useradd --create-home flashsale
USER flashsale
# Inside a container a listener must take connections from the other services.
ENV FLASHSALE_WEB_HOST=0.0.0.0
ENTRYPOINT ["flashsale"]
CMD ["--help"]
