"""Server machinery that serves every request: the gunicorn worker, the WSGI ingest
path in front of Flask, group commit, and strict reading of request bodies."""
