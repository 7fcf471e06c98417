"""Server fixtures live in tests/fixtures/, one module per stand-in; each starts its server once per session."""

pytest_plugins = [
    "tests.fixtures.azurite",
    "tests.fixtures.batch",
    "tests.fixtures.servicebus",
]
