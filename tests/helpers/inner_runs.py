"""Options for the pytest runs the plugin's self-tests start (pytester): hypothesis's pytest plugin,
installed for the project's own fuzz tests and unused by those inner suites, is left out, as it is
most of a pytest process's start-up (~0.6 s of ~0.9 s, paid again by each xdist worker); no cache
is written."""
FAST = ("-p", "no:hypothesispytest", "-p", "no:cacheprovider")
