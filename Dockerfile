# The incidents service image of compose.yaml: the same image runs the projector+query replica
# (INCIDENTS_ROLE=all) and the stateless API/intake replicas (INCIDENTS_ROLE=api).
FROM python:3.11-slim
COPY --from=ghcr.io/astral-sh/uv:0.13 /uv /usr/local/bin/uv
WORKDIR /app
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --no-install-project
COPY events events
COPY projections projections
COPY services services
RUN uv sync --frozen --no-dev
ENV PATH="/app/.venv/bin:$PATH" INCIDENTS_DATA_DIR=/data
EXPOSE 8080
CMD ["incidents", "serve"]
