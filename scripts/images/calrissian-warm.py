# Calrissian with cwltool's CWL schemas parsed once, when the image is built.
#
# cwltool parses its schemas (about 20 YAML documents) on every start: a second or more of CPU
# in a container limited to a fraction of a core. `make` (run by the image build) writes them,
# parsed, next to this file; every Job's `calrissian` then reads them back in milliseconds and
# hands them to cwltool through its `custom_schema_callback`. Anything unexpected (another
# cwltool version, a damaged file) falls back to Calrissian as it ships.
import argparse
import copyreg
import functools
import os
import pickle
import sys
from importlib.metadata import version

CACHE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "schemas.pickle")


def key(ext):
    return [sys.version, version("cwltool"), version("schema-salad"), version("ruamel.yaml"), ext]


def pickler_setup():
    # schema-salad's NormDict keeps its key function in an attribute that pickle's default
    # for dict subclasses would lose.
    from schema_salad.ref_resolver import NormDict

    copyreg.pickle(NormDict, lambda d: (NormDict, (d.normalize,), None, None, iter(dict(d).items())))


def make():
    import cwltool.main
    import cwltool.process

    pickler_setup()
    # The Jobs run Calrissian with --enable-ext (cwltool's extensions schema).
    cwltool.main.setup_schema(argparse.Namespace(enable_ext=True), None)
    import cwltool.update

    # cwltool upgrades every document it loads to its internal version (v1.3.0-dev1) and
    # validates embedded processes against that schema too: without it in the cache, each run
    # still parsed one schema (about 0.3 s of CPU).
    for v in ("v1.0", "v1.1", "v1.2", cwltool.update.INTERNAL_VERSION):
        cwltool.process.get_schema(v)
    with open(CACHE, "wb") as f:
        pickle.dump({"key": key(True), "schemas": dict(cwltool.process.SCHEMA_CACHE)}, f)


def run():
    import calrissian.main
    import cwltool.main
    import cwltool.process

    ext = "--enable-ext" in sys.argv[1:]
    try:
        pickler_setup()
        with open(CACHE, "rb") as f:
            data = pickle.load(f)
        if data["key"] == key(ext):
            schemas = data["schemas"]

            def use_cached():
                cwltool.main.setup_schema(argparse.Namespace(enable_ext=ext), None)
                cwltool.process.SCHEMA_CACHE.update(schemas)

            calrissian.main.cwlmain = functools.partial(cwltool.main.main, custom_schema_callback=use_cached)
    except Exception:  # Calrissian as it ships
        pass
    sys.exit(calrissian.main.main())


if __name__ == "__main__":
    if sys.argv[1:] == ["make"]:
        make()
    else:
        run()
