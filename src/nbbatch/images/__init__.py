"""The image pipeline: everything nbbatch does to image bytes, on tasks and images only.

* guarded decoding of every image that comes in: :func:`decode_image`,
  :func:`inspect_image`, :class:`ImageLimits` (byte cap, format allow-list, pixel cap read
  from the header before any decoding);
* generation parameters embedded in and read back from files:
  :func:`read_generation_info`, :class:`GenerationInfo`;
* thumbnails made once and cached: :func:`thumbnail`, :func:`thumbnails`,
  :class:`ThumbnailCache`, :func:`prune_caches`;
* post-processing into new files (never over the originals): :func:`postprocess` with
  :class:`Resize`, :class:`CropToAspect`, :class:`PadToAspect`, :class:`ConvertFormat`,
  :class:`Watermark`, :class:`StripMetadata`, :class:`Adjust`, or :class:`Pipeline`;
* overview images: :func:`contact_sheet`, :func:`xy_grid`;
* exports with safe names and a manifest: :func:`export_zip`, :func:`export_folder`;
* technical scores for comparisons (no model weights): :func:`sharpness`.

This layer takes tasks and images (or anything with ``.tasks``, such as a batch), never
the workspace's journal or the runner.
"""

from ._contact import contact_sheet, varying_parameters, xy_grid
from ._decode import (
    DEFAULT_LIMITS,
    UPLOAD_LIMITS,
    ImageInfo,
    ImageLimits,
    decode_image,
    inspect_image,
    sniff_format,
)
from ._export import export_folder, export_zip
from ._metadata import GenerationInfo, read_generation_info
from ._postprocess import (
    Adjust,
    AutoPostprocess,
    ConvertFormat,
    CropToAspect,
    DerivedImage,
    PadToAspect,
    Pipeline,
    Resize,
    StripMetadata,
    Watermark,
    auto_postprocess,
    derived_images,
    postprocess,
    postprocess_async,
)
from ._scores import sharpness
from ._thumbs import ThumbnailCache, prune_caches, thumbnail, thumbnails

__all__ = [
    "DEFAULT_LIMITS",
    "UPLOAD_LIMITS",
    "Adjust",
    "AutoPostprocess",
    "ConvertFormat",
    "CropToAspect",
    "DerivedImage",
    "GenerationInfo",
    "ImageInfo",
    "ImageLimits",
    "PadToAspect",
    "Pipeline",
    "Resize",
    "StripMetadata",
    "ThumbnailCache",
    "Watermark",
    "auto_postprocess",
    "contact_sheet",
    "decode_image",
    "derived_images",
    "export_folder",
    "export_zip",
    "inspect_image",
    "postprocess",
    "postprocess_async",
    "prune_caches",
    "read_generation_info",
    "sharpness",
    "sniff_format",
    "thumbnail",
    "thumbnails",
    "varying_parameters",
    "xy_grid",
]
