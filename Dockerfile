FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY schemas schemas
COPY streams streams
COPY processors processors
COPY gateway gateway
COPY dodolens dodolens
RUN pip install --no-cache-dir .
# Media never touches disk: a read-only root filesystem is fine; the SQLite result DB lives in /data.
RUN useradd --create-home dodo && mkdir /data && chown dodo /data
USER dodo
ENV DODOLENS_RESULTS_DB=/data/results.sqlite3
EXPOSE 8000
CMD ["dodolens", "gateway", "--host", "0.0.0.0", "--port", "8000"]
