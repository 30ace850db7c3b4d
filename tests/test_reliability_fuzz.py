"""Fuzzing the shared image reader and the processing job's reading path.

Property-based inputs (hypothesis, derandomized) and seeded mutations of real PNG, JPEG, GIF, BMP,
WebP and TIFF files: bit flips, truncation, byte runs, and header edits that declare huge or zero
dimensions with valid checksums. The reader may decode a file or refuse it with ImageDecodeError and
a reason, nothing else; no file may crash the process, hang, or take memory beyond a stated bound.
"""

from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from shared.data import ImageDecodeError, load_square_array
from tests.conftest import ROOT, run_entrypoint
from tests.reliability import digits_arrays, seeded

SIZE = 32
CALL_LIMIT_S = 5.0  # per file, on a busy 2-core machine
MEMORY_LIMIT_MB = 1536  # peak RSS above the reader's own baseline, for any single file
MUTANTS_PER_SEED_FILE = 60


def seed_files() -> dict[str, bytes]:
    """Real images in every supported format and awkward mode, each a few KB."""
    digit = digits_arrays(48)[0][3]
    noise = np.random.default_rng(0).integers(0, 256, (40, 56, 3), dtype=np.uint8)
    files = {}
    for fmt, ext in (("PNG", "png"), ("JPEG", "jpg"), ("GIF", "gif"), ("BMP", "bmp"),
                     ("WEBP", "webp"), ("TIFF", "tif")):
        for name, array in (("digit", digit), ("noise", noise)):
            buffer = io.BytesIO()
            Image.fromarray(array).save(buffer, fmt)
            files[f"{name}.{ext}"] = buffer.getvalue()
    extras = {
        "grey16.png": Image.fromarray((noise[..., 0].astype(np.uint16) * 257), "I;16"),
        "rgba.png": Image.fromarray(np.dstack([noise, noise[..., :1]]), "RGBA"),
        "cmyk.jpg": Image.new("CMYK", (30, 20), (0, 255, 255, 0)),
        "palette.gif": Image.fromarray(noise).convert("P"),
    }
    for name, image in extras.items():
        buffer = io.BytesIO()
        image.save(buffer, "JPEG" if name.endswith("jpg") else name.rsplit(".")[-1].upper())
        files[name] = buffer.getvalue()
    rotated = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(noise).save(rotated, "JPEG", exif=exif.tobytes())
    files["exif-rotated.jpg"] = rotated.getvalue()
    return files


def png_with_size(data: bytes, width: int, height: int) -> bytes:
    """The PNG with its IHDR declaring another size, CRC recomputed so decoders believe it."""
    ihdr = bytearray(data[12:29])  # chunk type + 13 bytes of IHDR data
    ihdr[4:12] = struct.pack(">II", width, height)
    return data[:12] + bytes(ihdr) + struct.pack(">I", zlib.crc32(bytes(ihdr))) + data[33:]


def with_declared_size(name: str, data: bytes, width: int, height: int) -> bytes | None:
    if name.endswith(".png"):
        return png_with_size(data, width, height)
    if name.endswith(".jpg"):
        sof = max(data.find(b"\xff\xc0"), data.find(b"\xff\xc2"))
        if sof < 0:
            return None
        return (data[: sof + 5] + struct.pack(">HH", min(height, 65535), min(width, 65535))
                + data[sof + 9:])
    if name.endswith(".gif"):
        return data[:6] + struct.pack("<HH", width & 0xFFFF, height & 0xFFFF) + data[10:]
    if name.endswith(".bmp"):
        return data[:18] + struct.pack("<ii", width, -height) + data[26:]
    return None


HUGE_SIZES = [(7999, 8000), (8001, 8000), (65535, 65535), (1, 2**31 - 1), (0, 64), (64, 0),
              (2**31 - 1, 1)]


