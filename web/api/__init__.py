"""The blueprints: one module per resource of the API."""
