"""Options of the project's own suite (the crosscheck plugin itself is loaded by its entry point).

NumPy is imported here, outside the plugin self-tests' in-process pytest runs: pytester restores
sys.modules after each, and NumPy, which the plugin imports only when a test needs it, cannot be
imported a second time in one process."""
import numpy  # noqa: F401


def pytest_addoption(parser):
    parser.addoption("--fuzz-examples", type=int, default=100,
                     help="examples per property-based fuzz test (default 100, the quick profile; "
                          "the long profile uses 1000 or more)")
