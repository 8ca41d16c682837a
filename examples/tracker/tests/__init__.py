"""The tracker's tests: view tests, API tests, tenancy, escaping, the browser."""
