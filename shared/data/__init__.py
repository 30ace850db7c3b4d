"""Reading images and the processed-dataset format."""

from shared.cpus import default_workers
from shared.data.dataset import (
    DatasetFormatError,
    DatasetWriter,
    ManifestRecord,
    ProcessedDataset,
)
from shared.data.discovery import (
    ImageFile,
    labels_from_folders,
    list_images,
    list_labelled_images,
)
from shared.data.images import (
    IMAGE_SUFFIXES,
    MAX_ASPECT_RATIO,
    MAX_PIXELS,
    ImageDecodeError,
    check_size,
    fit_square,
    image_size,
    load_rgb,
    load_square_array,
)
from shared.data.parallel import Decoded, decode_images
from shared.data.pool import DecodedPool, decode_to_pool, decode_usable, scratch_folder

__all__ = [
    "DatasetFormatError",
    "DatasetWriter",
    "Decoded",
    "DecodedPool",
    "IMAGE_SUFFIXES",
    "ImageDecodeError",
    "check_size",
    "ImageFile",
    "MAX_ASPECT_RATIO",
    "MAX_PIXELS",
    "ManifestRecord",
    "ProcessedDataset",
    "decode_images",
    "decode_to_pool",
    "decode_usable",
    "default_workers",
    "fit_square",
    "image_size",
    "labels_from_folders",
    "list_images",
    "list_labelled_images",
    "load_rgb",
    "load_square_array",
    "scratch_folder",
]