def mutants(files: dict[str, bytes], rng) -> dict[str, bytes]:
    """Seeded mutations of each seed file; names say what was done, so a failure is replayable."""
    out = {}
    for name, data in files.items():
        stem, ext = name.rsplit(".", 1)
        for width, height in HUGE_SIZES:
            mutated = with_declared_size(name, data, width, height)
            if mutated is not None:
                out[f"{stem}-size{width}x{height}.{ext}"] = mutated
        for number in range(MUTANTS_PER_SEED_FILE):
            buf = bytearray(data)
            kind = rng.choice(["flip", "flip-header", "truncate", "run", "delete", "insert"])
            if kind in ("flip", "flip-header"):
                span = min(len(buf), 64) if kind == "flip-header" else len(buf)
                for _ in range(rng.randint(1, 8)):
                    buf[rng.randrange(span)] ^= 1 << rng.randrange(8)
            elif kind == "truncate":
                buf = buf[: rng.randrange(1, len(buf))]
            elif kind == "run":
                start = rng.randrange(len(buf))
                buf[start:start + rng.randint(1, 64)] = bytes([rng.choice([0, 255])]) * rng.randint(1, 64)
            elif kind == "delete":
                start = rng.randrange(len(buf))
                del buf[start:start + rng.randint(1, 32)]
            else:
                start = rng.randrange(len(buf))
                buf[start:start] = rng.randbytes(rng.randint(1, 32))
            out[f"{stem}-{kind}-{number:03d}.{ext}"] = bytes(buf)
    return out


# The reader in a child process of its own: a crash, a hang or a memory blow-up there is a
# finding, not the end of the test run. RLIMIT_AS stops runaway allocations as MemoryError.
READER = r"""
import json, resource, signal, sys, time, warnings
from pathlib import Path
limit_bytes = int(sys.argv[3])
resource.setrlimit(resource.RLIMIT_AS, (limit_bytes, limit_bytes))
warnings.simplefilter("ignore")
from shared.data import ImageDecodeError, load_square_array

def hang(signum, frame):
    raise TimeoutError("no answer within the limit")

def peak_kb():  # VmHWM: this process's own peak (ru_maxrss would start at the parent's)
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))

signal.signal(signal.SIGALRM, hang)
base = peak_kb()
with open(sys.argv[2], "w") as out:
    for path in sorted(Path(sys.argv[1]).iterdir()):
        out.write(json.dumps({"file": path.name, "started": True}) + "\n")
        out.flush()
        started = time.monotonic()
        signal.setitimer(signal.ITIMER_REAL, float(sys.argv[4]))
        try:
            array = load_square_array(path, 32)
            outcome, reason = ("decoded" if array.shape == (32, 32, 3) else "wrong shape"), ""
        except ImageDecodeError as exc:
            outcome, reason = "refused", str(exc)
        except BaseException as exc:
            outcome, reason = type(exc).__name__, str(exc)
        signal.setitimer(signal.ITIMER_REAL, 0)
        peak = peak_kb() - base
        out.write(json.dumps({"file": path.name, "outcome": outcome, "reason": reason,
                              "seconds": time.monotonic() - started, "peak_mb": peak / 1024}) + "\n")
        out.flush()
"""


def read_in_child(folder: Path, results: Path) -> list[dict]:
    limit = (MEMORY_LIMIT_MB + 1024) * 1024 * 1024  # the bound plus the interpreter's own mappings
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1",
           "OPENBLAS_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", READER, str(folder), str(results), str(limit),
                           str(CALL_LIMIT_S)], env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=600)
    lines = [json.loads(line) for line in results.read_text().splitlines()]
    last = lines[-1] if lines else {}
    assert proc.returncode == 0, f"the reader died ({proc.returncode}) on {last}: {proc.stderr[-2000:]}"
    return [line for line in lines if "outcome" in line]


