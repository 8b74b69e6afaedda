# One image for every process type; each docker-compose service runs its
# Procfile command directly (no honcho inside containers).
#
# Two stages: the build stage has a compiler, to build the one optional C
# extension (gunicorn-h1c, requirements-speedups.txt) where it can; the
# runtime image gets the finished venv, and no compiler and no test tools.

FROM python:3.11-slim AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev \
 && rm -rf /var/lib/apt/lists/*

COPY requirements.txt requirements-speedups.txt /tmp/
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip install --only-binary=:all: -r /tmp/requirements.txt \
 && (/opt/venv/bin/pip install -r /tmp/requirements-speedups.txt \
     || echo "gunicorn-h1c did not build: web parses headers in Python")


FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH \
    PORT=8000

# psycopg[binary] bundles libpq, so no system packages are needed.
COPY --from=build /opt/venv /opt/venv

WORKDIR /app
# Application code stays owned by root and read-only for the app user.
COPY . .
RUN useradd --system --create-home --uid 10001 app
USER app

EXPOSE 8000
CMD ["gunicorn", "--config", "web/server/gunicorn_conf.py", "web:create_app()"]
