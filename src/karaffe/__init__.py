"""karaffe: the Flask toolkit from "Flask for Fun and Profit", made real.

The public API is what this module exports; everything else is private.
"""

from __future__ import annotations

from .api.errors import (
    ApiException,
    Conflict,
    ErrorItem,
    Forbidden,
    InternalServerError,
    InvalidCursor,
    MalformedJson,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    Problem,
    ProblemFormatter,
    ServiceUnavailable,
    TooManyRequests,
    Unauthorized,
    UnsupportedMediaType,
    ValidationFailed,
)
from .api.openapi import ApiDocs
from .api.pagination import Page, paginate
from .api.result import ApiResult
from .api.validation import returns, validate
from .app import App, BlueprintImportError
from .config import ConfigError, Env, Settings

__all__ = [
    "ApiDocs",
    "ApiException",
    "ApiResult",
    "App",
    "BlueprintImportError",
    "ConfigError",
    "Conflict",
    "Env",
    "ErrorItem",
    "Forbidden",
    "InternalServerError",
    "InvalidCursor",
    "MalformedJson",
    "MethodNotAllowed",
    "NotFound",
    "Page",
    "PayloadTooLarge",
    "Problem",
    "ProblemFormatter",
    "ServiceUnavailable",
    "Settings",
    "TooManyRequests",
    "Unauthorized",
    "UnsupportedMediaType",
    "ValidationFailed",
    "paginate",
    "returns",
    "validate",
]
