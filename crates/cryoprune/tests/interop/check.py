"""Checks that the community's readers accept files cryoprune wrote.

Usage: python3 check.py MANIFEST.json
The manifest lists MRC files (mrcfile.validate must pass), STAR files with the tables our reader
saw (starfile.read must give the same), and .cs files with the fields and values we wrote
(numpy.load and cryosparc-tools' Dataset.load must read them). "tables" lists text tables (EMAN .box, Topaz .txt, CSV) with the
rows our reader saw, header first where the format has one; numpy must read the same cells.
"particles" lists RELION particle STARs whose _rlnImageName entries
(index@stack, 1-based) must each name an image that mrcfile reads, with the optics block's pixel
size and image size equal to the stack's. "cryosparc_example" names the example script that moves
picks in and out of cryoSPARC: every cryosparc-tools call it makes must exist, with the keyword
arguments it passes."""
import io
import json
import math
import sys
import contextlib

import inspect

import mrcfile
import numpy as np
import starfile
from cryosparc.dataset import Dataset


def same(expected, got):
    # crYOLO writes <NA> for missing values; pandas (under starfile) reads it as NaN.
    if expected == "<NA>":
        try:
            return math.isnan(float(got))
        except (TypeError, ValueError):
            return False
    try:
        return math.isclose(float(expected), float(got), rel_tol=1e-6, abs_tol=1e-9)
    except (TypeError, ValueError):
        return str(expected) == str(got)


def check_particles(star_path):
    tables = starfile.read(star_path, always_dict=True)
    optics, parts = tables["optics"], tables["particles"]
    out = []
    stacks = {}
    seen = set()
    for i, name in enumerate(parts["rlnImageName"]):
        index, stack = name.split("@", 1)
        if stack not in stacks:
            stacks[stack] = mrcfile.mmap(stack, permissive=False)
        mrc = stacks[stack]
        seen.add(name)
        n = mrc.data.shape[0] if mrc.data.ndim == 3 else 1
        if not 1 <= int(index) <= n:
            out.append(f"{star_path} row {i}: {name} but the stack holds {n} images")
            break
    images = 0
    for stack, mrc in stacks.items():
        images += mrc.data.shape[0] if mrc.data.ndim == 3 else 1
        size = int(optics["rlnImageSize"].iloc[0])
        px = float(optics["rlnImagePixelSize"].iloc[0])
        if mrc.data.shape[-1] != size or mrc.data.shape[-2] != size:
            out.append(f"{stack}: images {mrc.data.shape[-2:]} but rlnImageSize {size}")
        if not math.isclose(float(mrc.voxel_size.x), px, rel_tol=1e-5):
            out.append(f"{stack}: voxel size {mrc.voxel_size.x} but rlnImagePixelSize {px}")
        mrc.close()
    # Every image is listed exactly once.
    if len(seen) != len(parts) or images != len(parts):
        out.append(f"{star_path}: {len(parts)} rows, {len(seen)} distinct images, {images} in the stacks")
    return out


def check_table(table):
    path, kind, rows = table["path"], table["kind"], table["rows"]
    if kind == "box":
        # EMAN's own reader is a whitespace split of numbers; numpy.loadtxt is the same.
        got = np.loadtxt(path, ndmin=2).tolist()
    else:
        delimiter = "\t" if kind == "topaz" else ","
        got = np.genfromtxt(path, delimiter=delimiter, dtype=str, comments=None,
                            ndmin=2).tolist()
    if len(got) != len(rows):
        return [f"{path}: numpy read {len(got)} rows, we wrote {len(rows)}"]
    for i, (g, r) in enumerate(zip(got, rows)):
        if len(g) != len(r) or not all(same(a, b) for a, b in zip(r, g)):
            return [f"{path} row {i}: numpy read {g}, we wrote {r}"]
    return []


