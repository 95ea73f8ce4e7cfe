"""The HTTP service: FastAPI app (``create_app``), routes and the dashboard."""
