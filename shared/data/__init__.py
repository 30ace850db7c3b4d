"""Reading images and the processed-dataset format."""

from shared.data.dataset import (
    DatasetFormatError,
    DatasetWriter,
    ProcessedDataset,
    replace_folder,
    staging_folder,
    write_json_atomic,
)
from shared.data.discovery import (
    ImageFile,
    host_share,
    labels_from_folders,
    list_images,
    list_labelled_images,
)
from shared.data.images import (
    IMAGE_SUFFIXES,
    MAX_PIXELS,
    RESIZE_POLICIES,
    ImageDecodeError,
    default_workers,
    fit_square,
    load_rgb,
    load_square_array,
)
from shared.data.parallel import Decoded, decode_images
from shared.data.pool import DecodedPool, decode_to_pool, scratch_folder

__all__ = [
    "DatasetFormatError",
    "DatasetWriter",
    "Decoded",
    "DecodedPool",
    "IMAGE_SUFFIXES",
    "ImageDecodeError",
    "ImageFile",
    "MAX_PIXELS",
    "ProcessedDataset",
    "RESIZE_POLICIES",
    "decode_images",
    "decode_to_pool",
    "default_workers",
    "fit_square",
    "host_share",
    "labels_from_folders",
    "list_images",
    "list_labelled_images",
    "load_rgb",
    "load_square_array",
    "replace_folder",
    "scratch_folder",
    "staging_folder",
    "write_json_atomic",
]
