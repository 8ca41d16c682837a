"""The public API is exactly what karaffe/__init__.py exports."""

from __future__ import annotations

import types

import karaffe

EXPECTED = {
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
}


def test_all_is_the_pinned_public_api() -> None:
    assert set(karaffe.__all__) == EXPECTED


def test_every_exported_name_exists() -> None:
    for name in karaffe.__all__:
        assert getattr(karaffe, name) is not None, name


def test_nothing_public_is_exposed_beyond_all() -> None:
    exposed = {
        name
        for name, value in vars(karaffe).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert exposed - {"annotations"} == set(karaffe.__all__)
