"""The implementation of :mod:`karaffe.tenancy` (import from there)."""
