# flashsale in a container: the CLI, a worker, a producer or the dashboard (docker-compose.yml).
# The build stage has a C compiler, so streams/packed.py is compiled (setup.py); the image
# installs the wheel it built, without the compiler, and without the extras (research,
# loadtest, soak): a worker, producer, gateway or dashboard needs none of them.
FROM python:3.11-slim AS build
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY flashsale ./flashsale
COPY producers ./producers
COPY streams ./streams
COPY verify ./verify
COPY recordings ./recordings
COPY dashboards ./dashboards
COPY loadtests ./loadtests
COPY benchmarks ./benchmarks
COPY orchestration ./orchestration
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM python:3.11-slim
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels && useradd --create-home flashsale
USER flashsale
# Inside a container a listener must take connections from the other services.
ENV FLASHSALE_WEB_HOST=0.0.0.0
ENTRYPOINT ["flashsale"]
CMD ["--help"]
