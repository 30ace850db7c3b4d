"""The content types the model server accepts and answers with (no torch: the export reads them)."""

IMAGE_TYPES = ("image/jpeg", "image/png", "application/x-image")
NPY = "application/x-npy"
JSONLINES = "application/jsonlines"
JSON = "application/json"
CONTENT_TYPES = (*IMAGE_TYPES, NPY, JSONLINES, JSON)
ACCEPT_TYPES = (JSON, JSONLINES)
