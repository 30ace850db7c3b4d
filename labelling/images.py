"""How tasks name their images, and how the suite finds an image again from a task.

Local files: `/data/local-files/?d=<path relative to the document root>`, which Label Studio serves
from `LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT` (with `LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED=true`).
Anything else is a URL: a task image under another prefix (`--url-prefix`), or a file uploaded to
Label Studio (`/data/upload/...`), fetched from Label Studio with its API token.
"""

from __future__ import annotations

import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from shared.errors import UserError

LOCAL_FILES = "/data/local-files/"
MAX_IMAGE_BYTES = 64 * 1024 * 1024


class ImageSourceError(UserError):
    """A task's image that cannot be found or fetched."""


def local_files_url(path: Path, root: Path) -> str:
    relative = _relative(path, root)
    return f"{LOCAL_FILES}?d={urllib.parse.quote(relative.as_posix())}"


def prefixed_url(path: Path, base: Path, prefix: str) -> str:
    return prefix.rstrip("/") + "/" + urllib.parse.quote(_relative(path, base).as_posix())


def _relative(path: Path, root: Path) -> Path:
    path, root = Path(path).resolve(), Path(root).resolve()
    if not path.is_relative_to(root):
        raise ImageSourceError(f"the image {path} is not under the document root {root}: start"
                               " Label Studio with a LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT that"
                               " holds the images, and pass the same folder as --document-root")
    return path.relative_to(root)


def local_file(url: str, root: Path | None) -> Path | None:
    """The file a local-files URL names (inside `root`), or None for any other URL."""
    parsed = urllib.parse.urlparse(url)
    if not parsed.path.startswith(LOCAL_FILES):
        return None
    relative = urllib.parse.parse_qs(parsed.query).get("d", [""])[0]
    if root is None:
        raise ImageSourceError(f"{url} is a local file: give the document root Label Studio"
                               " serves local files from (--document-root)")
    root = Path(root).resolve()
    path = (root / relative).resolve()
    if not relative or not path.is_relative_to(root) or path == root:
        raise ImageSourceError(f"{url} does not name a file inside the document root {root}")
    return path


def read_image(url: str, root: Path | None, label_studio: str | None = None,
               token: str | None = None, timeout: float = 30) -> bytes:
    """The bytes of a task's image: a local file under `root`, or fetched from Label Studio."""
    path = local_file(url, root)
    if path is not None:
        if not path.is_file():
            raise ImageSourceError(f"{url}: no file {path}")
        return path.read_bytes()
    parsed = urllib.parse.urlparse(url)
    if not parsed.scheme:
        if not label_studio:
            raise ImageSourceError(f"{url} is relative to Label Studio, whose address this"
                                   " backend was not given (--label-studio-url)")
        url = urllib.parse.urljoin(label_studio, url)
    elif parsed.scheme not in ("http", "https"):
        raise ImageSourceError(f"{url}: only local files and http(s) URLs are read")
    headers = {}
    if token and label_studio and _same_origin(url, label_studio):  # never hand it elsewhere
        headers["Authorization"] = f"Token {token}"
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers),
                                    timeout=timeout) as response:
            data = response.read(MAX_IMAGE_BYTES + 1)
    except (urllib.error.URLError, OSError) as exc:
        raise ImageSourceError(f"{url}: {exc}") from None
    if len(data) > MAX_IMAGE_BYTES:
        raise ImageSourceError(f"{url}: larger than {MAX_IMAGE_BYTES} bytes")
    return data


def _same_origin(a: str, b: str) -> bool:
    pa, pb = urllib.parse.urlparse(a), urllib.parse.urlparse(b)
    return (pa.scheme, pa.netloc) == (pb.scheme, pb.netloc)
