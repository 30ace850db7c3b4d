"""The model server: gunicorn + a small WSGI app, SageMaker's /ping, /invocations, /execution-parameters."""