def test_mutated_real_images_are_decoded_or_refused_never_crash_hang_or_blow_memory(tmp_path):
    rng = seeded("image-mutants")
    corpus = {**seed_files()}
    corpus.update(mutants(corpus, rng))
    folder = tmp_path / "corpus"
    folder.mkdir()
    for name, data in corpus.items():
        (folder / name).write_bytes(data)
    started = time.monotonic()
    results = read_in_child(folder, tmp_path / "results.jsonl")
    outcomes = {}
    for r in results:
        outcomes[r["outcome"]] = outcomes.get(r["outcome"], 0) + 1
    summary = {"files": len(results), "outcomes": outcomes,
               "slowest_s": round(max(r["seconds"] for r in results), 3),
               "peak_mb": round(max(r["peak_mb"] for r in results), 1),
               "seconds": round(time.monotonic() - started, 1)}
    print("mutants:", json.dumps(summary))
    assert len(results) == len(corpus)
    wrong = [r for r in results if r["outcome"] not in ("decoded", "refused")]
    assert wrong == [], wrong[:5]
    assert all(r["reason"] for r in results if r["outcome"] == "refused")
    assert summary["slowest_s"] < CALL_LIMIT_S and summary["peak_mb"] < MEMORY_LIMIT_MB
    by_name = {r["file"]: r for r in results}
    assert all(by_name[name]["outcome"] == "decoded" for name in seed_files())
    for name, r in by_name.items():
        if "-size8001x8000" in name or "-size65535x65535" in name:  # over the bound: from the header
            assert r["outcome"] == "refused", r
        if "-size7999x8000" in name and name.endswith((".png", ".bmp")):  # allocated, then found short
            assert r["outcome"] == "refused" and "truncated" in r["reason"], r


MAGIC = [b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff\xe0", b"GIF89a", b"BM", b"II*\x00", b"MM\x00*",
         b"RIFF\x00\x01\x00\x00WEBPVP8 ", b"8BPS", b"\x00\x00\x01\x00", b"P6\n", b"qoif", b"DDS "]


@settings(max_examples=1000, derandomize=True, database=None, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(magic=st.sampled_from(MAGIC), tail=st.binary(max_size=2048))
def test_arbitrary_bytes_after_any_magic_number_are_decoded_or_refused(magic, tail):
    started = time.monotonic()
    try:
        array = load_square_array(magic + tail, SIZE)
    except ImageDecodeError as exc:
        assert str(exc)
    else:
        assert array.shape == (SIZE, SIZE, 3) and array.dtype == np.uint8
    assert time.monotonic() - started < CALL_LIMIT_S


def test_processing_reports_every_bad_file_and_keeps_every_good_one(tmp_path):
    rng = seeded("processing-mutants")
    good = seed_files()
    every = mutants(good, rng)
    huge = {name: data for name, data in every.items() if "-size" in name}  # whatever the seed
    bad = huge | dict(rng.sample(sorted(every.items() - huge.items()), 150))
    base = tmp_path / "opt_ml"
    data = base / "processing" / "input" / "data"
    for i, (name, content) in enumerate(sorted({**good, **bad}.items())):
        folder = data / f"part-{i % 3}"  # nested folders, as users hand them over
        folder.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(content)
    result = run_entrypoint("processing", "serve", "--image-size", str(SIZE),
                            "--max-bad-fraction", "1.0", base=base, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((base / "processing/output/report/report.json").read_text())
    skipped = {s["path"].rsplit("/", 1)[-1]: s["reason"] for s in report["skipped"]}
    print(f"processing: {report['images_found']} files, {report['images_used']} used,"
          f" {len(skipped)} skipped")
    assert report["images_found"] == len(good) + len(bad)
    assert report["images_used"] + len(skipped) == report["images_found"]
    assert all(skipped.values()) and not set(good) & set(skipped)
    assert any("more than the" in reason for reason in skipped.values())  # huge declared sizes


def test_images_in_formats_outside_the_supported_six_are_refused_whatever_their_name(tmp_path):
    """Pillow decodes some 40 formats by content; untrusted files get only the documented ones."""
    image = Image.fromarray(digits_arrays(16)[0][0])
    for fmt in ("PCX", "TGA", "ICO", "PPM", "SGI", "EPS", "IM", "DDS"):
        path = tmp_path / f"really-{fmt.lower()}.png"
        image.save(path, fmt)
        with pytest.raises(ImageDecodeError, match="not a recognised image format"):
            load_square_array(path, SIZE)
