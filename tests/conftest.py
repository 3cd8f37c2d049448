pytest_plugins = ["tests.fixtures.redis", "tests.fixtures.database", "tests.fixtures.pipeline"]
