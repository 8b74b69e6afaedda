# One image for every process type; each docker-compose service runs its
# Procfile command directly (no honcho inside containers).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PORT=8000

WORKDIR /app

# psycopg[binary] bundles libpq, so no system packages are needed.
COPY requirements.txt .
RUN pip install -r requirements.txt

# Application code stays owned by root and read-only for the app user.
COPY . .
RUN useradd --system --create-home --uid 10001 app
USER app

EXPOSE 8000
CMD ["gunicorn", "--config", "web/server/gunicorn_conf.py", "web:create_app()"]
