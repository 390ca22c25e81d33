"""Options of the project's own suite (the crosscheck plugin itself is loaded by its entry point)."""


def pytest_addoption(parser):
    parser.addoption("--fuzz-examples", type=int, default=100,
                     help="examples per property-based fuzz test (default 100, the quick profile; "
                          "the long profile uses 1000 or more)")
