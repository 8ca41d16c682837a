"""The JSON API layer: results, errors, validation, pagination, OpenAPI."""
