"""Options of the project's own suite (the crosscheck plugin itself is loaded by its entry point),
and the BLAS kernel NumPy runs, named in the report header: machines of one kind load different
OpenBLAS kernels (``OPENBLAS_CORETYPE`` picks one), and the suite must pass on each.

NumPy is imported here, outside the plugin self-tests' in-process pytest runs: pytester restores
sys.modules after each, and NumPy, which the plugin imports only when a test needs it, cannot be
imported a second time in one process."""
import numpy  # noqa: F401
import pytest


def pytest_addoption(parser):
    parser.addoption("--fuzz-examples", type=int, default=100,
                     help="examples per property-based fuzz test (default 100, the quick profile; "
                          "the long profile uses 1000 or more)")
    parser.addoption("--blas-kernel", default=None, metavar="NAME",
                     help="stop before any test unless NumPy's BLAS runs this kernel (e.g. Katmai, which "
                          "OPENBLAS_CORETYPE=Prescott loads): a run meant for another kernel really gets it")


def _blas():
    """NumPy's BLAS libraries, as threadpoolctl sees them: (name, version, kernel) each."""
    from threadpoolctl import threadpool_info    # (it lists the libraries loaded: NumPy's, above)
    return [(i["internal_api"], i.get("version"), i.get("architecture"))
            for i in threadpool_info() if i["user_api"] == "blas"]


def pytest_report_header(config):
    libs = _blas()
    return "blas: " + (", ".join(f"{name} {version}, kernel {kernel}" for name, version, kernel in libs)
                       if libs else "none found by threadpoolctl")


def pytest_configure(config):
    """(Also on each pytest-xdist worker: each loads its own NumPy.)"""
    want = config.getoption("--blas-kernel")
    if want is not None:
        kernels = sorted(str(kernel) for _, _, kernel in _blas())
        if want not in kernels:
            raise pytest.UsageError(f"--blas-kernel: expected NumPy's BLAS to run the {want} kernel, "
                                    f"it runs {', '.join(kernels) or 'none found by threadpoolctl'}")
