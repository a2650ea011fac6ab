"""Errors a user can cause; the CLI turns them into a clear message and a non-zero exit, HTTP into a 4xx."""


class InspectionError(Exception):
    """Base class for user-facing errors (bad input, missing product, unusable dataset)."""


class ImageDecodeError(InspectionError):
    """The bytes are not a decodable image of a supported type."""


class ImageTooLargeError(InspectionError):
    """The image's declared pixel count exceeds the configured limit (decompression-bomb guard)."""


class DatasetError(InspectionError):
    """The dataset is missing, empty, single-class or otherwise unusable for the requested job."""


class ConfigError(InspectionError):
    """A product or server configuration file is invalid."""