def check_cryosparc_example(path):
    """The calls examples/cryosparc makes, against the installed cryosparc-tools."""
    from cryosparc.tools import CryoSPARC
    try:  # cryosparc-tools 5
        from cryosparc.controllers.job import ExternalJobController as ExternalJob
        from cryosparc.controllers.project import ProjectController as Project
    except ImportError:  # cryosparc-tools 4
        from cryosparc.job import ExternalJob
        from cryosparc.project import Project

    with open(path) as f:
        compile(f.read(), path, "exec")
    calls = [
        (CryoSPARC, "__init__", ["license", "host", "base_port", "email", "password"]),
        (CryoSPARC, "find_project", []),
        (Project, "find_job", []),
        (Project, "create_external_job", ["title"]),
        (ExternalJob, "load_output", []),
        (ExternalJob, "connect", ["slots"]),
        (ExternalJob, "add_output", ["slots", "passthrough"]),
        (ExternalJob, "save_output", []),
        (ExternalJob, "run", []),
        (Dataset, "load", []),
        (Dataset, "save", []),
        (Dataset, "mask", []),
    ]
    out = []
    for cls, name, keywords in calls:
        fn = getattr(cls, name, None)
        if fn is None:
            out.append(f"{path}: cryosparc-tools has no {cls.__name__}.{name}")
            continue
        params = inspect.signature(fn).parameters
        for k in keywords:
            if k not in params:
                out.append(f"{path}: {cls.__name__}.{name} takes no {k}= (has {list(params)})")
    return out


def main(path):
    with open(path) as f:
        manifest = json.load(f)
    failures = []
    for mrc in manifest.get("mrc", []):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            ok = mrcfile.validate(mrc)
        if not ok:
            failures.append(f"mrcfile.validate failed for {mrc}: {out.getvalue().strip()}")
    for star in manifest.get("star", []):
        tables = starfile.read(star["path"], always_dict=True)
        for name, block in star["blocks"].items():
            df = tables.get(name)
            if df is None:
                failures.append(f"{star['path']}: starfile found no block '{name}' (has {list(tables)})")
                continue
            if list(df.columns) != block["columns"]:
                failures.append(f"{star['path']} {name}: columns {list(df.columns)} != {block['columns']}")
                continue
            if len(df) != len(block["rows"]):
                failures.append(f"{star['path']} {name}: {len(df)} rows != {len(block['rows'])}")
                continue
            for i, row in enumerate(block["rows"]):
                for c, v in zip(block["columns"], row):
                    if not same(v, df[c].iloc[i]):
                        failures.append(f"{star['path']} {name} row {i} {c}: {df[c].iloc[i]!r} != {v!r}")
                        break
    for cs in manifest.get("cs", []):
        arr = np.load(cs["path"])
        names = list(arr.dtype.names)
        if names != cs["fields"]:
            failures.append(f"{cs['path']}: fields {names} != {cs['fields']}")
            continue
        if len(arr) != cs["nrows"]:
            failures.append(f"{cs['path']}: {len(arr)} rows != {cs['nrows']}")
        for field, values in cs["values"].items():
            for i, v in enumerate(values):
                got = arr[field][i]
                got = got.decode() if isinstance(got, bytes) else got
                if not same(v, got):
                    failures.append(f"{cs['path']} {field}[{i}]: {got!r} != {v!r}")
                    break
        d = Dataset.load(cs["path"])
        if list(d.fields()) != names or len(d) != len(arr):
            failures.append(f"{cs['path']}: cryosparc-tools read {len(d)} rows of {list(d.fields())}")
        def plain(values):
            return [v.decode() if isinstance(v, bytes) else v for v in np.asarray(values).tolist()]

        for field in cs["values"]:
            if plain(d[field]) != plain(arr[field]):
                failures.append(f"{cs['path']} {field}: cryosparc-tools read {plain(d[field])[:3]}...")
    if "cryosparc_example" in manifest:
        failures.extend(check_cryosparc_example(manifest["cryosparc_example"]))
    for table in manifest.get("tables", []):
        failures.extend(check_table(table))
    for star_path in manifest.get("particles", []):
        failures.extend(check_particles(star_path))
    checked = (len(manifest.get("mrc", [])) + len(manifest.get("star", [])) + len(manifest.get("cs", []))
               + len(manifest.get("tables", [])) + len(manifest.get("particles", [])))
    if failures:
        print("\n".join(failures))
        sys.exit(1)
    print(f"interop: {checked} files accepted by mrcfile/starfile/numpy/cryosparc-tools")


if __name__ == "__main__":
    main(sys.argv[1])
